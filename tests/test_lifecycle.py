"""Runs end to end on a real server: resume, cancel, timeout, crashes, queues, retention."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import time

import httpx
import pytest

from tests.helpers import BIN, TOKEN, alive, lines_of, wait_for

TREE_JOB = """
    [job:tree]
    shell = yes
    grace = 1s
    {extra}
    command =
        sleep 300 & echo $! > "$PB_DIR/pids"
        (sleep 301 & echo $! >> "$PB_DIR/pids"; wait) &
        setsid sleep 302 & echo $! >> "$PB_DIR/pids"
        nohup sleep 303 >/dev/null 2>&1 & echo $! >> "$PB_DIR/pids"
        trap '' TERM
        echo $$ >> "$PB_DIR/pids"
        echo started
        while :; do sleep 0.1; done
    param.dir.type = text
    """


def started_tree(pb, tmp_path, job="tree") -> tuple[dict, list[int]]:
    run = pb.start_run(job, dir=str(tmp_path))
    wait_for(lambda: "started" in pb.client.get(f"/api/runs/{run['id']}/log").text)
    # The subshell writes its child's pid on its own schedule: wait for all five.
    pids = wait_for(lambda: len(found := (tmp_path / "pids").read_text().split()) == 5 and [int(p) for p in found])
    assert len(pids) == 5 and all(alive(p) for p in pids)
    return run, pids


def test_cancel_kills_the_whole_tree_even_setsid_nohup_and_term_ignorers(pushbutton, write_jobs, tmp_path):
    pb = pushbutton(write_jobs(TREE_JOB.format(extra="")))
    run, pids = started_tree(pb, tmp_path)
    began = time.monotonic()
    res = pb.client.post(f"/api/runs/{run['id']}/cancel")
    assert res.status_code == 202
    done = pb.wait(run["id"])
    assert done["state"] == "cancelled" and done["exit_code"] == 128 + signal.SIGKILL
    assert time.monotonic() - began < 10
    assert [p for p in pids if alive(p)] == []


def test_timeout_kills_the_tree_and_says_timed_out(pushbutton, write_jobs, tmp_path):
    pb = pushbutton(write_jobs(TREE_JOB.format(extra="timeout = 1s")))
    run, pids = started_tree(pb, tmp_path)
    assert pb.wait(run["id"])["state"] == "timed_out"
    assert [p for p in pids if alive(p)] == []


def test_background_children_do_not_outlive_a_finished_run(pushbutton, write_jobs, tmp_path):
    pb = pushbutton(write_jobs("""
        [job:bg]
        shell = yes
        command = sleep 300 & echo $! > "$PB_DIR/pid"; echo bye
        param.dir.type = text
        """))
    run = pb.start_run("bg", dir=str(tmp_path))
    done = pb.wait(run["id"], timeout=15)
    assert done["state"] == "succeeded" and done["exit_code"] == 0
    assert not alive(int((tmp_path / "pid").read_text()))


def test_resume_at_random_cut_points_gives_exactly_the_rest(pushbutton, write_jobs):
    pb = pushbutton(write_jobs("""
        [job:mixed]
        shell = yes
        command = for i in $(seq 1 40); do seq $((i*100-99)) $((i*100)); echo "err $i" >&2; echo "::progress $i"; done
        """))
    run_id = pb.start_run("mixed")["id"]
    reference = pb.events(run_id)
    assert lines_of(reference, "stdout") == [str(i) for i in range(1, 4001)]
    assert reference[-1].type == "end"
    rng = random.Random(7)
    for cut in [0, 1, len(reference) - 1, len(reference), *rng.sample(range(len(reference)), 12)]:
        for header in (True, False):
            rest = pb.events(run_id, after=cut, header=header) if cut < len(reference) else []
            assert rest == reference[cut:], (cut, header)


def test_a_client_that_keeps_reconnecting_mid_run_sees_every_line_once(pushbutton, write_jobs):
    pb = pushbutton(write_jobs("""
        [job:trickle]
        shell = yes
        command = for i in $(seq 1 60); do seq $((i*50-49)) $((i*50)); sleep 0.01; done
        """))
    run_id = pb.start_run("trickle")["id"]
    rng = random.Random(11)
    seen, last, connections = [], 0, 0
    while not seen or seen[-1].type != "end":
        batch = pb.events(run_id, after=last, limit=rng.randint(1, 4))
        connections += 1
        seen += batch
        last = batch[-1].id
    assert [e.id for e in seen] == list(range(1, len(seen) + 1))
    assert lines_of(seen) == [str(i) for i in range(1, 3001)]
    assert connections > 5


def test_kill_9_then_restart_marks_interrupted_and_keeps_every_line(pushbutton, write_jobs, tmp_path):
    jobs = write_jobs("""
        [job:count]
        shell = yes
        command = i=0; while [ $i -lt 100000 ]; do i=$((i+1)); echo "line $i"; sleep 0.002; done
        """)
    pb = pushbutton(jobs)
    run_id = pb.start_run("count")["id"]
    seen = []
    with pb.client.stream("GET", f"/api/runs/{run_id}/events") as res:
        from tests.helpers import parse_sse, sse_lines

        for event in parse_sse(sse_lines(res)):
            seen.append(event)
            if len(lines_of(seen)) >= 300:
                pb.proc.kill()  # SIGKILL: no chance to clean up
                break
    pb.proc.wait()
    again = pushbutton(jobs, data_dir=pb.data_dir)
    run = again.run(run_id)
    assert run["state"] == "interrupted" and run["finished"] is not None
    stored = again.client.get(f"/api/runs/{run_id}/log").text.splitlines()
    assert stored == [f"line {i}" for i in range(1, len(stored) + 1)]
    assert len(stored) >= len(lines_of(seen))
    rest = again.events(run_id, after=seen[-1].id)  # resume across the restart
    assert [e.id for e in seen + rest] == list(range(1, len(seen) + len(rest) + 1))
    assert lines_of(seen + rest) == stored
    assert rest[-1].type == "end" and rest[-1].data["state"] == "interrupted"


def test_sigterm_stops_runs_records_interrupted_and_exits_0(pushbutton, write_jobs, tmp_path):
    jobs = write_jobs(TREE_JOB.format(extra=""))
    pb = pushbutton(jobs)
    run, pids = started_tree(pb, tmp_path)
    assert pb.stop(signal.SIGTERM) == 0
    assert [p for p in pids if alive(p)] == []
    again = pushbutton(jobs, data_dir=pb.data_dir)
    assert again.run(run["id"])["state"] == "interrupted"


def test_a_start_still_being_recorded_when_shutdown_begins_ends_interrupted_and_never_runs(write_jobs, tmp_path):
    """start() checks `closing`, then waits for its INSERT. A shutdown in that gap has stopped
    every run it knew of and waited for them: this one must not execute after it, nor stay
    `running` in the history until the next start's recovery."""
    import gevent

    from server import catalog as C
    from server.runs import Runs
    from server.store import Store

    runs = Runs(C.load(write_jobs("[job:a]\ncommand = sleep 30\n")), Store(tmp_path / "data"))
    try:
        starting = gevent.spawn(runs.start, "a", {})
        gevent.sleep(0)
        assert not starting.dead and not runs.active  # past the check, its INSERT on the writer
        runs.shutdown(timeout=5)
        run = starting.get(timeout=5)
        gevent.sleep(0.3)
        assert run.state == "interrupted" and run.process is None and not runs._workers
        with gevent.Timeout(10):
            while not run.log.finished:  # its end committed
                gevent.sleep(0.02)
        assert runs.store.run(run.id)["state"] == "interrupted"
        assert [kind for _, kind, _ in runs.store.events(run.id, 0)][-1] == "end"
    finally:
        runs.shutdown(timeout=5)
        runs.store.close()


HOLD = """
    [pushbutton]
    max_concurrent_runs = 2
    [job:hold]
    shell = yes
    concurrency = 1
    command = while [ ! -e "$PB_FLAG" ]; do sleep 0.02; done
    param.flag.type = text
    [job:other]
    shell = yes
    command = while [ ! -e "$PB_FLAG" ]; do sleep 0.02; done
    param.flag.type = text
    """


def test_job_and_global_limits_queue_runs_in_order(pushbutton, write_jobs, tmp_path):
    pb = pushbutton(write_jobs(HOLD))
    flag = {n: tmp_path / f"flag{n}" for n in range(1, 6)}
    h1 = pb.start_run("hold", flag=str(flag[1]))["id"]
    h2 = pb.start_run("hold", flag=str(flag[2]))["id"]
    o3 = pb.start_run("other", flag=str(flag[3]))["id"]
    o4 = pb.start_run("other", flag=str(flag[4]))["id"]
    o5 = pb.start_run("other", flag=str(flag[5]))["id"]

    def states():
        return [pb.run(i)["state"] for i in (h1, h2, o3, o4, o5)]

    assert states() == ["running", "queued", "running", "queued", "queued"]
    assert pb.client.post(f"/api/runs/{o5}/cancel").status_code == 202
    assert pb.run(o5)["state"] == "cancelled"  # a queued run ends at once
    assert pb.events(o5)[-1].type == "end"
    flag[1].touch()
    pb.wait(h1)
    wait_for(lambda: states() == ["succeeded", "running", "running", "queued", "cancelled"])
    flag[3].touch()
    wait_for(lambda: states() == ["succeeded", "running", "succeeded", "running", "cancelled"])
    flag[2].touch()
    flag[4].touch()
    pb.wait(h2)
    pb.wait(o4)
    assert states() == ["succeeded", "succeeded", "succeeded", "succeeded", "cancelled"]


def test_retention_prunes_old_history_at_start_up(pushbutton, write_jobs):
    jobs = write_jobs("""
        [pushbutton]
        retention_days = 30
        [job:a]
        command = echo hi
        """)
    pb = pushbutton(jobs)
    old, new = pb.start_run("a")["id"], pb.start_run("a")["id"]
    pb.wait(old), pb.wait(new)
    assert pb.stop() == 0
    with sqlite3.connect(pb.data_dir / "history.sqlite3") as db:
        db.execute("UPDATE runs SET finished = finished - 31 * 86400 WHERE id = ?", (old,))
    again = pushbutton(jobs, data_dir=pb.data_dir)
    assert again.client.get(f"/api/runs/{old}").status_code == 404
    assert again.run(new)["state"] == "succeeded"
    with sqlite3.connect(pb.data_dir / "history.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM events WHERE run_id = ?", (old,)).fetchone() == (0,)


def test_non_utf8_output_is_delivered_with_replacement_characters(pushbutton, write_jobs):
    pb = pushbutton(write_jobs(r"""
        [job:latin1]
        command = printf 'caf\351 ok\n\377\376\nlast line without newline'
        """))
    run_id = pb.start_run("latin1")["id"]
    assert pb.output(run_id) == ["caf\ufffd ok", "\ufffd\ufffd", "last line without newline"]
    assert pb.run(run_id)["state"] == "succeeded"


def test_a_job_reads_an_empty_stdin_and_holds_no_descriptor_but_its_three(pushbutton, write_jobs):
    pb = pushbutton(write_jobs("""
        [job:fds]
        shell = yes
        command =
            cat
            readlink /proc/$$/fd/0
            ls /proc/$$/fd
        """))
    run_ids = [pb.start_run("fds")["id"] for _ in range(3)]  # the server's /dev/null is opened once
    for run_id in run_ids:
        assert pb.output(run_id) == ["/dev/null", "0", "1", "2"]
        assert pb.run(run_id)["state"] == "succeeded"


def test_a_missing_program_fails_the_run_with_a_clear_message(pushbutton, write_jobs):
    pb = pushbutton(write_jobs("""
        [job:missing]
        command = ./no-such-script.sh
        """))
    run_id = pb.start_run("missing")["id"]
    events = pb.events(run_id)
    assert lines_of(events, "stderr") == ["cannot start './no-such-script.sh': No such file or directory"]
    assert events[-1].data["state"] == "failed" and events[-1].data["exit_code"] == 127


@pytest.mark.parametrize("count", [20])
def test_many_runs_at_once_each_get_their_own_output(pushbutton, write_jobs, count):
    pb = pushbutton(write_jobs("""
        [pushbutton]
        max_concurrent_runs = 20
        [job:seq]
        command = seq {n}
        param.n.type = int
        """))
    ids = {n: pb.start_run("seq", n=1000 + n)["id"] for n in range(count)}
    for n, run_id in ids.items():
        assert pb.output(run_id) == [str(i) for i in range(1, 1001 + n)]


def test_memory_stays_flat_however_much_a_run_prints(pushbutton, write_jobs):
    import psutil

    pb = pushbutton(write_jobs("""
        [job:flood]
        shell = yes
        command = head -c 60000000 /dev/zero | tr '\\0' x | fold -w 100
        """))
    server = psutil.Process(pb.proc.pid)
    idle = server.memory_info().rss
    run_id = pb.start_run("flood")["id"]
    peak = idle
    while pb.run(run_id)["state"] == "running":
        peak = max(peak, server.memory_info().rss)
        time.sleep(0.02)
    assert pb.run(run_id)["state"] == "succeeded"
    log = pb.client.get(f"/api/runs/{run_id}/log")
    assert len(log.content) == 60_600_000  # 600,000 lines of 100 x and a newline
    assert (peak - idle) / 2**20 < 45, f"RSS grew by {(peak - idle) / 2**20:.0f} MiB"


def test_processes_of_a_killed_server_are_stopped_at_the_next_start(pushbutton, write_jobs, tmp_path):
    jobs = write_jobs(TREE_JOB.format(extra=""))
    pb = pushbutton(jobs)
    run, pids = started_tree(pb, tmp_path)
    pb.proc.kill()  # SIGKILL: the quiet tree does not even notice its pipes closing
    pb.proc.wait()
    time.sleep(0.3)
    assert all(alive(p) for p in pids)
    again = pushbutton(jobs, data_dir=pb.data_dir)
    assert again.run(run["id"])["state"] == "interrupted"
    assert [p for p in pids if alive(p)] == []


def test_sighup_during_start_up_recovery_is_applied_once_ready_instead_of_ending_the_server(pushbutton, write_jobs,
                                                                                           tmp_path):
    """SIGHUP's default action ends a process, and the server set its reload handler only once it
    served: a reload (`systemctl reload`, a config tool) while start-up recovered the runs a killed
    server left (here 5 s: an orphan that ignores SIGTERM) killed it. It is now deferred: logged,
    and applied once the server is ready."""
    jobs = write_jobs(TREE_JOB.format(extra=""))
    pb = pushbutton(jobs)
    run, pids = started_tree(pb, tmp_path)
    pb.proc.kill()
    pb.proc.wait()
    began = pb.log.stat().st_size
    with open(pb.log, "a") as log:  # started by hand: the signal goes before its URL line
        proc = subprocess.Popen([BIN, "--headless", "--jobs", str(jobs), "--port", "0", "--token", TOKEN,
                                 "--data-dir", str(pb.data_dir)], stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        logged = lambda: pb.log.read_bytes()[began:].decode()  # noqa: E731
        wait_for(lambda: "marked 1 run(s) left active" in logged(), timeout=30)
        assert any(alive(p) for p in pids)  # the recovery is still stopping them
        proc.send_signal(signal.SIGHUP)
        line = proc.stdout.readline()
        assert line.startswith("Pushbutton serving on http://"), (proc.poll(), logged())
        wait_for(lambda: f"reloaded {jobs} (signal)" in logged())
        assert "SIGHUP during start-up: jobs.ini is re-read once the server is ready" in logged()
        assert proc.poll() is None and [p for p in pids if alive(p)] == []
        client = httpx.Client(base_url=line.split(" on ", 1)[1].split("?")[0], timeout=30,
                              headers={"Authorization": f"Bearer {TOKEN}"})
        assert client.get(f"/api/runs/{run['id']}").json()["state"] == "interrupted"
    finally:
        proc.terminate()
        proc.wait(30)
        for pid in pids:  # a server that died mid-recovery left them
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 0 and "Traceback" not in logged()


def test_both_ways_of_finding_a_runs_processes_agree(tmp_path):
    import subprocess

    from server.executors import local

    marker = "probe-1"
    env = {"PATH": "/usr/bin:/bin", local.MARKER: marker}
    group = subprocess.Popen(["sh", "-c", "sleep 60 & setsid sleep 61 & wait"], env=env, start_new_session=True)
    try:
        expected = wait_for(lambda: len(found := local._members_psutil(group.pid, marker)) == 3 and found)
        assert sorted(local._members_proc({(group.pid, marker)})[(group.pid, marker)]) == sorted(expected)
    finally:
        local._signal_tree(group.pid, marker, signal.SIGKILL)
        group.wait()
    assert wait_for(lambda: local.members(group.pid, marker) == [])


def test_a_process_whose_marker_lies_deep_in_a_large_environment_is_found():
    from server.executors import local

    marker = "probe-deep"
    env = {"PATH": "/usr/bin:/bin", "PB_BIG": "x" * 40000, local.MARKER: marker}  # in this order
    proc = subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)
    try:
        assert wait_for(lambda: local._members_proc({(None, marker)})[(None, marker)] == [proc.pid])
    finally:
        proc.kill()
        proc.wait()


def test_runs_ending_together_share_one_scan_of_the_processes(monkeypatch):
    import subprocess

    import gevent

    from server.executors import local

    scans = []
    scan = local._scan
    monkeypatch.setattr(local, "_scan", lambda asked: scans.append(len(asked)) or scan(asked))
    groups = [subprocess.Popen(["sh", "-c", "sleep 60 & setsid sleep 61 & wait"], start_new_session=True,
                               env={"PATH": "/usr/bin:/bin", local.MARKER: f"together-{i}"}) for i in range(6)]
    try:
        for group in groups:  # both sleeps started
            wait_for(lambda group=group: len(local._members_psutil(group.pid, "x")) == 2)
        asks = [gevent.spawn(local.members, group.pid, f"together-{i}") for i, group in enumerate(groups)]
        gevent.joinall(asks, raise_error=True)
        found = [set(ask.value) for ask in asks]
        assert len(scans) <= 2 and sum(scans) == len(groups)  # the first asker's scan, then one for the rest
        for group, pids in zip(groups, found, strict=True):
            assert group.pid in pids and len(pids) == 3  # the shell, its sleep, and the one in a session of its own
        assert not set.intersection(*found)
    finally:
        for i, group in enumerate(groups):
            local._signal_tree(group.pid, f"together-{i}", signal.SIGKILL)
            group.wait()


def _quiet_streams():
    from server.output import OutputStream

    return [OutputStream(name, lambda kind, data: None) for name in ("stdout", "stderr")]


def test_the_leader_stays_unreaped_while_its_group_is_swept(tmp_path):
    """Its PID, and so its group id, cannot be given to another process until the sweep ends."""
    import gevent

    from server.executors.local import LocalProcess

    proc = LocalProcess(["sh", "-c", "(trap '' TERM; sleep 30) & sleep 0.2"], dict(os.environ), str(tmp_path),
                        "pinned-1", grace=1.5)
    runner = gevent.spawn(proc.run, *_quiet_streams())
    while proc.proc is None or proc_state(proc.proc.pid) != "Z":  # the leader exited; its child lives on
        assert not runner.dead, "the sweep ended without the leader ever being seen as a zombie"
        gevent.sleep(0.01)
    assert runner.get(timeout=15) == 0
    assert proc_state(proc.proc.pid) is None  # reaped once the sweep was done


def test_stop_after_the_process_was_reaped_signals_only_the_runs_marked_processes(tmp_path):
    """A stop that comes after the run ended must not signal its old group id, which the OS may
    have given to an unrelated process: simulated by pointing the run at a stranger's PID."""
    import gevent

    from server.executors.local import MARKER, LocalProcess, members

    marker = f"reuse-{random.getrandbits(32)}"
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)  # a group of its own: pgid = pid
    ours = None
    try:
        proc = LocalProcess(["true"], dict(os.environ), str(tmp_path), marker, grace=1)
        assert gevent.spawn(proc.run, *_quiet_streams()).get(timeout=15) == 0
        ours = subprocess.Popen(["sleep", "61"], env={**os.environ, MARKER: marker}, start_new_session=True)
        proc.proc.pid = stranger.pid  # as if the OS had reused the leader's PID for the stranger
        proc.stop()
        proc._killer.join(timeout=15)
        # (CI failed here once, 2026-12-03: `ours` still ran 5 s later; this says which step it was)
        assert proc._killer.dead, f"the stop still ran after 15 s; its process found: {members(None, marker)}"
        assert ours.wait(5) == -signal.SIGTERM  # the run's own process is still found by its marker
        time.sleep(0.2)
        assert stranger.poll() is None, "an unrelated process group was signalled"
    finally:
        for child in (stranger, ours):
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()


def proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def test_a_cancelled_queued_run_reads_cancelled_at_once_even_before_the_disk_has_it(write_jobs, tmp_path):
    """The run has left the active set but its end is still in the writer's queue: reading SQLite
    then would show it queued. Here the writer is held up on purpose."""
    import threading

    import httpx

    from server import catalog as C
    from server.runtime import Server

    server = Server(C.load(write_jobs("[job:hold]\ncommand = sleep 30\nconcurrency = 1\n")), tmp_path / "data")
    server.start()
    gate = threading.Event()
    try:
        api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30)
        api.post("/api/jobs/hold/runs", json={"params": {}})
        queued = api.post("/api/jobs/hold/runs", json={"params": {}}).json()["run"]
        assert queued["state"] == "queued"
        server.runs.store.submit(lambda conn: gate.wait(20))  # the writer thread waits here
        assert api.post(f"/api/runs/{queued['id']}/cancel").status_code == 202
        assert api.get(f"/api/runs/{queued['id']}").json()["state"] == "cancelled"
    finally:
        gate.set()
        server.stop(30)
