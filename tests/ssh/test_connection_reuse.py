"""SSH connections kept open between runs (`[host:NAME] control_persist`): the next run on a host
opens a session on the connection the last one made, trust is never carried past a change of the
host's settings, a host that allows few sessions still runs everything, and nothing stays open once
the server stops."""

from __future__ import annotations

import itertools
import textwrap

import psutil

from tests.helpers import lines_of, wait_for
from tests.ssh import sshd

_names = itertools.count(1)


def fresh(lab, extra: str = "") -> sshd.Sshd:
    """A host of its own, known in the lab's known_hosts."""
    server = lab.start(f"reuse{next(_names)}", extra)
    sshd.write_known_hosts(lab)
    return server


def one_host(lab, write_jobs, server: sshd.Sshd, **keys):
    return write_jobs(sshd.host_section(lab, server, "web", **keys) + textwrap.dedent("""
        [job:hello]
        command = sh -c 'echo "hello $1"' sh {n}
        targets = host:web
        param.n.type = int
        """))


def masters(folder_of: int) -> list[psutil.Process]:
    """The kept-open connections' `ssh: PATH [mux]` processes of the server with PID `folder_of`."""
    mark = f"pb-ssh-{folder_of}-"
    return [p for p in psutil.process_iter(["cmdline"])
            if any(mark in arg and "[mux]" in " ".join(p.info["cmdline"] or []) for arg in p.info["cmdline"] or [])]


def test_the_next_run_on_a_host_reuses_its_connection(pushbutton, write_jobs, lab):
    server = fresh(lab)
    pb = pushbutton(one_host(lab, write_jobs, server))
    for n in range(3):
        run = pb.wait(pb.start_run("hello", n=n)["id"], timeout=30)
        assert run["state"] == "succeeded" and lines_of(pb.events(run["id"])) == [f"hello {n}"]
    assert server.logins(lab.user_key) == [3]  # one login, three sessions on it
    assert len(masters(pb.proc.pid)) == 1


def test_control_persist_0_connects_for_every_run(pushbutton, write_jobs, lab):
    server = fresh(lab)
    pb = pushbutton(one_host(lab, write_jobs, server, control_persist="0"))
    for n in range(2):
        assert pb.wait(pb.start_run("hello", n=n)["id"], timeout=30)["state"] == "succeeded"
    assert server.logins(lab.user_key) == [1, 1]
    assert masters(pb.proc.pid) == []


def test_a_changed_pin_is_checked_even_while_a_connection_is_open(pushbutton, write_jobs, lab):
    """Trust is not carried over: after a reload pins another key, the open connection is not used
    and the host fails before anything runs."""
    server = fresh(lab)
    other = fresh(lab)  # its key is not this host's
    path = one_host(lab, write_jobs, server, host_key=server.host_key)
    pb = pushbutton(path)
    assert pb.wait(pb.start_run("hello", n=1)["id"], timeout=30)["state"] == "succeeded"
    one_host(lab, write_jobs, server, host_key=other.host_key)  # the same path: a live reload
    res = pb.client.post("/api/reload")
    assert res.status_code == 200 and res.json()["config_error"] is None, res.text
    run = pb.wait(pb.start_run("hello", n=2)["id"], timeout=30)
    assert run["state"] == "failed"
    assert run["hosts"][0]["error"].startswith("host key changed: the server's identity changed; tell ops"), run
    assert server.logins(lab.user_key) == [1]  # nothing more reached the host


def test_a_host_allowing_one_session_per_connection_runs_concurrent_runs(pushbutton, write_jobs, lab):
    """sshd's MaxSessions: a shared connection refuses a second session; it gets its own."""
    server = fresh(lab, "\nMatch all\n    MaxSessions 1\n")
    gate = lab.scratch / f"gate-{server.name}"
    pb = pushbutton(write_jobs(sshd.host_section(lab, server, "web") + textwrap.dedent(f"""
        [pushbutton]
        max_concurrent_runs = 4
        [job:gated]
        command = sh -c 'echo "up $1"; while [ ! -e {gate} ]; do sleep 0.05; done' sh {{n}}
        targets = host:web
        param.n.type = int
        """)))
    try:
        ids = []
        for n in range(3):  # one after the other: the first's connection is there for the others to try
            ids.append(pb.start_run("gated", n=n)["id"])
            wait_for(lambda: pb.run(ids[-1])["hosts"][0]["state"] == "running", timeout=30)
        gate.touch()
        runs = [pb.wait(i, timeout=30) for i in ids]
    finally:
        gate.unlink(missing_ok=True)
    assert [r["state"] for r in runs] == ["succeeded"] * 3, runs
    assert [lines_of(pb.events(i)) for i in ids] == [["up 0"], ["up 1"], ["up 2"]]
    assert sorted(server.logins(lab.user_key)) == [1, 1, 1]  # refused on the shared one: a connection each


def test_a_stopped_server_leaves_no_connection_open(pushbutton, write_jobs, lab):
    server = fresh(lab)
    pb = pushbutton(one_host(lab, write_jobs, server))
    assert pb.wait(pb.start_run("hello", n=1)["id"], timeout=30)["state"] == "succeeded"
    pid = pb.proc.pid
    assert len(masters(pid)) == 1
    pb.stop()
    assert masters(pid) == []
    wait_for(lambda: "Received disconnect from 127.0.0.1" in server.log.read_text(errors="replace"), timeout=10)
