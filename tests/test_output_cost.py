"""What one line of output costs the server: per-line objects, writer wake-ups, pipe reads, timers."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import tracemalloc

import gevent
import gevent.os
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from server import store_writer
from server.datadir import DB_NAME
from server.events import EventLog
from server.executors import local
from server.output import OutputStream
from server.store import Store
from server.store_writer import WRITER_QUIET


class Sink:
    """An emit that takes pre-encoded JSON, as EventLog.emit does; keeps each event's JSON."""

    takes_fragments = True

    def __init__(self):
        self.events: list[bytes] = []

    def __call__(self, kind: str, data: dict) -> None:
        self.events.append(orjson.dumps(data))


def _lines_of(events: list[bytes]) -> list[str]:
    return [line for raw in events for line in orjson.loads(raw)["lines"]]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "é", "😀", "\n", "\r", "\\", "n", '"', "\t", "\x00", "\x1f",
                                 "\u2028", "/", " ", "::progress 5"])).map("".join))
def test_lines_sent_as_json_made_from_the_text_are_the_lines_byte_for_byte(text):
    """Whatever the text (escapes, backslashes before an `n`, quotes, control characters), the
    event's JSON is exactly what encoding the list of its lines gives."""
    sink, plain = Sink(), []
    fast = OutputStream("stdout", sink, extra={"host": "h"})
    slow = OutputStream("stdout", lambda kind, data: plain.append(orjson.dumps(data)), extra={"host": "h"})
    for stream in (fast, slow):
        stream.feed(text.encode())
        stream.close()
    assert b"".join(sink.events) == b"".join(plain)


def test_a_flood_of_a_million_lines_holds_no_object_per_line():
    """Split into a million `str` objects, a flood's lines took ~60 MB and a third of its CPU;
    kept as text and encoded at once, they take little more than their bytes."""
    data = "".join(f"{i}\n" for i in range(1_000_000)).encode()  # 6.9 MB
    sink = Sink()
    stream = OutputStream("stdout", sink)
    tracemalloc.start()
    try:
        for start in range(0, len(data), 65536):
            stream.feed(data[start:start + 65536])
        stream.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert _lines_of(sink.events) == [str(i) for i in range(1_000_000)]
    assert peak < 14 * 2**20, peak  # the 8.9 MB of events kept, and a few batches of ~300 KB in the making


def test_events_emitted_in_one_hub_iteration_reach_the_writer_at_once(tmp_path):
    """Woken at each event, the writer thread fought the hub for the GIL while the hub was still
    at work; now what the hub emits in one loop iteration is one hand-over and one transaction,
    in order with the writes asked for directly around it."""
    store = Store(tmp_path / "data")
    commits: list[float] = []
    store.on_commit = commits.append
    switch = sys.getswitchinterval()
    try:
        run_id = store.call(Store.insert_run, {"job": "j", "state": "running", "params": {}, "created": 0,
                                              "owner": store.owner})
        log = EventLog(store, run_id)
        commits.clear()
        sys.setswitchinterval(1e-6)  # a writer woken by a put takes the GIL at once
        for i in range(300):
            log.emit("output", {"stream": "stdout", "lines": [str(i)]})
        sys.setswitchinterval(switch)
        while log.committed < log.seq:
            gevent.sleep(0.005)
        assert len(commits) == 1
        log.emit("output", {"stream": "stdout", "lines": ["last"]})  # then a direct write: stored after it
        store.submit(Store.update_run, run_id, {"message": "after"})
        order = store.call(lambda conn: conn.execute(
            "SELECT (SELECT MAX(seq) FROM events WHERE run_id = ?), message FROM runs WHERE id = ?",
            (run_id, run_id)).fetchone())
        assert order == (301, "after")
    finally:
        sys.setswitchinterval(switch)
        store.close()
    with sqlite3.connect(tmp_path / "data" / DB_NAME) as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 301


def test_close_stores_what_the_hub_has_not_handed_over_yet(tmp_path):
    store = Store(tmp_path / "data")
    run_id = store.call(Store.insert_run, {"job": "j", "state": "running", "params": {}, "created": 0,
                                          "owner": store.owner})
    log = EventLog(store, run_id)
    log.emit("output", {"stream": "stdout", "lines": ["kept"]})
    store.close()  # before the hub's loop ran again
    with sqlite3.connect(tmp_path / "data" / DB_NAME) as conn:
        assert conn.execute("SELECT seq FROM events").fetchall() == [(1,)]


def test_a_slow_stream_costs_one_read_per_line(monkeypatch):
    """gevent's nb_read tried a read that failed (EAGAIN) before each wait and made a new watcher
    each call; the pump reads only a readable pipe."""
    reads = []
    real = os.read
    proc = subprocess.Popen([sys.executable, "-u", "-c",
                             "import os, time\nfor i in range(20): os.write(1, b'%d\\n' % i); time.sleep(0.01)"],
                            stdout=subprocess.PIPE)
    pipe = proc.stdout.fileno()
    counted = lambda fd, n: (fd == pipe and reads.append(n)) or real(fd, n)  # noqa: E731
    monkeypatch.setattr(local.os, "read", counted)
    monkeypatch.setattr(gevent.os, "_read", counted)  # what gevent's nb_read calls
    sink = Sink()
    local._pump(proc.stdout, OutputStream("stdout", sink))
    proc.wait()
    assert _lines_of(sink.events) == [str(i) for i in range(20)]
    assert 20 <= len(reads) <= 20 + 2  # one per line, the end of file, and at most one spurious wake


def test_a_waiting_reader_is_woken_by_a_commit_or_by_the_keepalive_tick(tmp_path):
    """One timer per log wakes its waiting readers for keepalives (a Timeout per wait, per event
    per client, was a tenth of a slow stream's cost), and it is gone once the log has ended."""
    store = Store(tmp_path / "data")
    try:
        log = EventLog(store, 1)
        timeouts = []
        monkey = gevent.Timeout._start_new_or_dummy
        gevent.Timeout._start_new_or_dummy = classmethod(lambda cls, t, *a: timeouts.append(t) or monkey(t, *a))
        try:
            assert log.wait(0, 0.05) is False  # nothing came: the tick ends the wait
            got = gevent.spawn(log.wait, 0, 10.0)
            gevent.sleep(0)
            log.emit("output", {"stream": "stdout", "lines": ["x"]})
            assert got.get() is True
        finally:
            gevent.Timeout._start_new_or_dummy = monkey
        assert [t for t in timeouts if t is not None] == []
        log.emit("end", {})
        while not log.finished:
            gevent.sleep(0.005)
        assert log._tick is None
    finally:
        store.close()


def _store_with_run(tmp_path):
    store = Store(tmp_path / "data")
    run_id = store.call(Store.insert_run, {"job": "j", "state": "running", "params": {}, "created": 0,
                                          "owner": store.owner})
    return store, run_id


def _handed_to_writer(store: Store) -> list:
    """What `store` hands its writer thread from now on (a lone event the hub stores is not)."""
    puts: list = []
    real_put = store._put
    store._put = lambda item: puts.append(item) or real_put(item)
    return puts


def _committed(log: EventLog) -> None:
    while log.committed < log.seq:
        gevent.sleep(0.002)


def _stored_line(log: EventLog, line: str) -> None:
    """One line of output, emitted and waited for until stored (by the hub or by the writer)."""
    log.emit("output", {"stream": "stdout", "lines": [line]})
    _committed(log)


def test_a_slow_streams_line_is_stored_by_the_hub_without_waking_the_writer(tmp_path):
    """Handing each line of a slow stream to the writer thread and back was two thread switches
    per line, a third of its CPU; with the writer idle, the hub stores a small event itself."""
    store, run_id = _store_with_run(tmp_path)
    puts = _handed_to_writer(store)
    try:
        log = EventLog(store, run_id)
        gevent.sleep(WRITER_QUIET)  # the writer has stored the run, and nothing since
        for i in range(50):
            _stored_line(log, str(i))
        assert puts == []
        log.emit("output", {"stream": "stdout", "lines": ["x" * 100_000]})  # large: the writer's
        _committed(log)
        assert len(puts) == 1
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "data" / DB_NAME) as conn:
        assert [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")] == list(range(1, 52))


def test_a_busy_loop_iterations_events_are_stored_by_the_hub_in_one_transaction(tmp_path):
    """With many streams (a team's runs), handing each loop iteration's events to the writer and
    back cost up to an iteration each way, and the GIL fought over every statement: the hub
    stores them itself, together (INSERTs of many rows: 60 in runs of 32, 16, 8 and 4), and its
    readers see them in the same pass of the loop."""
    store, run_id = _store_with_run(tmp_path)
    puts = _handed_to_writer(store)
    statements: list[str] = []
    try:
        logs = [EventLog(store, run_id) for _ in range(3)]
        for n, log in enumerate(logs):
            log.seq = n * 1000  # three runs' worth of numbers in one table
        gevent.sleep(WRITER_QUIET)
        store._hub_conn = store._side_connection()
        store._hub_conn.set_trace_callback(statements.append)
        for log in logs:
            for i in range(20):
                log.emit("output", {"stream": "stdout", "lines": [str(i)]})
        gevent.sleep(0)  # one pass of the loop: the hand-over, and nothing from another thread
        assert [log.committed for log in logs] == [20, 1020, 2020]
        assert puts == []
        assert [s for s in statements if not s.startswith("INSERT")] == ["BEGIN", "COMMIT"]
        assert [s.count("), (") + 1 for s in statements if s.startswith("INSERT")] == [32, 16, 8, 4]
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "data" / DB_NAME) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 60


def test_a_runs_state_changes_go_with_its_events_in_order_stored_by_the_idle_hub(tmp_path):
    """A state change woke the writer thread for itself (three per short run, each with its GIL
    hand-overs); it now goes with the events of its loop iteration, in the order asked."""
    store, run_id = _store_with_run(tmp_path)
    puts = _handed_to_writer(store)
    statements: list[str] = []
    try:
        log = EventLog(store, run_id)
        gevent.sleep(WRITER_QUIET)
        store._hub_conn = store._side_connection()
        store._hub_conn.set_trace_callback(statements.append)
        loop = gevent.get_hub().loop
        log.emit("output", {"stream": "stdout", "lines": ["last"]})
        store.submit_soon(loop, Store.update_run, run_id, {"state": "succeeded", "exit_code": 0})
        log.emit("end", {"state": "succeeded"})
        gevent.sleep(0)
        assert log.committed == 2 and puts == []
        assert [s.split(" ")[0] for s in statements] == ["BEGIN", "INSERT", "UPDATE", "INSERT", "COMMIT"]
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "data" / DB_NAME) as conn:
        assert conn.execute("SELECT state, exit_code FROM runs WHERE id = ?", (run_id,)).fetchone() == ("succeeded", 0)


def test_a_write_that_fails_on_the_hub_for_its_own_fault_is_reported_and_the_rest_stored(tmp_path):
    """An item that raises (here: a value JSON cannot encode) must not take its loop iteration's
    other writes with it, nor leave them waiting forever: the writer runs them and tells each."""
    store, run_id = _store_with_run(tmp_path)
    got: list = []
    try:
        log = EventLog(store, run_id)
        gevent.sleep(WRITER_QUIET)
        log.emit("output", {"stream": "stdout", "lines": ["before"]})
        store.submit_soon(gevent.get_hub().loop, Store.update_run, run_id, {"hosts": object()},
                          callback=lambda result, error: got.append(error))
        log.emit("output", {"stream": "stdout", "lines": ["after"]})
        with gevent.Timeout(10):  # lost with their iteration, they would never be stored
            _committed(log)
            while not got:
                gevent.sleep(0.002)
        assert isinstance(got[0], TypeError) and log.committed == 2 and log.failure is None
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "data" / DB_NAME) as conn:
        assert [r[0] for r in conn.execute("SELECT data FROM events ORDER BY seq")] == [
            '{"stream":"stdout","lines":["before"]}', '{"stream":"stdout","lines":["after"]}']


def test_after_a_slow_write_the_hub_leaves_writes_to_the_writer_for_a_while(tmp_path, monkeypatch):
    """The hub must not wait on the disk: once its own write was slow, the writer takes the next."""
    monkeypatch.setattr(store_writer, "INLINE_SLOW", 0.0)  # every write is "slow"
    store, run_id = _store_with_run(tmp_path)
    puts = _handed_to_writer(store)
    try:
        log = EventLog(store, run_id)
        gevent.sleep(WRITER_QUIET)
        _stored_line(log, "by the hub")
        assert puts == []
        _stored_line(log, "by the writer")
        assert len(puts) == 1
    finally:
        store.close()


def test_once_the_writer_has_stored_the_hubs_events_for_a_moment_the_hub_stores_the_next(tmp_path, monkeypatch):
    """Events the hub hands over only for the moment (here: during a rest after a slow write) do
    not make the writer "busy": under a steady stream the hub took them back at once, rather than
    the writer's every batch keeping it "just done" and every event on the writer from then on."""
    monkeypatch.setattr(store_writer, "INLINE_SLOW", 0.0)  # the first write is "slow"...
    monkeypatch.setattr(store_writer, "INLINE_REST", 0.1)
    store, run_id = _store_with_run(tmp_path)
    puts = _handed_to_writer(store)
    try:
        log = EventLog(store, run_id)
        gevent.sleep(WRITER_QUIET)
        _stored_line(log, "slow")
        monkeypatch.setattr(store_writer, "INLINE_SLOW", 10.0)  # ...and none after it
        handed = []
        for i in range(100):  # a line every 5 ms, 0.5 s: well past the rest
            _stored_line(log, str(i))
            handed.append(len(puts))
            gevent.sleep(0.005)
        assert handed[0] > 0  # the rest: the writer's
        assert handed[-1] == handed[50]  # then the hub's again, though a line came every 5 ms
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "data" / DB_NAME) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 101


def test_while_the_writer_has_just_written_a_lone_event_is_still_the_writers(tmp_path):
    """Two connections taking turns (a fan-out's events, some alone, some not) would each reload
    their pages at every write: the hub stores events itself only once the writer has rested."""
    store, run_id = _store_with_run(tmp_path)
    puts = _handed_to_writer(store)
    try:
        log = EventLog(store, run_id)
        store.call(Store.update_run, run_id, {"message": "just now"})
        puts.clear()
        _stored_line(log, "soon after")
        assert len(puts) == 1
    finally:
        store.close()


def test_events_wait_behind_the_writers_work_and_keep_their_order(tmp_path):
    store, run_id = _store_with_run(tmp_path)
    gevent.sleep(WRITER_QUIET)
    go = threading.Event()
    try:
        log = EventLog(store, run_id)
        _stored_line(log, "1")
        store.submit(lambda conn: go.wait(10))  # the writer is busy
        store.submit(Store.update_run, run_id, {"message": "between"})
        for i in range(2, 5):
            gevent.sleep(0.01)
            log.emit("output", {"stream": "stdout", "lines": [str(i)]})
        gevent.sleep(0.05)
        assert log.committed == 1  # not stored by the hub ahead of what the writer has in hand
        go.set()
        _committed(log)
        assert store.call(lambda conn: conn.execute("SELECT message FROM runs").fetchone()[0]) == "between"
        stored = store.call(lambda conn: conn.execute(
            "SELECT seq, data FROM events WHERE run_id = ? AND type = 'output' ORDER BY seq", (run_id,)).fetchall())
        assert [seq for seq, _ in stored] == [1, 2, 3, 4]
        assert [json.loads(data)["lines"] for _, data in stored] == [["1"], ["2"], ["3"], ["4"]]
    finally:
        go.set()
        store.close()


def test_a_database_locked_by_another_process_never_blocks_the_hub(tmp_path):
    """The hub's own writes never wait for a lock: the event goes to the writer, which waits."""
    store, run_id = _store_with_run(tmp_path)
    other = sqlite3.connect(tmp_path / "data" / DB_NAME, isolation_level=None)
    try:
        log = EventLog(store, run_id)
        gevent.sleep(WRITER_QUIET)
        other.execute("BEGIN IMMEDIATE")
        began = time.monotonic()
        log.emit("output", {"stream": "stdout", "lines": ["while locked"]})
        emitted = time.monotonic() - began
        gevent.sleep(0.3)  # the writer tries meanwhile, and waits
        # waiting for the lock, the hub would have waited until it is released (after this line) or
        # for a busy timeout's seconds (the store's connection: 30 s); on a busy machine an emit that
        # waits for nothing can still wait some 100 ms for a CPU
        assert emitted < 1
        assert log.committed == 0
        other.execute("COMMIT")
        _committed(log)
    finally:
        other.close()
        store.close()


def _wal_after(tmp_path, events: int, pause: float) -> int:
    store, run_id = _store_with_run(tmp_path)
    try:
        log = EventLog(store, run_id)
        gevent.sleep(WRITER_QUIET)
        for i in range(events):  # each of its own commit: one WAL frame or more
            log.emit("output", {"stream": "stdout", "lines": [str(i)]})
            gevent.sleep(pause)
        _committed(log)
        return (tmp_path / "data" / f"{DB_NAME}-wal").stat().st_size
    finally:
        store.close()


def test_the_wal_is_checkpointed_by_a_thread_of_its_own_and_starts_over(tmp_path, monkeypatch):
    """Neither the writer nor the hub checkpoints (copying the WAL into the database was a third
    of the writer's time in a flood): the checkpointer does, and the WAL starts over at the first
    write after a checkpoint that caught up. Each round waits for the checkpoint it made due, so
    the figure does not hang on when a busy machine gives the checkpointer's thread a CPU."""
    monkeypatch.setattr(store_writer, "CHECKPOINT_BYTES", 64 * 1024)  # every 16 events or so
    store, run_id = _store_with_run(tmp_path)
    try:
        log = EventLog(store, run_id)
        gevent.sleep(WRITER_QUIET)
        for _ in range(60):  # ~1,000 events: 8 MB of WAL if nothing checkpointed it
            done = store.checkpoints
            while store.checkpoints == done and not store._checkpoint_due.is_set():
                _stored_line(log, "x" * 100)
            deadline = time.monotonic() + 10
            while store.checkpoints == done:
                assert time.monotonic() < deadline, "no checkpoint came"
                gevent.sleep(0.002)
        assert (tmp_path / "data" / f"{DB_NAME}-wal").stat().st_size < 2**20
    finally:
        store.close()


def test_a_wal_that_never_got_a_pause_is_restarted_once_long(tmp_path, monkeypatch):
    monkeypatch.setattr(store_writer, "CHECKPOINT_BYTES", 64 * 1024)
    monkeypatch.setattr(store_writer, "WAL_LONG", 512 * 1024)
    # 3,000 events unchecked: ~15 MB. Restarted: 0.5 MB on a quiet machine, 2.4 MB seen in CI
    # (the checkpointer's thread waited for the CPU while the hub wrote on)
    assert _wal_after(tmp_path, 3000, 0) < 6 * 2**20
