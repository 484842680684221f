"""Stop, timeout and a dropped connection kill the remote process group, seen from a second
connection; secrets never appear in a process list."""

from __future__ import annotations

import hashlib
import random
import shutil
import signal
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

from tests.helpers import lines_of, wait_for

# A job that leaves a background child, and a child that ignores SIGTERM (only SIGKILL after the
# grace period ends it). Each sleep has a unique length so the second connection can find it.
TREE = """
    [job:tree]
    command = sh -c 'sleep "$1" & (trap "" TERM; sleep "$(($1+1))") & echo started; sleep "$(($1+2))"' sh {n}
    grace = 1s
    targets = {targets}
    param.n.type = int
    """


def tree_jobs(write_jobs, hosts_ini: str, targets: str, extra: str = "", timeout: str = ""):
    job = textwrap.dedent(TREE).replace("{targets}", targets) + (f"timeout = {timeout}\n" if timeout else "")
    return write_jobs(hosts_ini + job + textwrap.dedent(extra))


def sleeps(lab, server, n: int) -> list[str]:
    wanted = {f"sleep {k}" for k in (n, n + 1, n + 2)}
    return [p for p in lab.processes(server, "sleep ") if p.split(None, 1)[1] in wanted]


def test_stop_kills_every_hosts_remote_group_over_the_same_connection(pushbutton, write_jobs, hosts_ini, lab,
                                                                     servers):
    group = [servers[h] for h in ("h1", "h2", "h3")]
    pb = pushbutton(tree_jobs(write_jobs, hosts_ini, "group:three", """
        [group:three]
        hosts = h1, h2, h3
        """))
    logins = [s.logins(lab.user_key) for s in group]
    n = random.randrange(7000, 7900) * 10
    run_id = pb.start_run("tree", n=n)["id"]
    # the lab's hosts share one machine: 3 processes on each of the 3 hosts
    wait_for(lambda: len(sleeps(lab, group[0], n)) == 9, timeout=15)
    assert pb.client.post(f"/api/runs/{run_id}/cancel").status_code == 202
    run = pb.wait(run_id, timeout=20)
    assert run["state"] == "cancelled"
    assert [h["state"] for h in run["hosts"]] == ["cancelled"] * 3
    assert sleeps(lab, group[0], n) == []
    # one connection per host, with a second session: the kill went over the run's own connection
    assert [s.logins(lab.user_key)[len(before):] for s, before in zip(group, logins, strict=True)] == [[2]] * 3


def test_timeout_kills_the_remote_group(pushbutton, write_jobs, hosts_ini, lab, servers):
    pb = pushbutton(tree_jobs(write_jobs, hosts_ini, "host:h4", timeout="2s"))
    n = random.randrange(7000, 7900) * 10 + 5
    started = time.monotonic()
    run_id = pb.start_run("tree", n=n)["id"]
    run = pb.wait(run_id, timeout=20)
    assert run["state"] == "timed_out" and run["hosts"][0]["state"] == "timed_out"
    assert 2 <= time.monotonic() - started < 8
    assert "started" in lines_of(pb.events(run_id))
    assert sleeps(lab, servers["h4"], n) == []


def test_a_dropped_connection_kills_the_remote_group(pushbutton, write_jobs, hosts_ini, lab, servers):
    h5 = servers["h5"]
    pb = pushbutton(tree_jobs(write_jobs, hosts_ini, "host:h5"))
    n = random.randrange(7000, 7900) * 10 + 3
    run_id = pb.start_run("tree", n=n)["id"]
    wait_for(lambda: len(sleeps(lab, h5, n)) == 3, timeout=15)
    clients = [p for p in psutil.process_iter(["name", "cmdline"])
               if p.info["name"] == "ssh" and str(h5.port) in (p.info["cmdline"] or [])
               and any(arg.startswith("ControlMaster=") for arg in p.info["cmdline"] or [])]
    assert len(clients) == 1  # the run's session (a kept-open connection's master is `ssh: PATH [mux]`)
    clients[0].send_signal(signal.SIGKILL)  # its session ends as if the network went away
    run = pb.wait(run_id, timeout=20)
    assert run["state"] == "failed"
    assert run["hosts"][0]["error"] == "connection lost: the ssh client was killed by signal 9"
    wait_for(lambda: sleeps(lab, h5, n) == [], timeout=10)  # the wrapper's watchdog: TERM, grace, KILL


def test_secrets_are_on_no_command_line_local_or_remote(pushbutton, write_jobs, hosts_ini, lab, servers):
    h6 = servers["h6"]
    n = random.randrange(7000, 7900) * 10 + 7
    pb = pushbutton(write_jobs(hosts_ini + textwrap.dedent(f"""
        [job:secret]
        command = sh -c 'printf %s "$PB_TOKEN" | sha256sum; sleep {n}'
        targets = host:h6
        param.token.type = secret
        """)))
    secret = f"tok-{random.getrandbits(64):x}"
    run_id = pb.start_run("secret", token=secret)["id"]
    wait_for(lambda: lab.processes(h6, f"sleep {n}"), timeout=15)
    remote_ps = lab.ssh(h6, "ps -eww -o args=")
    assert f"sleep {n}" in remote_ps and secret not in remote_ps
    local = [" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])]
    assert any(f"sleep {n}" in line for line in local) and not any(secret in line for line in local)
    pb.client.post(f"/api/runs/{run_id}/cancel")
    pb.wait(run_id, timeout=20)
    assert lines_of(pb.events(run_id))[0] == hashlib.sha256(secret.encode()).hexdigest() + "  -"
    assert secret not in h6.log.read_text()


def test_server_shutdown_and_crash_leave_no_remote_process(pushbutton, write_jobs, hosts_ini, lab, servers):
    """SIGTERM stops remote runs like a cancel (recorded `interrupted`); after kill -9 the ssh
    clients' stdin closes and the wrapper's watchdog kills the group on the host."""
    h2 = servers["h2"]
    path = tree_jobs(write_jobs, hosts_ini, "host:h2")
    for how in (signal.SIGTERM, signal.SIGKILL):
        pb = pushbutton(path)
        n = random.randrange(7000, 7900) * 10 + (1 if how == signal.SIGTERM else 9)
        run_id = pb.start_run("tree", n=n)["id"]
        wait_for(lambda n=n: len(sleeps(lab, h2, n)) == 3, timeout=15)
        pb.stop(how)
        wait_for(lambda n=n: sleeps(lab, h2, n) == [], timeout=10)
        if how == signal.SIGTERM:  # restarted on the same data: recorded as interrupted, host included
            record = pb.start().run(run_id)
            assert (record["state"], record["hosts"][0]["state"]) == ("interrupted", "interrupted")
            pb.stop()


def test_temp_folders_of_a_killed_server_are_removed_at_the_next_start(pushbutton, write_jobs, hosts_ini, lab,
                                                                       servers, tmp_path, monkeypatch):
    """A run's `pb-ssh-PID-*` folder (control socket, ssh logs) and the server's folder of kept-open
    connections outlive a `kill -9`; the next start removes them, and leaves alone the folders of a
    Pushbutton that is still running; a server that stops removes its own."""
    tmp = Path(tempfile.mkdtemp(prefix="pbt-", dir="/tmp"))  # short: ssh's control socket lives in it
    monkeypatch.setenv("TMPDIR", str(tmp))
    h3 = servers["h3"]
    path = tree_jobs(write_jobs, hosts_ini, "host:h3")
    try:
        killed, live = pushbutton(path, data_dir=tmp_path / "a"), pushbutton(path, data_dir=tmp_path / "b")
        folders = {}
        for pb, n in ((killed, random.randrange(7000, 7900) * 10 + 4), (live, random.randrange(7000, 7900) * 10 + 6)):
            pb.run_id = pb.start_run("tree", n=n)["id"]
            wait_for(lambda n=n: len(sleeps(lab, h3, n)) == 3, timeout=15)
            folders[pb] = set(tmp.glob("pb-ssh-*")) - {f for seen in folders.values() for f in seen}
        assert all(len(found) == 2 for found in folders.values()), folders  # the run's, the connections'
        killed.stop(signal.SIGKILL)
        time.sleep(0.5)
        assert all(folder.exists() for folder in folders[killed])  # nothing removed it
        pushbutton(path, data_dir=tmp_path / "c")
        assert [f for f in folders[killed] if f.exists()] == []
        assert all(folder.exists() for folder in folders[live])  # in use by a live server
        live.client.post(f"/api/runs/{live.run_id}/cancel")
        assert live.wait(live.run_id, timeout=20)["state"] == "cancelled"
        assert len(list(tmp.glob("pb-ssh-*"))) == 1  # the connection kept open for the next run
        live.stop()
        assert list(tmp.glob("pb-ssh-*")) == []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
