"""Headless Pushbutton never asks anyone: a host that wants a password fails alone, saying so."""

from __future__ import annotations

import textwrap

import pytest

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
