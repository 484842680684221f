"""Headless Pushbutton never asks anyone: a host that wants a password, or a key that needs its
passphrase, fails alone, saying so and what to do."""

from __future__ import annotations

import os
import subprocess
import textwrap
import time

import pytest

from tests.helpers import BIN
from tests.ssh import sshd

PASSWORD_ONLY = "Match all\n  AuthenticationMethods password\n  PasswordAuthentication yes\n"


@pytest.fixture(scope="module")
def password_host(lab):
    server = lab.start("pw-headless", extra=PASSWORD_ONLY)
    sshd.write_known_hosts(lab)
    return server


def test_a_host_that_asks_for_a_password_fails_with_the_reason_and_the_others_run(
        pushbutton, write_jobs, lab, servers, password_host):
    ini = sshd.host_section(lab, servers["h1"]) + sshd.host_section(lab, password_host, "pw")
    pb = pushbutton(write_jobs(ini + textwrap.dedent("""
        [job:hello]
        command = echo hi
        targets = host:h1, host:pw
        """)))
    run = pb.wait(pb.start_run("hello")["id"], timeout=60)
    hosts = {h["name"]: h for h in run["hosts"]}
    assert hosts["h1"]["state"] == "succeeded"
    assert hosts["pw"]["state"] == "failed"
    assert hosts["pw"]["error"] == ("auth failed: this host asks for a password: headless Pushbutton uses keys "
                                    "and agents only; see docs/ssh.md")


@pytest.fixture(scope="module")
def locked_key(lab):
    """A key the lab's hosts accept, protected by a passphrase nobody here can type."""
    key = lab.root / "passphrase_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "Correct-Horse-7", "-C", "", "-f", str(key)], check=True)
    with open(lab.root / "authorized_keys", "a") as keys:
        keys.write(" ".join(key.with_suffix(".pub").read_text().split()[:2]) + "\n")
    return key


def test_a_passphrase_key_without_an_agent_fails_saying_it_needs_its_passphrase_not_that_it_was_refused(
        pushbutton, write_jobs, lab, servers, locked_key, monkeypatch):
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)  # no agent holds it
    ini = sshd.host_section(lab, servers["h1"]) + sshd.host_section(lab, servers["h2"], "locked", identity=locked_key)
    jobs = write_jobs(ini + textwrap.dedent("""
        [job:hello]
        command = echo hi
        targets = host:h1, host:locked
        """))
    pb = pushbutton(jobs)
    run = pb.wait(pb.start_run("hello")["id"], timeout=60)
    hosts = {h["name"]: h for h in run["hosts"]}
    assert hosts["h1"]["state"] == "succeeded"
    error = hosts["locked"]["error"]
    assert hosts["locked"]["state"] == "failed" and "refused" not in error, error
    assert error == (f"auth failed: key {locked_key} needs its passphrase, and headless Pushbutton cannot ask "
                     f"for it: add it to an ssh-agent the server sees (ssh-add {locked_key}, with SSH_AUTH_SOCK "
                     "in the server's environment), or run the job from the desktop window, which asks")
    probe = subprocess.run([BIN, "hosts", "--jobs", str(jobs)], capture_output=True, text=True, timeout=120,
                           env={k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"})
    line = next(line for line in probe.stdout.splitlines() if line.startswith("locked "))
    assert f"key {locked_key} needs its passphrase" in line, probe.stdout


def test_a_passphrase_key_the_agent_holds_is_used_and_a_host_refusing_it_is_said_to_refuse_it(
        pushbutton, write_jobs, lab, servers, locked_key, tmp_path, monkeypatch):
    """With the key in the agent the server sees, the passphrase is no one's business: it logs in,
    and a host that does not take the key is what it says, a refusal."""
    refusing = lab.start("refuses-locked", extra="Match all\n  AuthorizedKeysFile /dev/null\n")
    sshd.write_known_hosts(lab)
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        asks = tmp_path / "askpass.sh"
        asks.write_text("#!/bin/sh\necho Correct-Horse-7\n")
        asks.chmod(0o700)
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        subprocess.run(["ssh-add", str(locked_key)], check=True, stdin=subprocess.DEVNULL, capture_output=True,
                       env={**os.environ, "SSH_AUTH_SOCK": str(sock), "SSH_ASKPASS": str(asks),
                            "SSH_ASKPASS_REQUIRE": "force"})
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        ini = (sshd.host_section(lab, servers["h3"], "held", identity=locked_key)
               + sshd.host_section(lab, refusing, "refusing", identity=locked_key))
        pb = pushbutton(write_jobs(ini + textwrap.dedent("""
            [job:hello]
            command = echo hi
            targets = host:held, host:refusing
            """)))
        run = pb.wait(pb.start_run("hello")["id"], timeout=60)
    finally:
        agent.terminate()
        agent.wait()
    hosts = {h["name"]: h for h in run["hosts"]}
    assert hosts["held"]["state"] == "succeeded", hosts
    assert hosts["refusing"]["error"] == f"auth failed: pbtest@127.0.0.1 refused key {locked_key}", hosts


def test_which_key_files_need_a_passphrase(tmp_path):
    """OpenSSH's own format, legacy PEM and PKCS#8, as ssh-keygen writes them; an unreadable path claims nothing."""
    from server.executors.key_files import needs_passphrase

    def key(name: str, passphrase: str, *fmt: str):
        path = tmp_path / name
        subprocess.run(["ssh-keygen", "-q", "-t", "rsa" if fmt else "ed25519", *(["-b", "1024"] if fmt else []),
                        *fmt, "-N", passphrase, "-C", "", "-f", str(path)], check=True)
        return path

    assert needs_passphrase(key("locked", "Correct-Horse-7"))
    assert not needs_passphrase(key("open", ""))
    assert needs_passphrase(key("pem", "Correct-Horse-7", "-m", "PEM"))
    assert not needs_passphrase(key("pem_open", "", "-m", "PEM"))
    assert needs_passphrase(key("pkcs8", "Correct-Horse-7", "-m", "PKCS8"))
    assert not needs_passphrase(tmp_path / "missing")
