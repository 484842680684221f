"""A host that dies mid-run (its sshd and every process it started killed): that host fails with
a clear error, the other hosts of the run finish."""

from __future__ import annotations

import itertools
import os
import signal
from contextlib import suppress
from pathlib import Path

from tests.helpers import wait_for
from tests.ssh import sshd
from tests.ssh.test_remote_runs import by_host, jobs

_names = itertools.count(1)


def tree(pid: int) -> set[int]:
    """`pid` and all its descendants (from /proc); those that are gone already are left out."""
    out = {pid}
    with suppress(FileNotFoundError, ProcessLookupError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                out |= tree(int(child))
    return out


def kill_host(server: sshd.Sshd) -> None:
    """The host goes down at once: its sshd, each connection's sshd and the commands they run.
    Stopped first, until no new child appears, so nothing in the tree reacts or escapes."""
    stopped: set[int] = set()
    while fresh := tree(server.proc.pid) - stopped:
        for pid in fresh:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        stopped |= fresh
    for pid in stopped:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.proc.wait()


def test_a_host_that_dies_mid_run_fails_clearly_and_the_others_finish(pushbutton, write_jobs, lab, servers):
    dying = lab.start(f"dying{next(_names)}")
    gate = lab.scratch / f"gate-dies-{dying.name}"
    hosts_ini = (sshd.host_section(lab, dying, "dying", host_key=dying.host_key)
                 + sshd.host_section(lab, servers["h1"]) + sshd.host_section(lab, servers["h2"]))
    pb = pushbutton(jobs(write_jobs, hosts_ini, f"""
        [group:three]
        hosts = dying, h1, h2
        [job:gated]
        command = sh -c 'echo "up $TESTHOST"; while [ ! -e {gate} ]; do sleep 0.05; done; echo "done $TESTHOST"'
        targets = group:three
        """))
    try:
        run_id = pb.start_run("gated")["id"]
        wait_for(lambda: all(h["state"] == "running" for h in pb.run(run_id)["hosts"]), timeout=30)
        wait_for(lambda: pb.client.get(f"/api/runs/{run_id}/log").text.count("up ") == 3, timeout=30)
        kill_host(dying)
        wait_for(lambda: pb.run(run_id)["hosts"][0]["state"] == "failed", timeout=30)
        assert [h["state"] for h in pb.run(run_id)["hosts"]] == ["failed", "running", "running"], pb.run(run_id)
        gate.touch()
        run = pb.wait(run_id, timeout=30)
    finally:
        gate.unlink(missing_ok=True)
    hosts = {h["name"]: h for h in run["hosts"]}
    assert (hosts["h1"]["state"], hosts["h2"]["state"]) == ("succeeded", "succeeded")
    assert hosts["dying"]["exit_code"] is None
    error = hosts["dying"]["error"]
    assert error.startswith("connection lost:") and f"127.0.0.1:{dying.port}" in error, error
    assert run["state"] == "failed"
    output = by_host(pb.events(run_id))
    assert output["h1"] == ["up h1", "done h1"] and output["h2"] == ["up h2", "done h2"]
    assert output["dying"][0] == "up " + dying.name and output["dying"][-1] == f"pushbutton: {error}"


def test_a_command_whose_own_ssh_lost_its_host_fails_with_its_exit_code_not_as_this_host_lost(
        pushbutton, write_jobs, lab, servers):
    # A deploy script that goes on over ssh to another machine: its ssh's last words are the
    # command's stderr, not this host's connection ending.
    hosts = "".join(sshd.host_section(lab, servers[name], control_persist=persist)
                    for name, persist in (("h1", "0"), ("h2", "60")))
    pb = pushbutton(write_jobs(hosts + """
        [job:onward]
        command = sh -c 'echo "Connection to db.internal closed by remote host." >&2; exit 255'
        targets = host:h1, host:h2
        """))
    run = pb.wait(pb.start_run("onward")["id"])
    assert [(h["name"], h["state"], h["exit_code"], h["error"]) for h in run["hosts"]] == [
        ("h1", "failed", 255, None), ("h2", "failed", 255, None)], run["hosts"]
