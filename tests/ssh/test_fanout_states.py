"""A fan-out's hosts over time against real sshd: `queued`, `connecting` until the command
starts, `running`, then the outcome; and the ssh clients' CPU priority while they run."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.helpers import wait_for
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


def test_ssh_clients_run_at_the_lowest_cpu_priority_in_their_own_scheduling_group(pushbutton, write_jobs,
                                                                                  hosts_ini, lab):
    """100 handshakes must not crowd out the window, the page or the server: each ssh client is its
    own session, which Linux schedules as its own group ("autogroup"), so both are lowered."""
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
        for pid in children:
            proc = Path("/proc", pid)
            assert int((proc / "stat").read_text().rsplit(")", 1)[1].split()[16]) == 19  # nice
            if (proc / "autogroup").exists():  # a kernel with autogroup scheduling (most)
                assert (proc / "autogroup").read_text().rstrip().endswith("nice 19")
    finally:
        gate.touch()
    assert pb.wait(run_id)["state"] == "succeeded"
    gate.unlink()
