"""In the window, ssh may ask the analyst: a passphrase-protected key, against real sshd, the
dialog answered (or cancelled) in the real window under Xvfb (tests/desktop/driver.py)."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.desktop.conftest import need
from tests.desktop.test_window import drive
from tests.ssh import sshd

pytestmark = pytest.mark.timeout(240)
PASSPHRASE = "Correct-Horse-7"


@pytest.fixture(scope="module")
def lab():
    need(sshd.missing() is None, sshd.missing() or "")
    sshd.ensure_user()
    lab = sshd.Lab()
    key = lab.root / "locked_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-C", "", "-f", str(key)], check=True)
    with open(lab.root / "authorized_keys", "a") as keys:
        keys.write(" ".join(key.with_suffix(".pub").read_text().split()[:2]) + "\n")
    try:
        lab.start("a1")
        lab.start("a2")
        lab.start("a3")
        sshd.write_known_hosts(lab)
        yield lab
    finally:
        lab.close()


@pytest.fixture
def jobs_ini(lab, tmp_path) -> Path:
    hosts = "".join(sshd.host_section(lab, server, identity=lab.root / "locked_key") for server in lab.servers)
    path = tmp_path / "jobs.ini"
    path.write_text(hosts + textwrap.dedent("""
        [job:remote]
        title = Remote check
        command = sh -c 'echo "ran on $TESTHOST"'
        targets = host:a1, host:a2, host:a3
        [job:upload]
        title = Upload check
        command = sh -c 'echo "$(cat "$1") on $TESTHOST"' sh {data}
        targets = host:a1, host:a2, host:a3
        param.data.type = file
        """))
    return path


def leaked(folder: Path, secret: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_the_window_asks_once_for_a_key_passphrase_and_the_fanout_runs(desktop_env, lab, jobs_ini, tmp_path):
    data = tmp_path / "data"
    code, seen, err = drive("askpass", desktop_env, "--jobs", str(jobs_ini), "--data-dir", str(data),
                            extra_env={"DRIVER_ANSWER": PASSPHRASE})
    assert code == 0, err[-3000:]
    assert seen["state"] == "succeeded", seen
    assert [h["state"] for h in seen["hosts"]] == ["succeeded"] * 3
    assert all(f"ran on {name}" in seen["log"] for name in ("a1", "a2", "a3"))
    assert len(seen["dialogs"]) == 1, seen["dialogs"]  # one key, three hosts: asked once per run
    dialog = seen["dialogs"][0]
    assert dialog["password"] is True
    assert dialog["title"] in ("a1 asks", "a2 asks", "a3 asks")
    assert f"Enter passphrase for {lab.root / 'locked_key'}" in dialog["label"]  # the run's agent loads it
    for server in lab.servers:  # each host logged in with the key, through the agent
        assert "Accepted publickey for" in server.log.read_text()
    assert not agents_left()  # the run's agent ended with the run
    assert leaked(data, PASSPHRASE) == []  # not in SQLite, not in the event logs
    assert PASSPHRASE not in err  # nor in the app's log
    assert not list(Path("/tmp").glob("pb-ssh-*/askpass.sock"))  # the run's socket went with its folder


def test_an_upload_reaches_every_host_of_a_passphrase_key_asked_once(desktop_env, lab, jobs_ini, tmp_path):
    """The file's copy to each host goes through the run's agent too: it needs the key before
    the command does, and the passphrase is still asked once."""
    code, seen, err = drive("askpass_upload", desktop_env, "--jobs", str(jobs_ini), "--data-dir",
                            str(tmp_path / "data"), extra_env={"DRIVER_ANSWER": PASSPHRASE})
    assert code == 0, err[-3000:]
    assert seen["state"] == "succeeded", seen
    assert all(f"uploaded,ok on {name}" in seen["log"] for name in ("a1", "a2", "a3")), seen["log"]
    assert len(seen["dialogs"]) == 1, seen["dialogs"]
    assert not agents_left()


def test_the_next_run_asks_nothing_while_its_connections_are_open(desktop_env, lab, jobs_ini, tmp_path):
    """control_persist: the first run's connections, authenticated with the passphrase once, carry
    the second run; no dialog, no new login, no agent."""
    logins = [len(server.logins(lab.root / "locked_key.pub")) for server in lab.servers]
    code, seen, err = drive("askpass_twice", desktop_env, "--jobs", str(jobs_ini), "--data-dir",
                            str(tmp_path / "data"), extra_env={"DRIVER_ANSWER": PASSPHRASE})
    assert code == 0, err[-3000:]
    first, second = seen["first"], seen["second"]
    assert (first["state"], second["state"]) == ("succeeded", "succeeded"), seen
    assert len(first["dialogs"]) == 1 and second["dialogs"] == []
    assert all(f"ran on {name}" in second["log"] for name in ("a1", "a2", "a3"))
    assert [len(server.logins(lab.root / "locked_key.pub")) - before
            for server, before in zip(lab.servers, logins, strict=True)] == [1, 1, 1]  # one login per host, two runs
    assert not agents_left()


def test_cancel_at_the_passphrase_prompt_fails_each_host_with_the_reason(desktop_env, jobs_ini, tmp_path):
    code, seen, err = drive("askpass", desktop_env, "--jobs", str(jobs_ini), "--data-dir", str(tmp_path / "data"))
    assert code == 0, err[-3000:]
    assert seen["state"] == "failed", seen
    assert [(h["state"], h["error"]) for h in seen["hosts"]] == [
        ("failed", "auth failed: cancelled at the passphrase prompt")] * 3
    assert len(seen["dialogs"]) == 1  # the key's question, once: its hosts are not asked again
    assert not agents_left()


def agents_left() -> list[str]:
    out = subprocess.run(["pgrep", "-af", "ssh-agent -a .*/pb-ssh-"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def test_a_stop_while_the_passphrase_dialog_is_open_ends_the_run_at_once(desktop_env, lab, jobs_ini, tmp_path):
    """The key's `ssh-add` waits for the dialog; a stop must not wait for it (up to 10 minutes)."""
    code, seen, err = drive("askpass_stop", desktop_env, "--jobs", str(jobs_ini), "--data-dir", str(tmp_path / "data"))
    assert code == 0, err[-3000:]
    assert seen["state"] == "cancelled", seen
    assert seen["took"] < 5, seen
    assert [h["state"] for h in seen["hosts"]] == ["cancelled"] * 3
    assert "ran on" not in seen["log"]
    assert not agents_left()
