"""`store_call`: a greenlet waits for the writer thread's result while the hub keeps serving."""

from __future__ import annotations

import sqlite3

import gevent
import pytest

from server.events import store_call
from server.store import Store


def test_a_write_awaited_on_a_hub_with_nothing_else_to_do_returns_its_result(tmp_path):
    store = Store(tmp_path / "data")
    try:
        # A greenlet with no other watcher on the loop: the wait itself must keep the hub alive.
        got = gevent.spawn(store_call, store, lambda conn, a, b: conn.execute("SELECT ? + ?", (a, b)).fetchone()[0],
                           40, 2).get(timeout=10)
        assert got == 42
    finally:
        store.close()


def test_a_failed_write_raises_in_the_greenlet_that_waits_and_the_hub_keeps_serving(tmp_path):
    store = Store(tmp_path / "data")
    ticks = []
    ticker = gevent.spawn(lambda: [(ticks.append(1), gevent.sleep(0.001)) for _ in range(1000)])
    try:
        def slow_then_fail(conn):
            conn.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) "
                         "SELECT count(*) FROM n").fetchone()
            conn.execute("SELECT * FROM no_such_table")

        waiting = gevent.spawn(store_call, store, slow_then_fail)
        with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
            waiting.get(timeout=10)
        assert len(ticks) >= 5  # the hub ran other greenlets while this one waited (blocked: 1)
    finally:
        ticker.kill()
        store.close()
