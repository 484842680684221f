"""Failed sign-ins, limited per user name and per client address, in memory.

After `PER_NAME` failures for one user name, or `PER_ADDRESS` from one client address, within
`WINDOW` seconds, further password sign-ins for that name or from that address are refused with
429 and `Retry-After` (until the oldest counted failure leaves the window), before any hashing.
Unknown names count like known ones, so the limit says nothing about who exists. A good sign-in
clears its name's count, never its address's (else one valid account would reset the guessing of
others). A locked name refuses only password sign-ins: its sessions and tokens keep working.
The address limit is looser: an office behind one NAT address shares it. Memory is bounded: at
most `MAX_KEYS` names and addresses are tracked, the least recently failed forgotten first.
"""

from __future__ import annotations

import math
import time
import unicodedata
from collections import OrderedDict, deque

PER_NAME = 5
PER_ADDRESS = 20
WINDOW = 300.0
MAX_KEYS = 10_000


class FailureLimiter:
    def __init__(self, per_name: int = PER_NAME, per_address: int = PER_ADDRESS, window: float = WINDOW,
                 clock=time.monotonic):
        self.limits = {"name": per_name, "address": per_address}
        self.window = window
        self.clock = clock
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    @staticmethod
    def _keys(name: str, address: str | None) -> list[tuple[str, str]]:
        keys = [("name", name_key(name))]
        return keys + [("address", address)] if address else keys

    def locked(self, name: str) -> bool:
        """Whether `name` has used up its failures; only reads, so a directory call on the threadpool
        may ask it (with the name as the directory spells it) before it checks a password."""
        times = list(self._failures.get(("name", name_key(name))) or ())  # one copy: the hub may append
        return sum(t > self.clock() - self.window for t in times) >= self.limits["name"]

    def retry_after(self, name: str, address: str | None) -> int:
        """Seconds until a sign-in for `name` from `address` may be tried again; 0 = now."""
        now, wait = self.clock(), 0.0
        for key in self._keys(name, address):
            times = self._failures.get(key)
            if not times:
                continue
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) >= self.limits[key[0]]:
                wait = max(wait, times[-self.limits[key[0]]] + self.window - now)
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, name: str, address: str | None, canonical: str | None = None) -> None:
        """A failure for the name typed and, when the method found one, the name it stands for."""
        now = self.clock()
        keys = self._keys(name, address)
        if canonical is not None and ("name", name_key(canonical)) not in keys:
            keys.append(("name", name_key(canonical)))
        for key in keys:
            times = self._failures.pop(key, None) or deque(maxlen=max(self.limits.values()))
            times.append(now)
            self._failures[key] = times  # most recently failed last
        while len(self._failures) > MAX_KEYS:
            self._failures.popitem(last=False)

    def succeeded(self, *names: str) -> None:
        for name in names:
            self._failures.pop(("name", name_key(name)), None)


# Mapped to nothing by LDAP's string preparation (RFC 4518 2.2) besides format characters (Cf).
IGNORED = {"\u034f", "\u180b", "\u180c", "\u180d", "\ufffc", *map(chr, range(0xFE00, 0xFE10))}


def name_key(name: str) -> str:
    """One key for the spellings a directory takes as one name: `ＯＬＧＡ`, `olga `, `ol\u00adga`
    (fullwidth, case, spaces, invisible characters; RFC 4518's caseIgnoreMatch is about this)."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return "".join(c for c in folded if not c.isspace() and c not in IGNORED
                   and unicodedata.category(c) not in ("Cf", "Cc"))
