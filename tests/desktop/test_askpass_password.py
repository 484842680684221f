"""In the window, a host that takes only a password: a real user (useradd + chpasswd, removed
afterwards) on a real sshd that allows password authentication for that user alone; the dialog
answered, or cancelled, in the real window under Xvfb through the driver's own functions."""

from __future__ import annotations

import secrets
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.desktop.conftest import need
from tests.desktop.test_window import drive
from tests.ssh import sshd

pytestmark = pytest.mark.timeout(240)
USER = "pbpassword"
PASSWORD = "Pw-" + secrets.token_urlsafe(12)
# sshd keeps the first value of a keyword, except in a Match block: only this user, only a password.
PASSWORD_ONLY = textwrap.dedent(f"""
    Match User {USER}
        PasswordAuthentication yes
        AuthenticationMethods password
    """)


@pytest.fixture(scope="module")
def lab():
    need(sshd.missing() is None, sshd.missing() or "")
    subprocess.run(["userdel", "--remove", USER], capture_output=True)  # left over from a killed run
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)
    subprocess.run(["chpasswd"], input=f"{USER}:{PASSWORD}\n", text=True, check=True)
    lab = sshd.Lab()
    try:
        lab.start("p1", PASSWORD_ONLY)
        lab.start("p2", PASSWORD_ONLY)
        sshd.write_known_hosts(lab)
        yield lab
    finally:
        lab.close()
        subprocess.run(["userdel", "--remove", USER], capture_output=True)


@pytest.fixture
def jobs_ini(lab, tmp_path) -> Path:
    # p2's key pinned: ssh then names it by its HostKeyAlias, which the dialog must not show
    hosts = "".join(sshd.host_section(lab, server, user=USER, **({"host_key": server.host_key} if i else {}))
                    for i, server in enumerate(lab.servers))
    path = tmp_path / "jobs.ini"
    path.write_text(hosts + textwrap.dedent("""
        [job:remote]
        title = Remote check
        command = sh -c 'echo "ran on $TESTHOST as $(id -un)"'
        targets = host:p1, host:p2
        """))
    return path


def leaked(folder: Path, secret: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def ssh_clients_left() -> list[str]:
    out = subprocess.run(["pgrep", "-af", f"ssh .*-l {USER}"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def test_the_window_asks_each_host_for_its_password_and_the_job_runs_there(desktop_env, lab, jobs_ini, tmp_path):
    data = tmp_path / "data"
    code, seen, err = drive("askpass", desktop_env, "--jobs", str(jobs_ini), "--data-dir", str(data),
                            extra_env={"DRIVER_ANSWER": PASSWORD})
    assert code == 0, err[-3000:]
    assert seen["state"] == "succeeded", seen
    assert [(h["name"], h["state"], h["exit_code"]) for h in seen["hosts"]] == [("p1", "succeeded", 0),
                                                                              ("p2", "succeeded", 0)]
    assert f"ran on p1 as {USER}" in seen["log"] and f"ran on p2 as {USER}" in seen["log"]
    # a password belongs to a host: each host asks for its own, once
    assert sorted(d["title"] for d in seen["dialogs"]) == ["p1 asks", "p2 asks"], seen["dialogs"]
    for dialog in seen["dialogs"]:
        assert dialog["password"] is True  # typed hidden
        assert f"{USER}@127.0.0.1's password:" in dialog["label"]  # ssh's own question
    for server in lab.servers:
        assert f"Accepted password for {USER}" in server.log.read_text()
    assert leaked(data, PASSWORD) == []  # not in SQLite, not in the event logs
    assert PASSWORD not in err  # nor in the app's log
    assert ssh_clients_left() == []


def test_a_wrong_password_fails_the_host_saying_the_password_was_not_accepted(desktop_env, lab, jobs_ini, tmp_path):
    code, seen, err = drive("askpass", desktop_env, "--jobs", str(jobs_ini), "--data-dir", str(tmp_path / "data"),
                            extra_env={"DRIVER_ANSWER": "not-" + PASSWORD})
    assert code == 0, err[-3000:]
    assert seen["state"] == "failed", seen
    assert [h["error"] for h in seen["hosts"]] == [
        f"auth failed: {USER}@127.0.0.1 did not accept the password (or answer) typed"] * 2
    assert "ran on" not in seen["log"]
    assert ssh_clients_left() == []


def test_cancel_at_the_password_prompt_fails_the_host_cleanly(desktop_env, lab, jobs_ini, tmp_path):
    logged = {server.name: len(server.log.read_text()) for server in lab.servers}  # the lab outlives a test
    code, seen, err = drive("askpass", desktop_env, "--jobs", str(jobs_ini), "--data-dir", str(tmp_path / "data"))
    assert code == 0, err[-3000:]
    assert seen["state"] == "failed", seen
    assert [(h["state"], h["exit_code"], h["error"]) for h in seen["hosts"]] == [
        ("failed", None, "auth failed: cancelled at the password prompt")] * 2
    assert sorted(d["title"] for d in seen["dialogs"]) == ["p1 asks", "p2 asks"]  # each asked once, not again
    assert "ran on" not in seen["log"]
    for server in lab.servers:
        assert f"Accepted password for {USER}" not in server.log.read_text()[logged[server.name]:]
    assert ssh_clients_left() == []


def test_a_host_waiting_behind_another_hosts_dialog_is_not_given_up_as_silent(desktop_env, lab, tmp_path):
    # connect_timeout = 1: a host that never reaches its command is given up after 2 x 1 + 20 s.
    # The analyst takes 25 s over p1's dialog; p2's question waits behind it the whole time.
    hosts = "".join(sshd.host_section(lab, server, user=USER, connect_timeout="1") for server in lab.servers)
    jobs_ini = tmp_path / "jobs.ini"
    jobs_ini.write_text(hosts + textwrap.dedent("""
        [job:remote]
        title = Remote check
        command = sh -c 'echo "ran on $TESTHOST as $(id -un)"'
        targets = host:p1, host:p2
        """))
    code, seen, err = drive("askpass", desktop_env, "--jobs", str(jobs_ini), "--data-dir", str(tmp_path / "data"),
                            extra_env={"DRIVER_ANSWER": PASSWORD, "DRIVER_SLOW": "25"})
    assert code == 0, err[-3000:]
    assert [(h["name"], h["state"], h["error"]) for h in seen["hosts"]] == [("p1", "succeeded", None),
                                                                          ("p2", "succeeded", None)], seen
    assert sorted(d["title"] for d in seen["dialogs"]) == ["p1 asks", "p2 asks"]
    assert ssh_clients_left() == []
