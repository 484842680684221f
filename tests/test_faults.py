"""Faults, against real server processes: a `kill -9` during a flood, a full disk, a database
locked by another process, and a client that stops reading while its run floods."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from server.runs import FINAL_RETRY
from tests.helpers import TOKEN, in_own_thread, lines_of, parse_sse, small_disk, sse_lines, wait_for

MiB = 1024 * 1024


def read_stream(pb, run_id: int, seen: list, stop: threading.Event | None = None) -> None:
    """Append the run's events to `seen` until its `end` (or `stop`, or the server going away)."""
    try:
        with httpx.Client(base_url=pb.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client, \
                client.stream("GET", f"/api/runs/{run_id}/events") as res:
            for event in parse_sse(sse_lines(res)):
                seen.append(event)
                if event.type == "end" or (stop is not None and stop.is_set()):
                    return
    except httpx.HTTPError:
        return  # the server was killed under it


def test_kill_9_during_a_flood_keeps_every_seen_line_exactly_once_in_order(pushbutton, write_jobs):
    jobs = write_jobs("""
        [job:flood]
        shell = yes
        command = i=1; while :; do seq $i $((i + 999)); i=$((i + 1000)); sleep 0.005; done
        """)  # as fast as a client can follow: what it sees is right at the head of the output
    pb = pushbutton(jobs)
    run_id = pb.start_run("flood")["id"]
    clients = [[], []]
    readers = [threading.Thread(target=read_stream, args=(pb, run_id, seen)) for seen in clients]
    for reader in readers:
        reader.start()
    wait_for(lambda: all(len(lines_of(seen)) >= 50_000 for seen in clients), timeout=30)
    # The writer is held up for a moment, as by a slow disk: what is shown now must be stored.
    other = sqlite3.connect(pb.data_dir / "history.sqlite3", isolation_level=None, timeout=10)
    other.execute("BEGIN IMMEDIATE")
    time.sleep(0.5)
    pb.proc.kill()  # SIGKILL mid-flood: no chance to flush or clean up
    pb.proc.wait()
    other.execute("ROLLBACK")
    other.close()
    for reader in readers:
        reader.join(30)
    again = pushbutton(jobs, data_dir=pb.data_dir)
    run = again.run(run_id)
    assert run["state"] == "interrupted" and run["finished"] is not None
    stored = again.client.get(f"/api/runs/{run_id}/log").text.splitlines()
    assert stored == [str(i) for i in range(1, len(stored) + 1)]  # exactly once, in order
    for seen in clients:
        assert lines_of(seen) == stored[:len(lines_of(seen))]  # all a client saw is in history
    history = again.events(run_id)
    assert [e.id for e in history] == list(range(1, len(history) + 1))
    assert history[-1].type == "end" and history[-1].data["state"] == "interrupted"


def shown_message(pb, run_id: int) -> str:
    """What the page (Debian's Chromium) shows as the run's message; no page error allowed."""
    return in_own_thread(_shown_message, pb, run_id)


def _shown_message(pb, run_id: int) -> str:
    from playwright.sync_api import expect, sync_playwright

    from tests.page.conftest import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
            page.goto(pb.login_url)
            page.locator("#job-list .job").first.wait_for()
            page.goto(f"{pb.url}/#/runs/{run_id}")
            message = page.locator("#run-message")
            expect(message).to_be_visible(timeout=30_000)
            text = message.text_content()
        finally:
            browser.close()
    assert errors == []
    return text


def test_a_full_disk_fails_the_run_clearly_and_the_server_recovers(pushbutton, write_jobs, tmp_path):
    with small_disk(tmp_path / "disk", "2m") as disk:
        pb = None
        try:
            jobs = write_jobs("""
                [job:fill]
                command = yes 'a line that will not fit on this small disk, repeated until it is full'
                [job:hello]
                command = echo hello
                """)
            pb = pushbutton(jobs, data_dir=disk / "data")
            filler = disk / "filler"
            filler.write_bytes(b"\0" * (512 * 1024))  # freed later: space that returns
            run_id = pb.start_run("fill")["id"]
            health = []
            deadline = time.monotonic() + 40
            while pb.run(run_id)["state"] not in ("failed", "succeeded", "cancelled", "interrupted"):
                assert time.monotonic() < deadline, "the run never ended on a full disk"
                health.append((pb.client.get("/healthz", timeout=5).status_code,
                               pb.client.get("/api/jobs", timeout=5).status_code))
                time.sleep(0.1)
            run = pb.run(run_id)
            assert run["state"] == "failed"
            assert "history could not be written" in run["message"] and "full" in run["message"]
            metrics = pb.client.get("/metrics").text  # for the operator's alert
            assert "pushbutton_history_write_failures_total 1.0" in metrics.splitlines()
            assert set(health) <= {(200, 200)}
            assert (pb.client.get("/healthz").status_code, pb.client.get("/api/jobs").status_code) == (200, 200)
            events = pb.events(run_id)  # the stream ends; it does not wait forever
            assert events[-1].type == "end" and events[-1].data["state"] == "failed"
            # none skipped: what SQLite refused is read from memory, between what it took
            assert [e.id for e in events] == list(range(1, len(events) + 1))
            while_full = pb.client.post("/api/jobs/hello/runs", json={"params": {}})  # may fit, or not: never a 500
            assert while_full.status_code in (202, 503), while_full.text
            if while_full.status_code == 503:
                assert "history could not be written" in while_full.json()["error"]
            else:
                pb.wait(while_full.json()["run"]["id"], timeout=20)

            filler.unlink()
            hello = pb.start_run("hello")["id"]
            assert pb.wait(hello, timeout=20)["state"] == "succeeded"
            assert pb.output(hello) == ["hello"]
            # Its end, refused while the disk was full, is tried again every FINAL_RETRY until it fits:
            # stored, not only in memory.
            stored = wait_for(lambda: (runs := {r["id"]: r for r in pb.client.get("/api/runs").json()["runs"]})
                              and runs[run_id]["state"] == "failed" and runs[run_id], timeout=5 * FINAL_RETRY)
            assert stored["message"] == run["message"]
            with sqlite3.connect(disk / "data" / "history.sqlite3") as db:
                assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert "history could not be written" in shown_message(pb, run_id)
        finally:
            if pb is not None:
                pb.stop()


def test_a_database_locked_by_another_process_stalls_no_request_and_loses_no_line(pushbutton, write_jobs):
    jobs = write_jobs("""
        [job:tick]
        shell = yes
        command = i=0; while [ $i -lt 700 ]; do i=$((i+1)); echo "tick $i"; sleep 0.01; done
        """)
    pb = pushbutton(jobs)
    run_id = pb.start_run("tick")["id"]
    seen: list = []
    reader = threading.Thread(target=read_stream, args=(pb, run_id, seen))
    reader.start()
    wait_for(lambda: len(lines_of(seen)) >= 20)
    other = sqlite3.connect(pb.data_dir / "history.sqlite3", isolation_level=None, timeout=10)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock for 5 s
    took, streams = [], []
    try:
        locked_until = time.monotonic() + 5
        while time.monotonic() < locked_until:
            began = time.monotonic()
            assert pb.client.get("/healthz", timeout=5).status_code == 200
            assert pb.client.get("/api/jobs", timeout=5).status_code == 200
            took.append(time.monotonic() - began)
            if len(streams) < 3:  # a new reader is served what is stored, at once
                streams.append(pb.events(run_id, limit=3))
    finally:
        other.execute("ROLLBACK")
        other.close()
    reader.join(30)
    took.sort()
    assert took[int(len(took) * 0.99)] < 0.25, f"p99 {took[int(len(took) * 0.99)]:.3f} s"
    assert len(took) > 50
    assert all(len(s) == 3 for s in streams)
    assert pb.wait(run_id)["state"] == "succeeded"
    assert lines_of(seen) == [f"tick {i}" for i in range(1, 701)]
    assert [e.id for e in seen] == list(range(1, len(seen) + 1))


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def stalled_reader(pb, run_id: int) -> socket.socket:
    """A client that opens the run's stream, reads its first bytes, then nothing more."""
    sock = socket.create_connection(("127.0.0.1", int(pb.url.rsplit(":", 1)[1])))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET /api/runs/{run_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 f"Authorization: Bearer {TOKEN}\r\n\r\n".encode())
    assert sock.recv(100).startswith(b"HTTP/1.1 200")
    return sock


def test_a_client_that_stops_reading_a_flood_holds_no_memory_and_slows_no_one(pushbutton, write_jobs):
    jobs = write_jobs("""
        [job:big]
        shell = yes
        command = yes "$(head -c 1000 /dev/zero | tr '\\0' x)" | head -n 300000 | nl -ba -w1 -s' '
        """)  # 300,000 numbered lines of 1 kB: 300 MB
    pb = pushbutton(jobs)
    idle = rss(pb.proc.pid)
    run_id = pb.start_run("big")["id"]
    stalled = [stalled_reader(pb, run_id) for _ in range(3)]
    peak = 0
    seen: list = []
    reader = threading.Thread(target=read_stream, args=(pb, run_id, seen))
    reader.start()
    try:
        while reader.is_alive():
            peak = max(peak, rss(pb.proc.pid))
            assert pb.client.get("/healthz", timeout=5).status_code == 200
            time.sleep(0.05)
        reader.join()
    finally:
        for sock in stalled:
            sock.close()
    assert pb.wait(run_id)["state"] == "succeeded"
    lines = lines_of(seen)
    assert len(lines) == 300_000
    assert all(line.split(" ", 1)[0] == str(i) for i, line in enumerate(lines, 1))
    assert peak - idle < 100 * MiB, f"RSS grew by {(peak - idle) / MiB:.0f} MiB"
