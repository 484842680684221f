"""Removing a run's uploaded copies from a host that accepts the `rm` and never answers (real sshd,
a ForceCommand that holds the removal): the removal is bounded like a connection (2 x
connect_timeout + 20 s), Stop reaches it, the run ends, and the host's failed cleanup is said in
the run's output without failing any host."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import textwrap
import time
from contextlib import suppress

import pytest

from tests.helpers import wait_for
from tests.ssh import sshd
from tests.ssh.test_remote_files import by_host, start

# Every session runs as sshd would have run it, but the removal of an upload folder hangs (its
# shell's PID kept, so the test can end it).
HOLD_RM = """#!/bin/sh
case "$SSH_ORIGINAL_COMMAND" in
  *"rm -rf -- "*) echo $$ > "$(mktemp {dir}/held-rm.XXXXXX)"; exec sleep 3600;;
esac
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
"""
_names = itertools.count(1)


@pytest.fixture
def holding(lab):
    """A host whose `rm` never answers; the held removals are ended afterwards."""
    script = lab.root / f"hold-rm-{next(_names)}.sh"
    script.write_text(HOLD_RM.format(dir=lab.scratch))
    script.chmod(0o755)
    server = lab.start(script.stem, extra=f"ForceCommand {script}\n")
    sshd.write_known_hosts(lab)
    yield server
    for held in lab.scratch.glob("held-rm.*"):
        with suppress(ValueError, ProcessLookupError, PermissionError):
            os.kill(int(held.read_text()), signal.SIGKILL)
        held.unlink()


def jobs(lab, server, other, timeout: str = "1s") -> str:
    return (sshd.host_section(lab, server, "stuck", connect_timeout=timeout)
            + sshd.host_section(lab, other, "fine", connect_timeout=timeout) + textwrap.dedent("""
        [job:two]
        command = sh -c 'echo "got $(cat "$1")"' sh {data}
        targets = host:stuck, host:fine
        param.data.type = file
        param.wait.type = int
        """))


def left_behind(line: str) -> None:
    """The folder the warning names stays on the host (this machine): removed here."""
    shutil.rmtree(line.rsplit("; ", 1)[1].removesuffix(" stays there"), ignore_errors=True)


def held(lab) -> bool:
    return any(path.read_text().strip() for path in lab.scratch.glob("held-rm.*"))


def test_a_removal_the_host_never_answers_ends_within_the_connect_bound_and_is_reported(
        pushbutton, write_jobs, lab, servers, holding):
    pb = pushbutton(write_jobs(jobs(lab, holding, servers["h5"])))
    begun = time.monotonic()
    run = start(pb, "two", b"payload")
    ended = pb.wait(run["id"], timeout=90)  # 2 x 1 s + 20 s, and the copy and command before it
    took = time.monotonic() - begun
    assert held(lab)  # the host did hold the removal
    assert took >= 22, took  # not given up before its bound
    assert ended["state"] == "succeeded", ended
    assert [(h["name"], h["state"], h["exit_code"]) for h in ended["hosts"]] == [
        ("stuck", "succeeded", 0), ("fine", "succeeded", 0)]
    out = by_host(pb, run["id"])
    assert out["fine"] == ["got payload"]
    said = [line for line in out["stuck"] if "pb-upload." in line]
    assert len(said) == 1 and said[0].startswith("pushbutton: warning: the uploaded files were not removed"), out
    left_behind(said[0])
    assert "no answer within 22s" in said[0], said
    assert "uploaded files were not removed" in pb.log.read_text()  # and in the server's log


def test_stop_reaches_a_removal_the_host_never_answers(pushbutton, write_jobs, lab, servers, holding):
    pb = pushbutton(write_jobs(jobs(lab, holding, servers["h5"], timeout="30s")))
    run = start(pb, "two", b"payload")
    wait_for(lambda: held(lab), timeout=30)
    wait_for(lambda: [h["state"] for h in pb.run(run["id"])["hosts"]] == ["succeeded", "succeeded"], timeout=30)
    stopped = time.monotonic()
    assert pb.client.post(f"/api/runs/{run['id']}/cancel").status_code == 202
    ended = pb.wait(run["id"], timeout=30)  # the bound would be 80 s
    assert time.monotonic() - stopped < 20
    assert ended["state"] == "cancelled"
    assert [h["state"] for h in ended["hosts"]] == ["succeeded", "succeeded"]
    said = [line for line in by_host(pb, run["id"])["stuck"] if "pb-upload." in line]
    assert len(said) == 1 and "the run was stopped" in said[0], said
    left_behind(said[0])
