"""The history's one writer: a thread that runs every write in order, batched into transactions,
so that the gevent hub never waits on the disk or a lock (Store, store.py, is its user).

Writes come in two ways: `submit` from any thread, and `submit_soon` from the hub, handed over
once per loop iteration. One exception to "the hub never writes": a lone small event while the
writer has nothing in hand is stored by the hub itself (`_inline`), on a connection that never
waits for a lock and never checkpoints; whatever SQLite refuses there goes to the writer.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

Callback = Callable[[Any, BaseException | None], None]
INLINE_BYTES = 8 * 1024  # an event's JSON up to this size may be stored by the hub (`_inline`)
# Only once the writer has been idle this long: while it is busy (a fan-out's many events), the two
# connections taking turns would each find the other's writes and reload their pages every time.
WRITER_QUIET = 0.05  # seconds
CHECKPOINT_EVERY = 500  # events stored by the hub between two checkpoints by the writer
# The writer's queue item asking for what SQLite does at a commit once the WAL is long
# (`wal_autocheckpoint`): the hub's own commits skip it, as it can take a while.
CHECKPOINT = "checkpoint"


class StoreWriter:
    """The write half of Store: needs `self._conn` (the writer's connection) and
    `self._connect(timeout)` from the class using it."""

    one_statement: tuple = ()  # writes atomic on their own: alone, they skip BEGIN and COMMIT

    def _start_writer(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._soon: list = []  # submit_soon's items, not yet handed to the writer
        self._soon_lock = threading.Lock()  # `submit` from another thread hands them over too
        self._soon_due = False
        self._pending = 0  # items handed to the writer and not yet done (under _soon_lock)
        self._hub_conn: sqlite3.Connection | None = None  # `_inline`'s
        self._inlined = 0
        self._writer_done = 0.0  # when the writer last finished a batch (monotonic)
        self.on_commit: Callable[[float], None] | None = None  # seconds each batch took (metrics)
        self._writer = threading.Thread(target=self._write_loop, name="pushbutton-store", daemon=True)
        self._writer.start()

    def _stop_writer(self) -> None:
        """Flush every queued write, then stop the writer."""
        if self._writer.is_alive():
            with self._soon_lock:
                self._send_soon_locked()
                self._put(None)
            self._writer.join()
        if self._hub_conn is not None:
            self._hub_conn.close()


    def submit(self, fn: Callable[..., Any], *args: Any, callback: Callback | None = None) -> None:
        """Run `fn(conn, *args)` on the writer thread; `callback(result, error)` runs there too.
        After whatever `submit_soon` holds: writes keep the order they were asked in."""
        with self._soon_lock:
            self._send_soon_locked()
            self._put((fn, args, callback))

    def submit_soon(self, loop, fn: Callable[..., Any], *args: Any, callback: Callback | None = None) -> None:
        """`submit`, from the gevent hub's thread, handed to the writer once per iteration of
        `loop`, just before it polls: the writer then wakes while the hub sleeps. Woken at each
        put, it fought the hub for the GIL while the hub was still at work (several GIL handovers
        per event of a slow stream), and the events of one iteration now make one put.
        A lone small event while the writer is idle is stored by the hub itself (`_inline`)."""
        with self._soon_lock:
            self._soon.append((fn, args, callback))
        if not self._soon_due:
            self._soon_due = True
            loop.run_callback(self._hand_over)

    def _hand_over(self) -> None:
        self._soon_due = False
        with self._soon_lock:
            if len(self._soon) == 1 and self._inline(self._soon[0]):
                self._soon = []
                return
            self._send_soon_locked()

    def _send_soon_locked(self) -> None:
        """Any thread, under `_soon_lock`: an item the hub adds meanwhile waits for the next hand-over."""
        if self._soon:
            items, self._soon = self._soon, []
            self._put(items)

    def _put(self, item) -> None:
        self._pending += 1  # under _soon_lock
        self._queue.put(item)

    def _inline(self, item) -> bool:
        """Store one small event on the hub's thread, under `_soon_lock`, when the writer has
        nothing in hand (so order is kept). A slow stream's line otherwise costs two thread
        switches (to the writer and back), most of its CPU. Only what cannot wait: its own
        connection never waits for a lock (busy timeout 0) nor checkpoints (the writer does, every
        CHECKPOINT_EVERY of these); if SQLite refuses (locked, disk full), the writer takes the
        event the usual way, with its timeout and its error reporting. True if stored."""
        fn, args, callback = item
        if fn not in self.one_statement or self._pending or len(args[1][2]) > INLINE_BYTES:
            return False
        if self._hub_conn is None:
            self._hub_conn = self._connect(timeout=0)
            self._hub_conn.execute("PRAGMA wal_autocheckpoint=0")
        began = time.perf_counter()
        try:
            result = fn(self._hub_conn, *args)
        except sqlite3.Error:
            return False
        if self.on_commit is not None:
            self.on_commit(time.perf_counter() - began)
        self._inlined += 1
        if self._inlined % CHECKPOINT_EVERY == 0:
            self._put(CHECKPOINT)
        if callback is not None:
            callback(result, None)
        return True

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Blocking write, for start-up and for threads that may block."""
        done = threading.Event()
        box: list = []
        self.submit(fn, *args, callback=lambda r, e: (box.append((r, e)), done.set()))
        done.wait()
        result, error = box[0]
        if error is not None:
            raise error
        return result

    def _write_loop(self) -> None:
        stop = False
        while not stop:
            batch: list = []
            checkpoint = False
            item = self._queue.get()
            got = 1
            while True:  # an item, a list of them (`submit_soon`), or None: stop after these
                if item is None:
                    stop = True
                elif item is CHECKPOINT:
                    checkpoint = True
                elif type(item) is list:
                    batch += item
                else:
                    batch.append(item)
                if len(batch) >= 500:
                    break
                try:
                    item = self._queue.get_nowait()
                    got += 1
                except queue.Empty:
                    break
            if batch:
                self._run_batch(batch)
            if checkpoint:
                with contextlib.suppress(sqlite3.Error):  # busy or full: the next one catches up
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            with self._soon_lock:
                self._pending -= got
                self._writer_done = time.monotonic()
        self._conn.close()

    def _run_batch(self, batch: list) -> None:
        """One transaction. If it fails (a full disk, say), each item alone, so what fits is stored
        and each failed item's caller hears why; a database locked past the busy timeout fails them
        all at once. The writer never dies of a write: that would leave every run waiting forever."""
        began = time.perf_counter()
        try:
            results = self._transaction(batch)
        except sqlite3.Error as exc:
            self._rollback()
            results = [] if _may_fit_alone(exc) else [(item[2], None, exc) for item in batch]
            for item in batch if _may_fit_alone(exc) else ():
                try:
                    results.extend(self._transaction([item]))
                except sqlite3.Error as error:
                    self._rollback()
                    results.append((item[2], None, error))
        else:
            if self.on_commit is not None:
                self.on_commit(time.perf_counter() - began)
        for callback, result, error in results:
            if callback is not None:
                callback(result, error)

    def _transaction(self, batch: list) -> list:
        if len(batch) == 1 and batch[0][0] in self.one_statement:  # atomic alone: no BEGIN and COMMIT
            fn, args, callback = batch[0]
            try:
                return [(callback, fn(self._conn, *args), None)]
            except Exception as exc:
                return [(callback, None, exc)]
        if len(batch) == 1:  # alone, the transaction is the item's savepoint: 2 statements fewer per event
            fn, args, callback = batch[0]
            self._conn.execute("BEGIN")
            try:
                result = fn(self._conn, *args)
            except Exception as exc:  # as a failed item of a batch: undone, its caller told
                self._rollback()
                return [(callback, None, exc)]
            self._conn.execute("COMMIT")
            return [(callback, result, None)]
        results = []
        self._conn.execute("BEGIN")
        for fn, args, callback in batch:
            self._conn.execute("SAVEPOINT item")
            try:
                results.append((callback, fn(self._conn, *args), None))
                self._conn.execute("RELEASE item")
            except Exception as exc:  # one bad item must not lose the batch
                self._conn.execute("ROLLBACK TO item")
                self._conn.execute("RELEASE item")
                results.append((callback, None, exc))
        self._conn.execute("COMMIT")
        return results

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                self._conn.execute("ROLLBACK")


def _may_fit_alone(error: sqlite3.Error) -> bool:
    """Whether items of a failed batch are worth trying one by one: not when the database is
    locked (each try would wait out the busy timeout again), yes when, say, the disk is full."""
    return getattr(error, "sqlite_errorcode", None) not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
