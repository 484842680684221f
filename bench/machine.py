"""What the machine gave a benchmark: the CPU time its hypervisor took for other guests (steal), and
how fast a fixed piece of Python ran just before and just after.

This repository's machines are virtual and shared: the same code's figures drift by up to 2x from
hour to hour. Steal and the reference loop turn "a slow hour" into a number printed beside the
figures, so that figures from different hours can be told apart (README, "Performance").
"""

from __future__ import annotations

import time

import psutil

REFERENCE_LOOPS = 1_000_000


def reference_ms(repeat: int = 5) -> float:
    """The best of `repeat` timings of a fixed pure-Python loop, in ms: the machine's speed for
    the kind of work the server's hub does."""
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        total = 0
        for i in range(REFERENCE_LOOPS):
            total += i & 7
        best = min(best, time.perf_counter() - began)
    return best * 1000


class Machine:
    """`with Machine() as machine:` around a benchmark; then `machine.describe()`."""

    def __enter__(self) -> Machine:
        self.reference_before = reference_ms()
        self.before = psutil.cpu_times()
        return self

    def __exit__(self, *exc) -> None:
        self.after = psutil.cpu_times()
        self.reference_after = reference_ms()

    def steal(self) -> float | None:
        """The share of all cores' time the hypervisor gave to other guests meanwhile (0..1);
        None where the OS does not report it."""
        if not hasattr(self.before, "steal"):
            return None
        spent = sum(self.after) - sum(self.before)
        return (self.after.steal - self.before.steal) / spent if spent > 0 else 0.0

    def describe(self) -> str:
        steal = self.steal()
        stolen = "not reported by this OS" if steal is None else f"{steal * 100:.1f}% of all cores' time"
        return (f"machine: CPU time taken by the hypervisor for other guests (steal) {stolen}; reference "
                f"Python loop {self.reference_before:.0f} ms before, {self.reference_after:.0f} ms after")
