"""The numbered event log of one run, and waiting on the store from the gevent hub.

An event gets its number (1, 2, 3...) when it is emitted, is committed by the store's writer
thread, and only then becomes visible to readers: whatever a client has seen, a resume after a
restart finds again. Readers take recent events from memory and older ones from SQLite, so a slow
client never holds memory and a fast one never touches the disk.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

import gevent
import orjson
from gevent.event import AsyncResult, Event

from server.store import READ_BYTES, Store

log = logging.getLogger("pushbutton")
RECENT_EVENTS = 256  # kept in memory after commit, for live readers...
RECENT_BYTES = 4 * 1024 * 1024  # ...up to this much; older events are read from SQLite
UNSTORED_BYTES = 2 * RECENT_BYTES  # a run whose history cannot be written: output kept in memory, at most,
UNSTORED_EVENTS = 16 * RECENT_EVENTS  # and in at most this many events
NOT_KEPT = "pushbutton: the rest of the output was not kept: history could not be written"
BACKLOG_EVENTS = 64  # emitted but not yet stored; beyond this the producer waits
SMALL = 512  # bytes: CPython's small-object allocator serves objects below this size
Row = tuple[int, str, bytes]  # (seq, type, its data as UTF-8 JSON)


def in_pool(fn, *args):
    """Run a blocking call (a SQLite read, a process scan, a directory or provider request) on the
    hub's threadpool. Its exception is raised here, in the caller, which handles it: the pool
    would otherwise also print it as an unhandled error (a provider that is down is not a crash)."""

    def call():
        try:
            return fn(*args), None
        except Exception as exc:
            return None, exc

    result, error = gevent.get_hub().threadpool.apply(call)
    if error is not None:
        raise error
    return result


def store_call(store: Store, fn, *args) -> Any:
    """A store write whose result this greenlet needs: it waits, the hub keeps serving. The writer
    wakes this greenlet through an async watcher of its own, which also keeps the loop alive while
    it waits (a bare `run_callback_threadsafe` does not: a hub with nothing else to do would exit).
    Formerly a threadpool thread waited for the writer instead: two more thread hand-offs for each
    run started, and one more thread competing with the hub for the GIL."""
    box: list = []
    done = AsyncResult()
    watcher = gevent.get_hub().loop.async_()
    watcher.start(lambda: done.set(box[0]))
    try:
        store.submit(fn, *args, callback=lambda result, error: (box.append((result, error)), watcher.send()))
        result, error = done.get()
    finally:
        watcher.close()
    if error is not None:
        raise error
    return result


class EventLog:
    def __init__(self, store: Store, run_id: int, last_seq: int = 0):
        self.store = store
        self.run_id = run_id
        self.seq = last_seq  # last number handed out
        self.committed = last_seq  # last number durably stored: readers see up to here
        self.recent: deque[Row] = deque()
        self.recent_bytes = 0
        self.ended = False
        self._changed = Event()
        self._loop = gevent.get_hub().loop
        self._hub_thread = gevent.get_hub().thread_ident
        self._tick = None  # the timer that ends waits with nothing new (see `wait`)
        self._tick_every = 0.0
        self._waiting = 0
        self.failure: str | None = None  # why an event could not be stored (the first time)
        self.unstored_from: int | None = None  # from this event on, memory may hold the only copy
        self.dropping = False  # past UNSTORED_* after a failure: output is no longer kept
        self.on_failure: Callable[[], None] | None = None  # called then, once (Runs stops the run)
        self.shared: Any = None  # what the SSE layer made of the last read, for the run's other readers
        self.broadcast: Any = None  # its readers' broadcaster while it has any (server/broadcast.py)

    def emit(self, kind: str, data: Any) -> int:
        if kind == "output" and self.unstored_from is not None \
                and (self.recent_bytes > UNSTORED_BYTES or len(self.recent) > UNSTORED_EVENTS):
            # Its history cannot be written, and memory holds its output: the run is being stopped,
            # but a job may print for its grace period, at the hub's pace. Said once, then dropped.
            if self.dropping:
                return self.seq
            self.dropping = True
            data = {"stream": "stderr", "lines": [NOT_KEPT]}
        self.seq += 1
        # orjson: encoding the lines is the largest cost of a flood, 9x less than the stdlib's.
        raw = orjson.dumps(data)
        if len(raw) < SMALL:
            # orjson's result is a buffer of C's malloc shrunk in place: thousands kept in `recent`
            # left glibc's heaps in pieces it could not give back (bench/load.py --quick: 64 MiB
            # once the clients had gone, 46 idle; 55 with this copy from Python's allocator).
            raw = bytes(memoryview(raw))
        row = (self.seq, kind, raw)
        self.recent.append(row)
        self.recent_bytes += len(row[2])
        if kind == "end":
            self.ended = True
        self.store.submit_soon(self._loop, Store.append_event, self.run_id, row,
                               callback=partial(self._stored, self.seq))
        return self.seq

    emit.takes_fragments = True  # `data` may hold orjson.Fragment: JSON made already (OutputStream)

    def _stored(self, seq: int, _: int | None, error: BaseException | None) -> None:
        if threading.get_ident() == self._hub_thread:  # stored by the hub itself: readers see it now
            self._commit(seq, error)
        else:  # the writer thread: hand over to the hub
            self._loop.run_callback_threadsafe(self._commit, seq, error)

    def _commit(self, seq: int, error: BaseException | None) -> None:
        if error is not None:
            # Disk full or similar: serve the event from memory, and say so once (the run is
            # stopped: output that cannot be kept must not go on as if it were).
            log.error("run %s: could not store event: %s", self.run_id, error)
            self.unstored_from = min(seq, self.unstored_from or seq)
            seq = self.seq
            if self.failure is None:
                self.failure = f"history could not be written: {error}"
                if self.on_failure is not None:
                    self.on_failure()
        self.committed = max(self.committed, seq)
        keep = self.committed if self.unstored_from is None else min(self.committed, self.unstored_from - 1)
        while (len(self.recent) > RECENT_EVENTS or self.recent_bytes > RECENT_BYTES) \
                and self.recent and self.recent[0][0] <= keep:  # never an event SQLite lacks
            self.recent_bytes -= len(self.recent.popleft()[2])
        if self._tick is not None and self.finished:  # its readers are done: free it now, not a tick later
            self._tick.close()
            self._tick = None
        self._wake()

    def wait_writable(self) -> None:
        """Backpressure: hold a producer while the disk is behind, so memory stays flat (the
        process then blocks on its full pipe, as it would writing to a slow terminal)."""
        while self.seq - self.committed > BACKLOG_EVENTS:
            self._changed.wait(1.0)

    @property
    def finished(self) -> bool:
        """Every event, the final `end` included, is committed."""
        return self.ended and self.committed == self.seq

    def read(self, after: int, limit: int = 200) -> list[Row]:
        """Committed events after `after`, from memory when they are still there. `recent` holds
        consecutive numbers, so the first wanted row is found by index: a live reader costs the
        rows it gets, not the window's length (scanning 256 rows twice per event was most of the
        server's CPU for slow output, per client)."""
        recent = self.recent
        if recent and recent[0][0] <= after + 1:
            out, size = [], 0
            start = after + 1 - recent[0][0]
            for i in range(start, min(len(recent), start + limit)):
                row = recent[i]  # deque indexing near either end is cheap
                if row[0] > self.committed or size >= READ_BYTES:
                    break
                out.append(row)
                size += len(row[2])
            return out
        rows = in_pool(self.store.events, self.run_id, after, limit)
        if self.unstored_from is not None and recent and rows and rows[-1][0] >= recent[0][0]:
            rows = [row for row in rows if row[0] < recent[0][0]]  # memory has the rest; SQLite lacks some
        return rows

    def wait(self, after: int, timeout: float) -> bool:
        """Block this greenlet until an event after `after` is committed; False when a tick comes
        first. One timer per log ticks every `timeout` seconds (the shortest asked) while anyone
        waits, so no wait is longer than that: a Timeout per wait, made and cancelled for each
        event each client is sent, was ~5% of the server's time for a slow stream."""
        if self.committed > after:
            return True
        if self._tick is None or timeout < self._tick_every:
            if self._tick is not None:
                self._tick.close()
            self._tick, self._tick_every = self._loop.timer(timeout, timeout), timeout
            self._tick.start(self._ticked)
        self._waiting += 1
        try:
            self._changed.wait()
        finally:
            self._waiting -= 1
        return self.committed > after

    def wake(self) -> None:
        """Every waiting reader looks again now (a new jobs.ini may have taken its rights)."""
        if self._waiting:
            self._wake()

    def _ticked(self) -> None:
        if self._waiting:
            self._wake()
        else:  # nobody left: no timer runs for a log nobody reads
            self._tick.close()
            self._tick = None

    def _wake(self) -> None:
        changed, self._changed = self._changed, Event()
        changed.set()
