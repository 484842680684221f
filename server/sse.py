"""Server-Sent Events streams: one run's events with exact resume, and every run's state.

The first bytes go out at once (headers are only sent with the first chunk), a comment every
KEEPALIVE seconds finds vanished clients and keeps a quiet stream inside every idle timeout, and
every run event carries `id: <seq>` so a browser's automatic reconnect (`Last-Event-ID`) continues
with exactly the next event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import gevent
import orjson
from gevent.queue import Empty, Full

from server import broadcast
from server.connections import IDLE_TIMEOUT
from server.events import EventLog, in_pool
from server.run_record import FINAL
from server.runs import Runs

KEEPALIVE = IDLE_TIMEOUT / 2  # 15 s by default
RETRY_MS = 1000
PACE_PER_STREAM = 0.00002  # s per open run stream: 1,000 streams -> at most 50 writes a second to each
PACE_MAX = 0.05
POLL = 0.25  # a run executed by another process (`pushbutton run`) is followed through the store
CATALOG = {"catalog": "changed"}  # put into every `changes` queue by catalog_changed
CREDENTIALS = {"credentials": "changed"}  # put there by credentials_changed: each reader checks its own


def frame(seq: int | None, kind: str, data: bytes) -> bytes:
    """One event as a stream writes it; `data` is UTF-8 JSON, copied once (a flood's are ~250 KB)."""
    if seq is None:
        return b"event: %s\ndata: %s\n\n" % (kind.encode(), data)
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, kind.encode(), data)


def _counted(runs: Runs, kind: str, stream: Iterator[bytes]) -> Iterator[bytes]:
    """`stream`, counted in `runs.streams[kind]` while it is open (GET /metrics shows them)."""
    runs.streams[kind] += 1
    runs.begun += 1
    try:
        yield from stream
    finally:
        runs.streams[kind] -= 1


class Holder:
    """Whether a stream's reader still holds the credential it opened the stream with
    (`Authenticator.still`): asked when one ended in this server (`credentials_changed`), and
    every KEEPALIVE for those ended by another process (`pushbutton users revoke`, `passwd`)."""

    def __init__(self, runs: Runs, still: Callable[[], bool]):
        self.runs, self.still = runs, still
        self.seen, self.next = runs.credentials_changed, time.monotonic() + KEEPALIVE

    def gone(self, now: bool = False) -> bool:
        if not now and self.runs.credentials_changed == self.seen and time.monotonic() < self.next:
            return False
        self.seen, self.next = self.runs.credentials_changed, time.monotonic() + KEEPALIVE
        return not self.still()


def run_events(runs: Runs, run_id: int, after: int, connection=None, still=lambda: True) -> Iterator[bytes]:
    """Events of one run with seq > after, live until its `end` event, then the stream closes.
    With its `connection` (server.connections.DIRECT), a reader that has caught up is written to
    by the run's broadcaster (server/broadcast.py)."""
    return _counted(runs, "run", _run_events(runs, run_id, after, connection, Holder(runs, still)))


def pace(runs: Runs) -> float:
    """The shortest time between two writes to one run stream: none with few readers; with many,
    a busy run's events are grouped into fewer, larger writes, so that the writes (tens of us of
    the hub's time each) stay within the server's CPU however many streams are open, and every
    stream's delay stays bounded instead of growing with the queue (bench/load.py)."""
    return min(PACE_MAX, runs.streams["run"] * PACE_PER_STREAM)


def _run_events(runs: Runs, run_id: int, after: int, connection, holder: Holder) -> Iterator[bytes]:
    yield f"retry: {RETRY_MS}\n\n".encode()
    wrote = 0.0
    rights = runs.rights_changed
    while True:
        if runs.rights_changed != rights or holder.gone():
            return  # a new jobs.ini, or signed out: the browser reconnects (Last-Event-ID) through the rules
        live = runs.event_log(run_id)
        if live is not None and live.committed <= after and connection is not None and not live.finished:
            reader = broadcast.follow(live, connection, after, _frames, lambda: pace(runs), KEEPALIVE)
            after, wrote = reader.after, reader.wrote
            if reader.error is not None:
                return  # the client is gone
            if reader.rest:
                connection.send_rest(reader.rest)
            if reader.ended:
                return
            if not reader.woken.is_set():
                yield b": keepalive\n\n"
            continue
        if live is not None and live.committed <= after:  # nothing new: wait, without a read for nothing
            if not live.wait(after, KEEPALIVE):
                yield b": keepalive\n\n"
            continue
        if live is not None:
            wait = wrote + pace(runs) - time.monotonic()
            if wait > 0:  # wrote to this reader a moment ago: let more events join the next write
                gevent.sleep(wait)
            wrote = time.monotonic()
            chunk, last, ended = _frames(live, after)
            if chunk:
                yield chunk
                after = last
                if ended:
                    return
            elif not live.wait(after, KEEPALIVE):
                yield b": keepalive\n\n"
            continue
        rows = in_pool(runs.store.events, run_id, after)
        if rows:
            yield b"".join([frame(*row) for row in rows])
            after = rows[-1][0]
            if rows[-1][1] == "end":
                return
        elif runs.get(run_id)["state"] in FINAL and not in_pool(runs.store.events, run_id, after, 1):
            return  # ended without an `end` event: nothing more will come
        else:
            gevent.sleep(POLL)


def _frames(live: EventLog, after: int) -> tuple[bytes, int, bool]:
    """The live log's committed events after `after` as one write: its bytes, the last number in
    it, and whether that is the `end`. A run's readers are woken together, mostly at the same
    place: the write is made once for all of them (kept in `live.shared` until more is committed)."""
    key = (after, live.committed)
    if live.shared is not None and live.shared[0] == key:
        return live.shared[1]
    rows = live.read(after)
    made = (b"".join([frame(*row) for row in rows]), rows[-1][0], rows[-1][1] == "end") if rows \
        else (b"", after, False)
    live.shared = (key, made)
    return made


def changes(runs: Runs, sees: Callable[[dict], bool], still=lambda: True) -> Iterator[bytes]:
    """The state changes of every run the reader `sees`, after a `ready` event listing those
    active now. Filtered as they are queued, so another user's busy jobs cannot fill this queue."""
    return _counted(runs, "changes", _changes(runs, sees, Holder(runs, still)))


def _changes(runs: Runs, sees: Callable[[dict], bool], holder: Holder) -> Iterator[bytes]:
    watcher = runs.watch(sees)
    snapshot = [record for record in (r.public() for r in runs.active.values()) if sees(record)]
    try:
        yield f"retry: {RETRY_MS}\n\n".encode() + frame(None, "ready", orjson.dumps({"active": snapshot}))
        while True:
            try:
                record = watcher.get(timeout=KEEPALIVE)
            except Empty:
                if watcher not in runs.watchers or holder.gone():
                    return  # dropped for falling behind (a fresh snapshot), or signed out elsewhere
                yield b": keepalive\n\n"
                continue
            if record is CREDENTIALS:
                if holder.gone(now=True):
                    return  # the browser reconnects, and the route's rule answers 401
                continue
            batch = [record]
            while not watcher.empty() and len(batch) < 500 and batch[-1] is not CATALOG:
                batch.append(watcher.get_nowait())
            if any(r is CREDENTIALS for r in batch) and holder.gone(now=True):
                return
            chunk = b"".join([frame(None, "state", orjson.dumps(r)) for r in batch
                              if r is not CATALOG and r is not CREDENTIALS])
            if batch[-1] is CATALOG:  # the reader's rights may have changed: it reconnects as who it is now
                yield chunk + frame(None, "catalog", b"{}")
                return
            yield chunk
    finally:
        runs.unwatch(watcher)


def credentials_changed(runs: Runs) -> None:
    """A session or token ended in this server: every open stream checks its own credential at
    once (parked run readers handed back to their greenlets), and those that lost it end."""
    runs.credentials_changed += 1
    for watcher in list(runs.watchers):
        try:
            watcher.put_nowait(CREDENTIALS)
        except Full:
            runs.unwatch(watcher)
    _wake_run_streams(runs)


def catalog_changed(runs: Runs, applied: bool = True) -> None:
    """jobs.ini was reloaded (or failed to): every `changes` stream says `catalog` and ends, so
    each page re-reads its jobs and reconnects with the rights the new file gives. Once a new file
    is `applied`, every run stream ends too, at once: its browser reconnects a second later after
    the last event it has, through the route's rule again, and one who may no longer see the run
    gets a 404 instead of the rest of its output."""
    for watcher in list(runs.watchers):
        try:
            watcher.put_nowait(CATALOG)
        except Full:
            runs.unwatch(watcher)
    if applied:
        runs.rights_changed += 1
        _wake_run_streams(runs)


def _wake_run_streams(runs: Runs) -> None:
    for live in list(runs.logs.values()):
        if live.broadcast is not None:
            live.broadcast.hand_back_all()
        live.wake()
