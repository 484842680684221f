"""The history's one writer: a thread that runs every write in order, batched into transactions
(store_batch.py), so that the gevent hub never waits on the disk or a lock (Store, store.py, is
its user).

Writes come in two ways: `submit` from any thread, and `submit_soon` from the hub, handed over
once per loop iteration (`submit_here` picks the one that fits the caller). One exception to
"the hub never writes": the small single-statement writes of one loop iteration (events, a run's
state), while the writer has nothing in hand, are stored by the hub itself (`_inline`), on a
connection that never waits for a lock; whatever SQLite refuses there goes to the writer.

Neither checkpoints: copying the WAL into the database (a read and a write of every page, and an
fsync) took a third of the writer's time in a flood, on the path every line waits on before it is
shown. A checkpointer thread of its own does it (PASSIVE: it never blocks a writer or a reader)
each time about CHECKPOINT_BYTES have been written, as SQLite's automatic checkpoint would.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import gevent

from server import store_batch as B

Callback = Callable[[Any, BaseException | None], None]
INLINE_BYTES = 64 * 1024  # the events of one hand-over up to this size (JSON) may be stored by the hub
# An inline write that took longer than INLINE_SLOW (a slow disk, the kernel throttling dirty pages)
# leaves writes to the writer thread for INLINE_REST: the hub must not wait on the disk.
INLINE_SLOW = 0.01  # seconds
INLINE_REST = 1.0  # seconds
# Only once the writer has been idle this long from work of its own (not the hub's `_HubsLater`):
# while it is busy (a fan-out's many events), the two connections taking turns would each find the
# other's writes and reload their pages every time.
WRITER_QUIET = 0.05  # seconds
CHECKPOINT_BYTES = 4 * 2**20  # written between two checkpoints (SQLite's default: 1,000 pages)
PAGE = 4096  # what a commit writes at least
# The WAL starts over at the first write after a checkpoint that caught up with it, unless a write
# came in between; past this length (writes that never paused), a RESTART checkpoint makes writers
# wait the moment it takes (it waits RESTART_WAIT_MS for the write in progress), and the file is cut back.
WAL_LONG = 64 * 2**20
RESTART_WAIT_MS = 100  # how long that RESTART waits for a write in progress (writers then wait for it)


class _HubsLater(list):
    """Events the hub would have stored itself but for the moment (`StoreWriter._inline`)."""


class StoreWriter:
    """The write half of Store: needs `self.path`, `self._conn` (the writer's connection) and
    `self._wal_bytes(fn, args)` (about what a write adds to the WAL) from the class using it."""

    one_statement: tuple = ()  # writes atomic on their own: alone, they skip BEGIN and COMMIT
    many: dict = {}  # writes with a form that makes many in one statement: server/store_batch.py

    def _start_writer(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._soon: list = []  # submit_soon's items, not yet handed to the writer
        self._soon_lock = threading.Lock()  # `submit` from another thread hands them over too
        self._soon_due = False
        self._pending = 0  # items handed to the writer and not yet done (under _soon_lock)
        self._hub_conn: sqlite3.Connection | None = None  # `_inline`'s
        self._writer_done = 0.0  # when the writer last finished a batch (monotonic)
        self._inline_after = 0.0  # no inline write before then (monotonic): see INLINE_SLOW
        self.on_commit: Callable[[float], None] | None = None  # seconds each batch took (metrics)
        self._unchecked = 0  # bytes written (roughly) since the last checkpoint was asked for
        self._checkpoint_due = threading.Event()
        self.checkpoints = 0  # checkpoints done (the checkpointer's count; tests wait on it)
        self._stopping = False
        self._conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's job
        self._conn.execute(f"PRAGMA journal_size_limit={WAL_LONG}")
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="pushbutton-checkpoint",
                                              daemon=True)
        self._checkpointer.start()
        self._writer = threading.Thread(target=self._write_loop, name="pushbutton-store", daemon=True)
        self._writer.start()

    def _stop_writer(self) -> None:
        """Flush every queued write, then stop the writer."""
        if self._writer.is_alive():
            with self._soon_lock:
                self._send_soon_locked()
                self._put(None)
            self._writer.join()
        self._stopping = True
        self._checkpoint_due.set()
        self._checkpointer.join()
        if self._hub_conn is not None:
            self._hub_conn.close()

    def submit(self, fn: Callable[..., Any], *args: Any, callback: Callback | None = None) -> None:
        """Run `fn(conn, *args)` on the writer thread; `callback(result, error)` runs there too.
        After whatever `submit_soon` holds: writes keep the order they were asked in."""
        with self._soon_lock:
            self._send_soon_locked()
            self._put((fn, args, callback))

    def submit_here(self, fn: Callable[..., Any], *args: Any, callback: Callback | None = None) -> None:
        """From a greenlet of a gevent hub, `submit_soon` on its loop: with that iteration's other
        writes, in order, instead of a wake-up of the writer (and its GIL hand-overs) of its own.
        From anywhere else (a thread of its own, the command line), `submit`."""
        if isinstance(gevent.getcurrent(), gevent.Greenlet):
            self.submit_soon(gevent.get_hub().loop, fn, *args, callback=callback)
        else:
            self.submit(fn, *args, callback=callback)

    def submit_soon(self, loop, fn: Callable[..., Any], *args: Any, callback: Callback | None = None) -> None:
        """`submit`, from the gevent hub's thread, handed to the writer once per iteration of
        `loop`, just before it polls: the writer then wakes while the hub sleeps. Woken at each
        put, it fought the hub for the GIL while the hub was still at work (several GIL handovers
        per event of a slow stream), and the events of one iteration now make one put.
        Small events while the writer is idle are stored by the hub itself (`_inline`)."""
        with self._soon_lock:
            self._soon.append((fn, args, callback))
        if not self._soon_due:
            self._soon_due = True
            loop.run_callback(self._hand_over)

    def _hand_over(self) -> None:
        self._soon_due = False
        with self._soon_lock:
            stored = self._inline(self._soon)
            if stored:
                self._soon = []
            elif stored is None and self._soon:  # the hub's, only not now: they do not make the writer busy
                items, self._soon = _HubsLater(self._soon), []
                self._put(items)
            else:
                self._send_soon_locked()

    def _send_soon_locked(self) -> None:
        """Any thread, under `_soon_lock`: an item the hub adds meanwhile waits for the next hand-over."""
        if self._soon:
            items, self._soon = self._soon, []
            self._put(items)

    def _put(self, item) -> None:
        self._pending += 1  # under _soon_lock
        self._queue.put(item)

    def _inline(self, items: list) -> bool:
        """Store one loop iteration's small events on the hub's thread, in one transaction, under
        `_soon_lock`, when the writer has nothing in hand (so order is kept). Handing them to the
        writer cost two thread switches and, while the hub was busy, up to a loop iteration each
        way: with 1,000 clients, ~50 ms between an event's emit and its readers, and the writer
        fighting the hub for the GIL over every statement. Only what cannot wait: its own
        connection never waits for a lock (busy timeout 0) nor checkpoints (see the module's
        docstring); if SQLite refuses (locked, disk full), the writer takes the events the usual
        way, with its timeout and its error reporting. Not while the writer has just written
        (WRITER_QUIET), nor for a while after a slow write (INLINE_SLOW).

        True if stored; False if the events are the writer's (too big, several statements); None
        if they are the hub's but not now (the writer busy or just done, a rest, SQLite refusing).
        The writer stores those as `_HubsLater`, which do not count as its being busy: once the
        writer had them, its every batch made the next hand-over find it "just done", and under a
        steady load the hub never stored an event again (docs/architecture.md, Output path)."""
        now = time.monotonic()
        if self._pending or now - self._writer_done < WRITER_QUIET or now < self._inline_after:
            return None
        size = 0
        for fn, args, _ in items:
            if fn not in self.one_statement:
                return False
            size += self._wal_bytes(fn, args)
        if size > INLINE_BYTES:
            return False
        began = time.perf_counter()
        try:
            conn = self._hub_conn = self._hub_conn or self._side_connection()
            results = B.all_or_nothing(conn, B.groups(items, self.many, self._wal_bytes), self.many)
        except sqlite3.Error:
            return None
        except Exception:  # an item's own fault: the writer runs them one by one and tells its caller
            return False
        took = time.perf_counter() - began
        if took > INLINE_SLOW:
            self._inline_after = time.monotonic() + INLINE_REST
        if self.on_commit is not None:
            self.on_commit(took)
        self._written(sum(self._wal_size(fn, args) for fn, args, _ in items))
        for (_, _, callback), result in zip(items, results, strict=True):
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
            busy = False  # work of the writer's own (not only `_HubsLater`): see WRITER_QUIET
            item = self._queue.get()
            got = 1
            while True:  # an item, a list of them (`submit_soon`), or None: stop after these
                if item is None:
                    stop = True
                elif type(item) is _HubsLater:
                    batch += item
                elif type(item) is list:
                    batch += item
                    busy = True
                else:
                    batch.append(item)
                    busy = True
                if len(batch) >= 500:
                    break
                try:
                    item = self._queue.get_nowait()
                    got += 1
                except queue.Empty:
                    break
            if batch:
                self._run_batch(batch)
            with self._soon_lock:
                self._pending -= got
                if busy:
                    self._writer_done = time.monotonic()
                self._written(sum(self._wal_size(fn, args) for fn, args, _ in batch))
            # Not held through the next wait, which may be long: a callback holds its run's log.
            batch = item = None
        self._conn.close()

    def _side_connection(self) -> sqlite3.Connection:
        """The hub's and the checkpointer's: never waits for a lock, never checkpoints by itself."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute(f"PRAGMA journal_size_limit={WAL_LONG}")
        return conn

    def _wal_size(self, fn, args) -> int:
        return max(PAGE, self._wal_bytes(fn, args))  # a commit writes a page at least

    def _written(self, size: int) -> None:
        """Under `_soon_lock`: `size` more bytes in the WAL; a checkpoint once they add up."""
        self._unchecked += size
        if self._unchecked >= CHECKPOINT_BYTES:
            self._unchecked = 0
            self._checkpoint_due.set()

    def _checkpoint_loop(self) -> None:
        conn = None
        while True:
            self._checkpoint_due.wait()
            self._checkpoint_due.clear()
            if self._stopping:
                break
            with contextlib.suppress(sqlite3.Error):  # busy or a full disk: the next one catches up
                conn = conn or self._side_connection()
                _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if frames * PAGE > WAL_LONG:  # writes never paused at the right moment: see WAL_LONG
                    # It waits up to RESTART_WAIT for the write in progress to end: asked only when
                    # it had the GIL, the checkpointer came mostly while the hub's write held the
                    # lock, and a busy machine's steady writes never let it in (CI: 26 MB of WAL).
                    conn.execute(f"PRAGMA busy_timeout = {RESTART_WAIT_MS}")
                    try:
                        conn.execute("PRAGMA wal_checkpoint(RESTART)")
                    finally:
                        conn.execute("PRAGMA busy_timeout = 0")
            self.checkpoints += 1
        if conn is not None:
            conn.close()

    def _run_batch(self, batch: list) -> None:
        """One transaction. If it fails (a full disk, say), each item alone, so what fits is stored
        and each failed item's caller hears why; a database locked past the busy timeout fails them
        all at once. The writer never dies of a write: that would leave every run waiting forever."""
        began = time.perf_counter()
        try:
            results = self._transaction(batch)
        except sqlite3.Error as exc:
            B.rollback(self._conn)
            results = [] if B.may_fit_alone(exc) else [(item[2], None, exc) for item in batch]
            for item in batch if B.may_fit_alone(exc) else ():
                try:
                    results.extend(self._transaction([item]))
                except sqlite3.Error as error:
                    B.rollback(self._conn)
                    results.append((item[2], None, error))
        else:
            if self.on_commit is not None:
                self.on_commit(time.perf_counter() - began)
        for callback, result, error in results:
            if callback is not None:
                callback(result, error)

    def _transaction(self, batch: list) -> list:
        return B.each_alone(self._conn, batch, self.one_statement, self.many, self._wal_bytes)
