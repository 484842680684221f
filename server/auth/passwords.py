"""Password hashes: argon2id (argon2-cffi, RFC 9106's low-memory profile: 64 MiB, 3 passes).

A hash costs ~0.1 s of CPU and 64 MiB on purpose, so it never runs on the gevent hub: the server
hashes through `OffHub`, on the hub's threadpool (argon2-cffi releases the GIL), at most
`HASH_SLOTS` at once so a burst of sign-ins can neither take every thread nor every megabyte.
An unknown user is checked against a dummy hash, so "no such user" takes as long as "wrong
password". A hash made with older parameters is replaced at the next good sign-in.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass

import argon2
import gevent.lock

from server.events import in_pool

HASHER = argon2.PasswordHasher()  # argon2id, parameters from RFC 9106 (argon2-cffi's defaults)
HASH_SLOTS = 2  # hashes at once (64 MiB and 4 lanes each): the rest of the CPU stays the hub's; more wait
MAX_WAITING = 64  # beyond this many queued, a sign-in is refused at once (Busy): no pile-up


class Busy(Exception):
    """Too many sign-ins are waiting for a hashing slot."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    rehash: str | None = None  # a new hash to store: the parameters changed since this one was made


def hash_password(password: str) -> str:
    """Blocking: call through `OffHub.run` in the server."""
    return HASHER.hash(password)


@functools.cache
def dummy_hash() -> str:
    return HASHER.hash(secrets.token_urlsafe(16))


def verify_password(stored: str | None, password: str) -> Verdict:
    """Blocking. `stored` None (no such user) verifies against a dummy hash and fails: the same work."""
    try:
        HASHER.verify(stored or dummy_hash(), password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return Verdict(False)
    if stored is None:
        return Verdict(False)
    return Verdict(True, HASHER.hash(password) if HASHER.check_needs_rehash(stored) else None)


class OffHub:
    """Runs hashes on the hub's threadpool, `HASH_SLOTS` at a time. Create it on the server's hub."""

    def __init__(self, slots: int = HASH_SLOTS, max_waiting: int = MAX_WAITING):
        self._slots = gevent.lock.BoundedSemaphore(slots)
        self._max_waiting = max_waiting
        self._waiting = 0

    def run(self, fn, *args):
        if self._waiting >= self._max_waiting:
            raise Busy()
        self._waiting += 1
        try:
            with self._slots:
                return in_pool(fn, *args)
        finally:
            self._waiting -= 1

    def verify(self, stored: str | None, password: str) -> Verdict:
        return self.run(verify_password, stored, password)

    def hash(self, password: str) -> str:
        return self.run(hash_password, password)
