"""Fixtures for tests against real OpenSSH servers (see sshd.py). Outside CI a machine without
sshd skips them with the reason; under CI=true that is a failure."""

from __future__ import annotations

import pytest

from tests.helpers import in_ci
from tests.ssh import sshd

HOSTS = 6


@pytest.fixture(scope="session")
def lab():
    reason = sshd.missing()
    if reason:
        if in_ci():
            pytest.fail(f"SSH tests cannot run: {reason}")
        pytest.skip(reason)
    sshd.ensure_user()
    lab = sshd.Lab()
    try:
        for n in range(1, HOSTS + 1):
            lab.start(f"h{n}")
        sshd.write_known_hosts(lab)
        yield lab
    finally:
        lab.close()


@pytest.fixture
def servers(lab) -> dict[str, sshd.Sshd]:
    return {server.name: server for server in lab.servers}


@pytest.fixture
def hosts_ini(lab, servers):
    """[host:hN] sections for every lab server, ready to prepend to a jobs.ini."""
    return "".join(sshd.host_section(lab, server) for server in servers.values())
