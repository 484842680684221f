"""No password, token or session id ever reaches the server's log, its SQLite files or the audit log."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.auth_helpers import add_user, bearer, client, data_files, session_name, sign_in, users
from tests.helpers import BIN

JOBS = """
    [pushbutton]
    auth = local
    admins = alice

    [job:report]
    command = echo report
    run_by = *
"""


def secrets_in(blob: bytes, values: list[str]) -> list[str]:
    """The values (or a 12-character piece of one) found in `blob`."""
    return [v for v in values if v.encode() in blob or any(v[i:i + 12].encode() in blob
                                                           for i in range(0, len(v) - 11, 4))]


def test_no_password_token_or_session_id_is_logged_stored_or_audited(pushbutton, write_jobs):
    pb = pushbutton(write_jobs(JOBS))
    first, second, wrong = "first-Pa55word-xyz", "second-Pa55word-xyz", "wrong-Pa55word-xyz"
    add_user(pb, "alice", first)
    assert users(pb, "passwd", "alice", stdin=second + "\n").returncode == 0
    assert client(pb).post("/api/session", json={"user": "alice", "password": wrong}).status_code == 401
    assert client(pb).post("/api/session", json={"user": "nobody", "password": wrong + "2"}).status_code == 401
    alice = sign_in(pb, "alice", second)
    session = alice.cookies[session_name(pb)]
    cli_token = users(pb, "token", "alice").stdout.splitlines()[-1]
    api_token = alice.post("/api/tokens", json={"name": "ci"}).json()
    for token in (cli_token, api_token["token"]):
        assert bearer(pb, token).post("/api/jobs/report/runs", json={"params": {}}).status_code == 202
    assert alice.delete(f"/api/tokens/{api_token['id']}").status_code == 204
    assert alice.delete("/api/session").status_code == 204
    values = [first, second, wrong, wrong + "2", session, cli_token, api_token["token"]]

    running = b"".join(p.read_bytes() for p in data_files(pb))  # the WAL included, before a checkpoint
    assert pb.stop() == 0
    stored = b"".join(p.read_bytes() for p in data_files(pb))
    log = Path(pb.log).read_bytes()
    audit = subprocess.run([BIN, "audit", "--jobs", str(pb.jobs), "--data-dir", str(pb.data_dir)],
                           capture_output=True, timeout=60)
    assert audit.returncode == 0
    actions = audit.stdout.decode().splitlines()
    for action in ("user.add", "user.passwd", "signin.failed", "signin", "token.create", "token.revoke", "signout"):
        assert any(f'"action": "{action}"' in line for line in actions), action
    for where, blob in (("data dir while running", running), ("data dir", stored), ("server log", log),
                        ("audit", audit.stdout + audit.stderr)):
        assert secrets_in(blob, values) == [], where
