"""The command preview on a remote target (real sshd): for every parameter type, the preview's
remote command line is exactly what sshd was asked to run (recorded on the host by a
ForceCommand), and its argv exactly what the remote process has (its /proc/PID/cmdline)."""

from __future__ import annotations

import shlex
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings

from server.preview import NONCE
from tests import values as V
from tests.helpers import Pushbutton
from tests.ssh import sshd
from tests.test_preview import check_preview, enough_of_both, jobs_ini

# Records the command line the client sent (sshd puts it in SSH_ORIGINAL_COMMAND), then runs it
# as sshd would have: with the login shell, which for the lab's user is /bin/sh.
RECORDER = """#!/bin/sh
printf %s "$SSH_ORIGINAL_COMMAND" > "$(mktemp {dir}/session.XXXXXX)"
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
"""


@pytest.fixture(scope="module")
def recording(lab, tmp_path_factory):
    """A server whose one job per type and place runs on a host that records every command line."""
    own = sshd.Lab()
    try:
        recorder = own.root / "record.sh"
        recorder.write_text(RECORDER.format(dir=own.scratch))
        recorder.chmod(0o755)
        host = own.start("p1", extra=f"ForceCommand {recorder}\n")
        sshd.write_known_hosts(own)
        folder = tmp_path_factory.mktemp("remote-preview")
        jobs = folder / "jobs.ini"
        jobs.write_text(sshd.host_section(own, host) + jobs_ini("targets = host:p1\n"))
        pb = Pushbutton(jobs, folder / "data", folder / "server.log").start()
        yield pb, own
        pb.stop()
    finally:
        own.close()


def test_the_remote_command_line_and_argv_of_every_type_are_exactly_what_runs_on_the_host(recording):
    outcomes = Counter()

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=V.cases())
    def check(case):
        outcomes["ran" if compared(recording, case) else "refused"] += 1

    check()
    enough_of_both(outcomes)


def compared(recording, case) -> bool:
    """One value's preview against what ran on the host; False when both refused it."""
    pb, own = recording
    for old in own.scratch.glob("session.*"):
        old.unlink()
    got = check_preview(pb, *case)  # argv: as the remote process has it
    if got is None:
        return False
    preview, _ = got
    assert preview["targets"] == ["p1"] and preview["workdir"] is None
    sessions = [path.read_text(errors="surrogateescape") for path in own.scratch.glob("session.*")]
    assert len(sessions) == 1, sessions
    ran = sessions[0]
    nonce = shlex.split(ran)[5]  # exec /bin/sh -c WRAPPER pushbutton NONCE ...
    assert preview["remote"]["p1"].replace(f" {NONCE} ", f" {nonce} ", 1) == ran
    return True
