"""One greenlet per run writes its new events to every reader that has caught up with it.

With many readers, a write to each was two greenlet switches, a pass through the reader's
generators and pywsgi's write path, and the send itself: with 1,000 readers the switches and
passes cost the hub more than the sends. A reader that has caught up (`follow`) now parks its
greenlet; the run's broadcaster, woken once per commit, makes the write once (`sse._frames`) and
sends it to each parked reader's socket without waiting (`Handler.send_now`). A reader whose
socket does not take it all at once, whose client is gone, or whose run has ended is handed
back to its own greenlet, which finishes the write and goes on the usual way (server/sse.py).
Only plain-TCP connections are followed so: over TLS every reader writes its own.

A log's broadcaster lives on the log (`EventLog.broadcast`) only while it has readers: once
kept in a WeakKeyDictionary keyed by the log, the broadcaster (its value) held its own key, so no
followed run's log, its recent events (up to 4 MiB) and its process were ever freed.
"""

from __future__ import annotations

import time

import gevent
from gevent.event import Event

from server.events import EventLog


class Reader:
    """A parked reader: where it is in the run, and why it was handed back."""

    __slots__ = ("connection", "after", "woken", "rest", "error", "ended", "wrote")

    def __init__(self, connection, after: int):
        self.connection = connection  # server.connections.Handler
        self.after = after
        self.woken = Event()
        self.rest = b""  # the end of a write its socket did not take at once
        self.error: OSError | None = None
        self.ended = False
        self.wrote = time.monotonic()


class Broadcast:
    def __init__(self, live: EventLog, frames, pace, keepalive: float):
        self.live, self.frames, self.pace, self.keepalive = live, frames, pace, keepalive
        self.readers: list[Reader] = []
        self.greenlet: gevent.Greenlet | None = None

    def join(self, reader: Reader) -> None:
        self.readers.append(reader)
        if self.greenlet is None:
            self.greenlet = gevent.spawn(self._run)

    def leave(self, reader: Reader) -> None:
        if reader in self.readers:
            self.readers.remove(reader)

    def _run(self) -> None:
        wrote = 0.0
        try:
            while self.readers:
                lowest = min(r.after for r in self.readers)
                if self.live.committed <= lowest:
                    self.live.wait(lowest, self.keepalive)  # the readers' own timeouts
                    continue
                wait = wrote + self.pace() - time.monotonic()
                if wait > 0:  # wrote a moment ago: let more events join the next write
                    gevent.sleep(wait)
                wrote = time.monotonic()
                self._write()
        finally:
            self.greenlet = None
            if self.readers:  # killed: hand every reader back
                for reader in list(self.readers):
                    self._hand_back(reader)
            if self.live.broadcast is self:  # a reader who comes later starts a new one
                self.live.broadcast = None

    def _write(self) -> None:
        framed: dict[int, bytes] = {}  # one framing per distinct write
        for reader in list(self.readers):
            if reader not in self.readers:
                continue  # left while a read waited on the store
            chunk, last, ended = self.frames(self.live, reader.after)
            if not chunk:
                continue
            data = framed.get(id(chunk))
            if data is None:
                data = framed[id(chunk)] = reader.connection.framed(chunk)
            try:
                sent = reader.connection.send_now(data)
            except OSError as exc:
                reader.error = exc
                self._hand_back(reader)
                continue
            reader.after, reader.wrote = last, time.monotonic()
            if sent < len(data):
                reader.rest = data[sent:]
                self._hand_back(reader)
            elif ended:
                reader.ended = True
                self._hand_back(reader)

    def hand_back_all(self) -> None:
        """Every parked reader goes back to its own greenlet (a new jobs.ini: server/sse.py)."""
        for reader in list(self.readers):
            self._hand_back(reader)

    def _hand_back(self, reader: Reader) -> None:
        self.leave(reader)
        reader.woken.set()


def follow(live: EventLog, connection, after: int, frames, pace, keepalive: float) -> Reader:
    """Park this reader (caught up at `after`) until its run's broadcaster hands it back, or
    `keepalive` seconds pass without a write to it, or pass at all (the caller then checks that
    its reader may still read: server/sse.py). The returned Reader says where it is and what is
    left to do: `rest` to send, `error` to raise, `ended`."""
    broadcast = live.broadcast
    if broadcast is None:
        broadcast = live.broadcast = Broadcast(live, frames, pace, keepalive)
    reader = Reader(connection, after)
    broadcast.join(reader)
    until = time.monotonic() + keepalive
    try:
        while not reader.woken.wait(max(0.0, min(reader.wrote + keepalive, until) - time.monotonic())):
            if time.monotonic() >= min(reader.wrote + keepalive, until):
                break  # the caller writes a keepalive itself, and checks its reader
    finally:
        broadcast.leave(reader)
    return reader
