"""Bytes from a process's stdout or stderr -> `output` and `progress` events.

Lines are split on `\\n` before decoding, so a multi-byte character never breaks across reads,
and decoded as UTF-8 with replacement, so any output is safe. Lines are batched by size and by
time: a quiet process's line is sent at once, a flood is sent in large events at most every
BATCH_INTERVAL, so a million lines make a few hundred events.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import gevent

from server.params import MASK

BATCH_INTERVAL = 0.005  # seconds between two events of one stream while output floods
BATCH_BYTES = 256 * 1024
BATCH_LINES = 20_000
MAX_LINE = 1024 * 1024  # a longer line is cut into pieces of this size
PROGRESS_RE = re.compile(r"::progress\s+(\d{1,3}(?:\.\d+)?)%?(?:\s+(.*))?\Z")

Emit = Callable[[str, dict], None]


class OutputStream:
    def __init__(self, stream: str, emit: Emit, secrets: list[str] = (), on_progress=None,
                 extra: dict | None = None, wait=None):
        self.stream = stream
        self.emit = emit
        self.secrets = [s for s in secrets if s]
        self.on_progress = on_progress
        self.extra = extra or {}  # e.g. {"host": "web1"} for remote runs
        self.partial = b""
        self.pending: list[str] = []
        self.pending_bytes = 0
        self.last_flush = 0.0
        self.timer: gevent.Greenlet | None = None
        self.wait = wait  # blocks the reader while events are not yet stored (backpressure)

    def feed(self, chunk: bytes) -> None:
        data = self.partial + chunk if self.partial else chunk
        end = data.rfind(b"\n")
        if end < 0:
            self.partial = data
            if len(data) >= MAX_LINE:
                self.partial = b""
                self._lines(data.decode("utf-8", "replace"))
        else:
            self.partial = data[end + 1:]
            self._lines(data[:end].decode("utf-8", "replace"))
        self._schedule()
        if self.wait is not None:
            self.wait()

    def close(self) -> None:
        """End of stream: a last line without newline is kept."""
        if self.partial:
            self._lines(self.partial.decode("utf-8", "replace"))
            self.partial = b""
        self.flush()

    def _lines(self, text: str) -> None:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        lines = text.split("\n")
        if "\r" in text:
            lines = [line[:-1] if line.endswith("\r") else line for line in lines]
        if "::progress" in text:
            for line in lines:
                m = PROGRESS_RE.match(line.strip()) if line.lstrip().startswith("::progress") else None
                if m and self.on_progress is not None:
                    self.flush()
                    self.on_progress(min(float(m.group(1)), 100.0), (m.group(2) or "").strip())
                else:
                    self._add([line])
        else:
            self._add(lines)

    def _add(self, lines: list[str]) -> None:
        self.pending.extend(lines)
        self.pending_bytes += sum(map(len, lines))
        if self.pending_bytes >= BATCH_BYTES or len(self.pending) >= BATCH_LINES:
            self.flush()

    def _schedule(self) -> None:
        if not self.pending or self.timer is not None:
            return
        wait = self.last_flush + BATCH_INTERVAL - time.monotonic()
        if wait <= 0:
            self.flush()
        else:
            self.timer = gevent.spawn_later(wait, self.flush)

    def flush(self) -> None:
        self.timer = cancel_timer(self.timer)
        if not self.pending:
            return
        lines, self.pending, self.pending_bytes = self.pending, [], 0
        self.last_flush = time.monotonic()
        self.emit("output", {"stream": self.stream, **self.extra, "lines": lines})


def cancel_timer(timer: gevent.Greenlet | None) -> None:
    """Kill a pending `spawn_later` greenlet, unless it is the one running now; returns None."""
    if timer is not None and timer is not gevent.getcurrent():
        timer.kill(block=False)
