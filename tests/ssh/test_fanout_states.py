"""A fan-out's hosts over time against real sshd: `queued`, `connecting` until the command
starts, `running`, then the outcome; and the ssh clients' CPU priority while they run."""

from __future__ import annotations

import subprocess

from tests.helpers import scheduling, wait_for
from tests.ssh import sshd
from tests.ssh.test_remote_runs import by_host, jobs


def test_a_host_is_connecting_until_its_command_starts_then_running(pushbutton, write_jobs, lab, servers):
    slow = sshd.SlowProxy(servers["h1"].port, delay=1.5)  # a far host: its banner comes late
    gate = lab.scratch / "gate-connecting"
    hosts_ini = (sshd.host_section(lab, servers["h1"], "slow", port=slow.port, host_key=servers["h1"].host_key)
                 + sshd.host_section(lab, servers["h2"], "later"))
    pb = pushbutton(jobs(write_jobs, hosts_ini, f"""
        [group:one_at_a_time]
        hosts = slow, later
        parallel = 1
        [job:gated]
        command = sh -c 'while [ ! -e {gate} ]; do sleep 0.05; done; echo "$TESTHOST"'
        targets = group:one_at_a_time
        """))
    try:
        run_id = pb.start_run("gated")["id"]
        wait_for(lambda: pb.run(run_id)["hosts"][0]["state"] == "running", timeout=20)
        gate.touch()
        events = pb.events(run_id)
    finally:
        slow.close()
        gate.unlink(missing_ok=True)
    snapshots = [{h["name"]: h["state"] for h in e.data["hosts"]} for e in events if e.type in ("state", "end")]
    seen: dict[str, list[str]] = {"slow": [], "later": []}
    for snapshot in snapshots:
        for name, state in snapshot.items():
            if seen[name][-1:] != [state]:
                seen[name].append(state)
    assert seen["slow"] == ["queued", "connecting", "running", "succeeded"]
    # the gate is open by then: "later" may finish within one batch of host changes
    assert seen["later"] in (["queued", "connecting", "running", "succeeded"], ["queued", "connecting", "succeeded"])
    assert all(s["later"] == "queued" for s in snapshots if s["slow"] in ("connecting", "running"))  # its slot
    assert by_host(events) == {"slow": ["h1"], "later": ["h2"]}


def test_ssh_clients_run_at_the_lowest_cpu_priority_and_never_outweigh_the_server(pushbutton, write_jobs,
                                                                                 hosts_ini, lab):
    """100 handshakes must not crowd out the window, the page or the server: each ssh client runs
    at nice 19 in the server's scheduling group ("autogroup"), or, when the server has a terminal,
    in a session and group of its own lowered to nice 19 (test_client_spawn.py: as a user)."""
    gate = lab.scratch / "gate-nice"
    pb = pushbutton(jobs(write_jobs, hosts_ini, f"""
        [group:two]
        hosts = h1, h2
        [job:gated]
        command = sh -c 'while [ ! -e {gate} ]; do sleep 0.05; done'
        targets = group:two
        """))
    try:
        run_id = pb.start_run("gated")["id"]
        wait_for(lambda: all(h["state"] == "running" for h in pb.run(run_id)["hosts"]), timeout=20)
        children = subprocess.run(["pgrep", "-P", str(pb.proc.pid), "-x", "ssh"], capture_output=True,
                                  text=True).stdout.split()
        assert len(children) == 2
        server = scheduling(pb.proc.pid)
        for pid in children:
            client = scheduling(int(pid))
            assert client["nice"] == 19
            assert client["pgid"] == int(pid)  # a group of its own: stopped with what it started
            if server["tty"] == 0:  # no terminal (CI, a service, the desktop app)
                assert client["sid"] == server["sid"] and client["group"] == server["group"]
            else:
                assert client["sid"] == int(pid) and client["tty"] == 0
                assert client["group"] is None or client["group_nice"] == 19
        assert server["group"] is None or server["group_nice"] == 0
    finally:
        gate.touch()
    assert pb.wait(run_id)["state"] == "succeeded"
    gate.unlink()

