"""A run whose events SQLite refuses (a full disk): memory keeps what the store lacks.

The refusal is SQLite's own, from a trigger, so which events fail is known exactly (a full disk,
tests/test_faults.py, decides that by itself and refuses some events but not others).
"""

from __future__ import annotations

import sqlite3

import gevent
import pytest

from server.events import BACKLOG_EVENTS, NOT_KEPT, RECENT_BYTES, UNSTORED_BYTES, UNSTORED_EVENTS, EventLog
from server.store import Store

REFUSED = range(10, 301)  # events 10 to 300 fail; those before and after are stored


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "data")
    with sqlite3.connect(tmp_path / "data" / "history.sqlite3") as db:
        db.execute(f"""CREATE TRIGGER refuse BEFORE INSERT ON events
                       WHEN NEW.seq BETWEEN {REFUSED.start} AND {REFUSED.stop - 1}
                       BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END""")
    yield store
    store.close()


def emitted(log: EventLog, count: int, size: int) -> None:
    for i in range(count):
        log.emit("output", {"stream": "stdout", "lines": [f"{i + 1:06d}" + "x" * size]})
        log.wait_writable()  # as a run's output does
    while log.committed < log.seq:
        gevent.sleep(0.005)
    log.store.call(lambda conn: None)  # every write asked for is done (committed only says answered)


def read_all(log: EventLog) -> list[int]:
    seqs, after = [], 0
    while rows := log.read(after):
        seqs += [row[0] for row in rows]
        after = rows[-1][0]
    return seqs


def test_events_the_store_refused_are_read_from_memory_in_order_with_none_skipped(store):
    """Before, memory let go of refused events as if stored; a reader then jumped from the last
    stored event before them to the first stored after them, and one that found none after them
    waited forever for an `end` (CI, 2026-12-03)."""
    failures = []
    log = EventLog(store, 1)
    log.on_failure = lambda: failures.append(log.failure)
    emitted(log, 400, 20_000)  # 8 MB: more than memory keeps of stored events
    assert failures == ["history could not be written: database or disk is full"]
    assert log.unstored_from == REFUSED.start
    with sqlite3.connect(store.path) as db:
        assert [seq for seq, in db.execute("SELECT seq FROM events ORDER BY seq")] == [*range(1, 10), *range(301, 401)]
    assert log.recent[0][0] <= REFUSED.start
    assert read_all(log) == list(range(1, 401))


@pytest.mark.parametrize("count, size", [(400, 100_000), (UNSTORED_EVENTS + 500, 10)], ids=["bytes", "events"])
def test_output_after_a_failure_is_held_up_to_a_bound_and_the_rest_is_said_to_be_dropped(store, count, size):
    log = EventLog(store, 1)
    emitted(log, count, size)  # 40 MB, or thousands of small events, after the failure at event 10
    if size > 1000:
        assert RECENT_BYTES < log.recent_bytes <= UNSTORED_BYTES + (BACKLOG_EVENTS + 1) * (size + 100)
    else:
        assert UNSTORED_EVENTS < len(log.recent) <= UNSTORED_EVENTS + BACKLOG_EVENTS + 1
    seqs = read_all(log)
    assert seqs == list(range(1, log.seq + 1)) and log.seq < count
    rows = log.read(log.seq - 1)
    assert NOT_KEPT.encode() in rows[-1][2]
    log.emit("end", {"state": "failed"})  # what is not output is still kept, and read
    while log.committed < log.seq:
        gevent.sleep(0.005)
    assert log.read(log.seq - 1)[-1][1] == "end"
