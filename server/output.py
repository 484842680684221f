"""Bytes from a process's stdout or stderr -> `output` and `progress` events.

Bytes are decoded incrementally (a multi-byte character split across reads stays whole) as UTF-8
with replacement (any output is safe), then split into lines. Lines are batched by size and by
time: a quiet process's line is sent at once, a flood is sent in large events at most every
BATCH_INTERVAL, so a million lines make a few hundred events.

Secrets are masked before anything leaves: every occurrence of every secret, overlapping ones
merged into one span, so no part of a secret shows whatever the secrets' order or nesting; a line
too long to keep (MAX_LINE) is cut only where no secret is or may yet be, and remembers its tail so
that a secret straddling the cut is masked on both sides.
"""

from __future__ import annotations

import codecs
import re
import time
from collections.abc import Callable

import gevent
import orjson

from server.params import MASK

BATCH_INTERVAL = 0.005  # seconds between two events of one stream while output floods
BATCH_BYTES = 256 * 1024  # an event's text at most, but for the read that crossed it
MAX_LINE = 1024 * 1024  # a longer line is cut into pieces of this size
PROGRESS_RE = re.compile(r"::progress\s+(\d{1,3}(?:\.\d+)?)%?(?:\s+(.*))?\Z")
JSON_AS_IS = bytes(range(0x20, 0x7F)).translate(None, b'"\\') + b"\n"  # written as themselves in a JSON string

Emit = Callable[[str, dict], None]


class Masker:
    """Every occurrence of any of `secrets` -> MASK. Occurrences are found overlapping, and the
    union of their spans is masked, so a secret inside, touching or overlapping another is hidden
    whole (a longest-first regex would leave the tail of one that overlaps another)."""

    def __init__(self, secrets: list[str] | tuple[str, ...] = ()):
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self.longest = len(self.secrets[0]) if self.secrets else 0
        self.runs = [(s, _run_re(s)) for s in self.secrets]

    def spans(self, text: str) -> list[list[int]]:
        """Merged [start, end) spans of every occurrence, in order."""
        found = []
        for secret, run in self.runs:
            if secret not in text:  # the usual case, and the fastest test
                continue
            m = run.search(text)
            while m:
                start, end = m.span()
                found.append((start, end))
                # Any other occurrence that overlaps this run starts after the run's last one.
                m = run.search(text, max(start + 1, end - len(secret) + 1))
        merged: list[list[int]] = []
        for start, end in sorted(found):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        return merged

    def mask(self, text: str) -> str:
        return self.split(text)[0]

    def split(self, text: str, before: str = "", hold: bool = False) -> tuple[str, str]:
        """(masked `text` up to a safe cut, the raw rest). `before` is raw text already sent just
        ahead of `text`, so that a secret begun there is masked here too. With `hold`, the last
        longest-1 characters are kept back (a secret may begin there and end in the next read),
        moving the cut to the end of a secret that spans it."""
        full = before + text if before else text
        spans = self.spans(full) if self.secrets else []
        offset = len(before)
        cut = len(full)
        if hold:
            cut = max(offset, cut - max(self.longest - 1, 0))
            cut = next((end for start, end in spans if start < cut < end), cut)
        out, pos = [], offset
        for start, end in spans:
            if end <= offset:
                continue
            if start >= cut:
                break
            out += (full[pos:max(start, offset)], MASK)
            pos = end
        out.append(full[pos:cut])
        return "".join(out), full[cut:]


def _run_re(secret: str) -> re.Pattern[str]:
    """One occurrence of `secret` and every occurrence chained to it by its period (`abab` in
    `ababababab`), in one match: output that repeats a secret costs one match, not one per
    character."""
    period = next(p for p in range(1, len(secret) + 1) if secret[p:] == secret[:-p])  # len(secret) at most
    return re.compile(re.escape(secret) + "(?:" + re.escape(secret[len(secret) - period:]) + ")*")


class OutputStream:
    def __init__(self, stream: str, emit: Emit, secrets: list[str] = (), on_progress=None,
                 extra: dict | None = None, wait=None):
        self.stream = stream
        self.emit = emit
        self.masker = Masker(secrets)
        self.on_progress = on_progress
        self.extra = extra or {}  # e.g. {"host": "web1"} for remote runs
        # Incremental: a multi-byte character split across reads is decoded whole.
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.partial = ""  # the line not ended yet
        self.sent = ""  # raw tail of that line's pieces already sent, when it was cut
        self.pending: list[str] = []  # texts of whole lines, each without its last newline
        self.pending_bytes = 0
        self.fragments = getattr(emit, "takes_fragments", False)
        self.last_flush = 0.0
        self.timer: gevent.Greenlet | None = None
        self.wait = wait  # blocks the reader while events are not yet stored (backpressure)

    def feed(self, chunk: bytes) -> None:
        text = self.decoder.decode(chunk)
        data = self.partial + text if self.partial else text
        end = data.rfind("\n")
        if end < 0:
            self.partial = data
        else:
            self.partial = data[end + 1:]
            self._lines(data[:end])
        if len(self.partial) >= MAX_LINE:
            self._cut()
        self._schedule()
        if self.wait is not None:
            self.wait()

    def close(self) -> None:
        """End of stream: a last line without newline is kept."""
        self.partial += self.decoder.decode(b"", True)
        if self.partial:
            self._lines(self.partial)
            self.partial = ""
        self.flush()

    def _cut(self) -> None:
        """Send an endless line's text so far as a line of its own, but for a tail that may hold
        the start of a secret; keep the raw end of what was sent, to mask a secret it begins."""
        before = self.sent
        piece, rest = self.masker.split(self.partial, before, hold=True)
        keep = self.masker.longest - 1
        if keep > 0:
            sent = before + self.partial[:len(self.partial) - len(rest)]
            self.sent = sent[-keep:]
        self.partial = rest
        if piece:
            self._parse(piece)

    def _lines(self, text: str) -> None:
        if self.masker.secrets:
            text = self.masker.split(text, self.sent)[0]
        self.sent = ""
        self._parse(text)

    def _parse(self, text: str) -> None:
        """Masked text -> output lines and progress reports. Lines stay joined in their text: a
        `str` object per line took a flood of a million lines to ~170 MB at its peak. Nor are they
        counted: a batch is bounded by its size (counting the newlines of a flood was 6% of the
        hub's time for it, for a limit that bytes already keep)."""
        if "\r" in text:
            text = "\n".join(line[:-1] if line.endswith("\r") else line for line in text.split("\n"))
        if ":" not in text or "::progress" not in text:  # one memchr, before a slower substring search
            self._add(text)
            return
        plain: list[str] = []
        for line in text.split("\n"):
            m = PROGRESS_RE.match(line.strip()) if line.lstrip().startswith("::progress") else None
            if m and self.on_progress is not None:
                if plain:
                    self._add("\n".join(plain))
                    plain = []
                self.flush()
                self.on_progress(min(float(m.group(1)), 100.0), (m.group(2) or "").strip())
            else:
                plain.append(line)
        if plain:
            self._add("\n".join(plain))

    def _add(self, text: str) -> None:
        """`text`: whole lines joined by newlines."""
        self.pending.append(text)
        self.pending_bytes += len(text)
        if self.pending_bytes >= BATCH_BYTES:
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
        chunks, self.pending, self.pending_bytes = self.pending, [], 0
        self.last_flush = time.monotonic()
        text = chunks[0] if len(chunks) == 1 else "\n".join(chunks)
        self.emit("output", {"stream": self.stream, **self.extra, "lines": self._encode(text)})

    def _encode(self, text: str) -> list[str] | orjson.Fragment:
        """The lines of `text`: for an `emit` that takes them (`takes_fragments`), as their JSON
        array made from the text at once, which is what orjson makes of the list, byte for byte.
        ASCII with nothing to escape but newlines (most output) is its own JSON: the array is the
        text with each newline made `","` (a third of the former cost of a flood's encoding). Else,
        without a backslash in the text, the only `\\n` in orjson's JSON string is an escaped newline."""
        if not self.fragments:
            return text.split("\n")
        if text.isascii():  # a flag of the str: free
            raw = text.encode()
            if not raw.translate(None, JSON_AS_IS):
                return orjson.Fragment(b"".join((b'["', raw.replace(b"\n", b'","'), b'"]')))  # one copy, not two
        if "\\" not in text:
            return orjson.Fragment(orjson.dumps([text]).replace(b"\\n", b'","'))
        return text.split("\n")


def cancel_timer(timer: gevent.Greenlet | None) -> None:
    """Kill a pending `spawn_later` greenlet, unless it is the one running now; returns None."""
    if timer is not None and timer is not gevent.getcurrent():
        timer.kill(block=False)
