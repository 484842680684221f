"""The history's writer: a run of small events is one statement, and one bad item still fails alone.

Each test gives the writer one batch, as a hub's hand-over does, on a real SQLite database, and
counts the statements SQLite ran (its trace callback)."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from server.store import Store


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "data")
    yield store
    store.close()


def events(n: int, first: int = 1) -> list[tuple[int, str, bytes]]:
    return [(seq, "output", b'{"stream":"stdout","lines":["%d"]}' % seq) for seq in range(first, first + n)]


def write(store: Store, batch: list[tuple]) -> tuple[list, list[str]]:
    """Run `batch` [(fn, args)] as one batch of the writer; (each item's (result, error), the
    statements SQLite ran)."""
    heard: list = [None] * len(batch)
    statements: list[str] = []
    done = threading.Event()

    def callback(i):
        def told(result, error):
            heard[i] = (result, error)
            if all(h is not None for h in heard):
                done.set()
        return told

    store._conn.set_trace_callback(lambda sql: statements.append(_kind(sql)))
    try:
        with store._soon_lock:  # one hand-over: the writer takes it as one batch
            store._put([(fn, args, callback(i)) for i, (fn, args) in enumerate(batch)])
        assert done.wait(30)
    finally:
        store._conn.set_trace_callback(None)
    return heard, statements


def _kind(sql: str) -> str:
    """A statement as its first word, and an INSERT's number of rows: "INSERT 8"."""
    word = sql.split(" ", 1)[0]
    return f"INSERT {sql.count('), (') + 1}" if word == "INSERT" else word


def stored(store: Store, run_id: int) -> list[int]:
    return [seq for seq, _, _ in store.events(run_id, 0, 10_000)]


def inserts(statements: list[str]) -> list[int]:
    """The rows of each INSERT SQLite ran."""
    return [int(s.split()[1]) for s in statements if s.startswith("INSERT")]


def test_a_run_of_small_events_is_one_statement_and_each_caller_hears_its_number(store):
    heard, statements = write(store, [(Store.append_event, (1, event)) for event in events(64)])
    assert heard == [(seq, None) for seq in range(1, 65)]
    assert stored(store, 1) == list(range(1, 65))
    assert statements == ["INSERT 64"], statements  # atomic alone: no BEGIN, no COMMIT


def test_events_are_written_in_runs_of_a_power_of_two_within_one_transaction(store):
    """Few distinct statements stay cached, each holding a copy of its last values (SQLite's)."""
    run_id = store.call(Store.insert_run, {"job": "j", "state": "running", "params": {}, "created": 0.0,
                                           "owner": store.owner})
    batch = [(Store.append_event, (run_id, event)) for event in events(10)]
    batch.append((Store.update_run, (run_id, {"state": "succeeded"})))
    batch += [(Store.append_event, (run_id, event)) for event in events(300, first=11)]
    heard, statements = write(store, batch)
    assert all(error is None for _, error in heard)
    assert stored(store, run_id) == list(range(1, 311))
    assert store.run(run_id)["state"] == "succeeded"
    assert inserts(statements) == [8, 2, 128, 128, 32, 8, 4], statements
    assert statements[0] == "BEGIN" and statements[-1] == "COMMIT" and "UPDATE" in statements


def test_one_bad_event_among_many_fails_alone_and_the_others_are_stored(store):
    write(store, [(Store.append_event, (1, events(1, first=7)[0]))])  # seq 7 is taken already
    heard, _ = write(store, [(Store.append_event, (1, event)) for event in events(20)])
    failed = [i for i, (_, error) in enumerate(heard) if error is not None]
    assert failed == [6] and isinstance(heard[6][1], sqlite3.IntegrityError)  # the seventh caller is told
    assert stored(store, 1) == list(range(1, 21))  # the 19 others, and the first seq 7


def test_large_events_are_a_statement_each(store):
    """A flood's events (up to 256 KiB): one statement would hold them all at once."""
    big = [(seq, "output", b'["%s"]' % (b"x" * 40_000)) for seq in range(1, 5)]
    heard, statements = write(store, [(Store.append_event, (1, event)) for event in big])
    assert heard == [(seq, None) for seq in range(1, 5)]
    assert inserts(statements) == [1, 1, 1, 1], statements
