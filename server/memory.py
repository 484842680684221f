"""Memory given back after load: a long-lived server returns near its idle size.

Measured with bench/load.py and a 200-client fan-out of one run's history: glibc kept most of the
peak as free but resident pages, the server staying at 116-126 MiB (45 MiB idle) once the
clients had gone (now 63-74 MiB). Two causes, two remedies (glibc only; other allocators return memory themselves):

- glibc raises its mmap threshold each time a large buffer is freed (up to 32 MiB), after which
  every SSE frame and history page is carved from a thread's heap, whose free top it keeps up to
  twice that threshold (malloc_trim does not touch it in a thread's heap). `fixed_thresholds()`
  turns that adjustment off: buffers from 2 MiB are mapped and unmapped, a heap keeps at most
  1 MiB free on top. (At glibc's 128 KiB default `seq 1000000` took twice as long: every large
  frame paid fresh page faults; at 2 MiB bench/run.py's figures are unchanged.)
- Freed small blocks scattered through a heap are only returned by `malloc_trim(0)`. It runs when
  the load (open streams plus active runs) has fallen since the last look (each second), on the
  hub's threadpool (ctypes releases the GIL, so the hub keeps serving while glibc walks its heaps).
- Garbage in reference cycles (a closed connection's greenlet and socket, say) waits for CPython's
  full collection, which comes rarely: once nothing is open or running at two looks in a row, and
  nothing began between them, one is made before the trim (after bench/load.py's 1,000 clients,
  111 MiB instead of 145, idle 46; glibc's thread heaps 2 MiB instead of 33). Not under load,
  since it holds the GIL for tens of ms; while a page stays open (its stream of run states),
  CPython's own full collections do it, later.
"""

from __future__ import annotations

import ctypes
import gc
import sys

import gevent

from server.events import in_pool

CHECK_EVERY = 1.0  # seconds between two looks at the load (a sum of counters: cheap)
MMAP_THRESHOLD = 2 * 2**20  # a buffer this large gets its own mapping, returned when freed
TRIM_THRESHOLD = 2**20  # free memory a heap may keep on its top
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None  # macOS and Windows return freed memory themselves
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None  # musl has neither


_LIBC = _glibc()


def fixed_thresholds() -> None:
    """Keep glibc from holding large freed buffers (see above); call once at start-up."""
    if _LIBC is not None:
        _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        _LIBC.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def give_back() -> None:
    """Return the free pages of every malloc heap to the OS (no-op where there is no glibc)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def load_of(runs) -> int:
    return sum(runs.streams.values()) + len(runs.active)


def trim_after_load(runs, every: float = CHECK_EVERY) -> None:
    """Forever (a greenlet): give memory back each time the load has dropped since the last look."""
    looks = Looks(load_of(runs), runs.begun)
    while True:
        gevent.sleep(every)
        action = looks.look(load_of(runs), runs.begun)
        if action == COLLECT:
            gc.collect()
        if action is not None:
            in_pool(give_back)


TRIM, COLLECT = "trim", "collect"


class Looks:
    """What each look at the load calls for: TRIM when it has fallen, COLLECT (a full collection,
    then the trim) when it has fallen to zero and is still zero at the next look, with nothing
    begun in between (`begun`: runs recorded and streams opened so far). Not at the first zero: a
    collection holds the GIL for tens of ms (42 ms after bench/run.py's floods), and work that
    comes in bursts (a script's runs one after another, a benchmark's rounds) touches zero between
    them, when the next request is already on its way. Nor when a burst came and went between two
    looks: a look a second apart sees only the gaps of bursts half a second apart."""

    def __init__(self, load: int, begun: int = 0):
        self.high = load
        self.begun = begun
        self.zero_since_last = False  # the load fell to zero at the last look

    def look(self, load: int, begun: int = 0) -> str | None:
        quiet = begun == self.begun  # nothing came and went since the last look
        if self.zero_since_last and load == 0 and quiet:
            action = COLLECT
        elif self.zero_since_last or 0 < load < self.high or (load == 0 and not quiet):
            action = TRIM
        else:
            action = None
        self.zero_since_last = load == 0 and (self.high > 0 or not quiet)
        self.high, self.begun = load, begun
        return action
