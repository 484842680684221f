"""Server-side sessions: a random id in a cookie, a row (keyed by the id's SHA-256) in SQLite.

Signing out deletes the row, so the old cookie stops working at once, wherever it was copied. A
session ends after `session_idle` without a request and `session_max` after sign-in, whichever
comes first; changing a user's password or removing the user deletes their rows (`users.py`).
A session is bound to the identity source it was opened under (`identity.identity_source`, as a
personal API token is): the Authenticator takes one of another source for nobody.
`last_seen` is written at most every `touch_every` (a tenth of the idle time, at most a minute),
so an active session costs one read per request and a write now and then.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from dataclasses import dataclass
from functools import partial

from server.auth.proxies import cookie_name, is_secure, mount_path
from server.auth.users import token_hash
from server.events import in_pool, store_call
from server.http_headers import cookie
from server.store import Store

COOKIE = "pushbutton_session"  # + _<port> (proxies.cookie_name)


@dataclass(frozen=True)
class Session:
    user: str
    method: str
    groups: frozenset[str]
    source: str | None  # what named the user when it was opened (identity.py); None: never (older rows)


class Sessions:
    def __init__(self, store: Store, idle: float, max_age: float, on_hub: bool = True):
        self.store = store
        self.idle = idle
        self.max_age = max_age
        self.touch_every = min(60.0, idle / 10)
        self._write = partial(store_call, store) if on_hub else store.call
        self._read = partial(in_pool, store.read) if on_hub else store.read

    def create(self, user: str, method: str, source: str, groups: frozenset[str] = frozenset()) -> str:
        """A new session (a new id at every sign-in) of the identity `source`; returns the cookie value."""
        value = secrets.token_urlsafe(32)
        self._write(_insert, token_hash(value), user, method, source, json.dumps(sorted(groups)), time.time(),
                    self.idle, self.max_age)
        return value

    def get(self, value: str | None, touch: bool = True) -> Session | None:
        """The live session a cookie names; an expired one is deleted and is None."""
        if not value:
            return None
        digest = token_hash(value)
        row = self._read(_select, digest)
        if row is None:
            return None
        user, method, source, groups, created, last_seen = row
        now = time.time()
        if now - last_seen > self.idle or now - created > self.max_age:
            self.store.submit(_delete, digest)
            return None
        if touch and now - last_seen >= self.touch_every:
            self.store.submit(_touch, digest, now)
        return Session(user, method, frozenset(json.loads(groups)), source)

    def delete(self, value: str | None) -> None:
        if value:
            self._write(_delete, token_hash(value))

    # -- the cookie -------------------------------------------------------------------------

    @staticmethod
    def cookie_value(environ: dict) -> str | None:
        return cookie(environ, cookie_name(COOKIE, environ))

    def set_cookie(self, value: str, environ: dict) -> str:
        """The Set-Cookie value, for the app's path (`/` or the base path `/ops/`), `Secure` over
        HTTPS, named `pushbutton_session_<the browser's port>`, `__Host-` before it where it can be
        (`proxies.cookie_name`); the browser may keep it as long as the session can live, the server
        decides when it ends."""
        return (f"{cookie_name(COOKIE, environ)}={value}; Path={mount_path(environ)}; "
                f"Max-Age={max(1, int(self.max_age))}; HttpOnly; SameSite=Lax" + _secure(environ))

    def clear_cookie(self, environ: dict) -> str:
        return (f"{cookie_name(COOKIE, environ)}=; Path={mount_path(environ)}; Max-Age=0; HttpOnly; SameSite=Lax"
                + _secure(environ))


def _secure(environ: dict) -> str:
    return "; Secure" if is_secure(environ) else ""


def _insert(conn: sqlite3.Connection, digest: str, user: str, method: str, source: str, groups: str, now: float,
            idle: float, max_age: float) -> None:
    # Expired rows of anyone go now: nothing else would ever delete a session never used again.
    conn.execute("DELETE FROM sessions WHERE last_seen < ? OR created < ?", (now - idle, now - max_age))
    conn.execute("INSERT INTO sessions (hash, user, method, source, groups, created, last_seen) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)", (digest, user, method, source, groups, now, now))


def _select(conn: sqlite3.Connection, digest: str):
    return conn.execute("SELECT user, method, source, groups, created, last_seen FROM sessions WHERE hash = ?",
                        (digest,)).fetchone()


def _delete(conn: sqlite3.Connection, digest: str) -> None:
    conn.execute("DELETE FROM sessions WHERE hash = ?", (digest,))


def _touch(conn: sqlite3.Connection, digest: str, now: float) -> None:
    conn.execute("UPDATE sessions SET last_seen = MAX(last_seen, ?) WHERE hash = ?", (now, digest))
