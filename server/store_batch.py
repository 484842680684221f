"""A batch of writes as SQLite statements, for the history's writer (store_writer.py).

`each_alone` runs the writer's batch in one transaction, in which one bad item fails alone (a
savepoint each) and its caller is told. `all_or_nothing` runs the hub's own small batch, undone
whole at any error. Both store consecutive writes of a `many` form ({fn: fn_many}, where
fn_many(conn, [args, ...]) -> [result, ...]) in one statement: a run of small events costs one
hand-back of the GIL from SQLite instead of three an event with its savepoint (30-40% less of the
writer's CPU for small events). Such runs are cut at MANY_ROWS and MANY_BYTES and into runs of
1, 2, 4... rows: SQLite keeps a copy of a cached statement's last values until its next use, so
few statements stay cached, each holding little (unbounded, a flood's peak grew by 100 MiB). 128
rows of 4 values stay below the 999 parameters older SQLite libraries allow.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable

MANY_ROWS = 128
MANY_BYTES = 64 * 1024
Item = tuple  # (fn, args, callback): fn(conn, *args) is the write


def groups(batch: list[Item], many: dict, size_of: Callable) -> list[tuple]:
    """`batch` as its statements: (fn, [items]) for consecutive items of one `many` form, within
    MANY_ROWS and MANY_BYTES (by `size_of(fn, args)`) and in runs of a power of two; (None,
    [item]) for any other."""
    out: list[tuple] = []
    run: list = []
    size = 0
    for item in [*batch, (None, (), None)]:  # the last, a sentinel, ends the last run
        fn, args, _ = item
        item_size = size_of(fn, args) if fn in many else 0
        if run and (fn is not run[0][0] or len(run) == MANY_ROWS or size + item_size > MANY_BYTES):
            while run:
                take = 1 << (len(run).bit_length() - 1)  # 1, 2, 4...: few statements to keep cached
                out.append((run[0][0], run[:take]))
                run = run[take:]
            size = 0
        if fn in many:
            run.append(item)
            size += item_size
        elif fn is not None:
            out.append((None, [item]))
    return out


def _results(conn: sqlite3.Connection, many: dict, fn, items: list[Item]) -> list:
    """What one group (see `groups`) returns, item by item; raises what SQLite or an item raises."""
    if fn is not None:
        return many[fn](conn, [args for _, args, _ in items])
    return [write(conn, *args) for write, args, _ in items]


def all_or_nothing(conn: sqlite3.Connection, grouped: list[tuple], many: dict) -> list:
    """`grouped` (see `groups`) in one transaction; any error undoes them all and is raised."""
    if len(grouped) == 1 and (grouped[0][0] is not None or len(grouped[0][1]) == 1):  # one statement: atomic alone
        return _results(conn, many, *grouped[0])
    conn.execute("BEGIN")
    try:
        results = [result for group in grouped for result in _results(conn, many, *group)]
        conn.execute("COMMIT")
    except Exception:
        rollback(conn)
        raise
    return results


def each_alone(conn: sqlite3.Connection, batch: list[Item], one_statement: tuple, many: dict,
               size_of: Callable) -> list[tuple]:
    """`batch` in one transaction, [(callback, result, error)] for each item: an item that fails
    is undone alone and its error returned. SQLite's refusal of the whole (locked, a full disk at
    COMMIT) is raised."""
    if len(batch) == 1 and batch[0][0] in one_statement:  # atomic alone: no BEGIN and COMMIT
        fn, args, callback = batch[0]
        try:
            return [(callback, fn(conn, *args), None)]
        except Exception as exc:
            return [(callback, None, exc)]
    if len(batch) == 1:  # alone, the transaction is the item's savepoint: 2 statements fewer per event
        fn, args, callback = batch[0]
        conn.execute("BEGIN")
        try:
            result = fn(conn, *args)
        except Exception as exc:  # as a failed item of a batch: undone, its caller told
            rollback(conn)
            return [(callback, None, exc)]
        conn.execute("COMMIT")
        return [(callback, result, None)]
    grouped = groups(batch, many, size_of)
    if len(grouped) == 1 and grouped[0][0] is not None:  # one statement: atomic alone
        stored = _stored(conn, many, *grouped[0])
        if stored is not None:
            return stored
    results = []
    conn.execute("BEGIN")
    for fn, items in grouped:
        if fn is not None:
            conn.execute("SAVEPOINT item")
            stored = _stored(conn, many, fn, items)
            if stored is not None:
                results += stored
                conn.execute("RELEASE item")
                continue
            conn.execute("ROLLBACK TO item")  # none of them stayed: one by one, below
            conn.execute("RELEASE item")
        for write, args, callback in items:
            conn.execute("SAVEPOINT item")
            try:
                results.append((callback, write(conn, *args), None))
                conn.execute("RELEASE item")
            except Exception as exc:  # one bad item must not lose the batch
                conn.execute("ROLLBACK TO item")
                conn.execute("RELEASE item")
                results.append((callback, None, exc))
    conn.execute("COMMIT")
    return results


def _stored(conn: sqlite3.Connection, many: dict, fn, items: list[Item]) -> list[tuple] | None:
    """A run of one `many` write in its one statement; None if it failed, so that its items are
    tried one by one and a bad one is reported to its own caller. A database locked past the busy
    timeout is raised instead: each item would wait it out again."""
    try:
        out = _results(conn, many, fn, items)
    except sqlite3.Error as exc:
        if not may_fit_alone(exc):
            raise
        return None
    except Exception:
        return None
    return [(callback, result, None) for (_, _, callback), result in zip(items, out, strict=True)]


def rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
            conn.execute("ROLLBACK")


def may_fit_alone(error: sqlite3.Error) -> bool:
    """Whether items of a failed batch are worth trying one by one: not when the database is
    locked (each try would wait out the busy timeout again), yes when, say, the disk is full."""
    return getattr(error, "sqlite_errorcode", None) not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
