"""Local accounts and personal API tokens, in the history database (tables in `schema.py`).

Writes go through the store's one writer thread; in the server they are awaited through the hub's
threadpool (`store_call`), in the CLI directly. Only hashes are kept: argon2id for passwords
(made by `passwords.py`), SHA-256 for tokens, which are 256 random bits and so need no slow
hash. A token's value is shown once, when it is made, and the token is bound to the identity
source it was made under (`identity.identity_source`): the server refuses one of another source.
Changing a password or removing a user ends that user's sessions at once; removing a user also
revokes their tokens.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from functools import partial

from server.catalog_access import USER_RE
from server.events import in_pool, store_call
from server.run_record import iso
from server.store import Store

TOKEN_PREFIX = "pb_"
MAX_NAME = 64
MAX_TOKEN_NAME = 100
TOUCH_EVERY = 60.0  # a token's last_used is written at most this often


class UserError(ValueError):
    """A refused account or token change; the message says why."""


def token_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_token_value() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def is_stale(made: str | None, source: str) -> bool:
    """Whether a token made under the identity source `made` is refused by a server of `source`. An
    older version's token (None) is not: the next server to start adopts it. `Users.list` counts
    in SQL by the same rule."""
    return made is not None and made != source


def check_name(name: str) -> str:
    if not USER_RE.match(name) or len(name) > MAX_NAME:
        raise UserError(f"{name!r} is not a user name: up to {MAX_NAME} letters, digits and . _ @ + - "
                        "(not starting with . @ + -)")
    return name


class Users:
    """Accounts and tokens. `on_hub`: called from greenlets of the server (reads and writes go
    through the threadpool); otherwise (the CLI) called from a plain thread."""

    def __init__(self, store: Store, on_hub: bool = True):
        self.store = store
        self._write = partial(store_call, store) if on_hub else store.call
        self._read = partial(in_pool, store.read) if on_hub else store.read
        self._touched: dict[int, float] = {}  # token id -> when last_used was last written

    # -- accounts ---------------------------------------------------------------------------

    def add(self, name: str, password_hash: str) -> None:
        check_name(name)
        if not self._write(_add, name, password_hash, time.time()):
            raise UserError(f"user {name!r} exists already (change the password with `users passwd`)")

    def set_hash(self, name: str, password_hash: str, end_sessions: bool = True) -> None:
        """A new password ends every session of the user; a rehash of the same one does not."""
        if not self._write(_set_hash, name, password_hash, time.time(), end_sessions):
            raise UserError(f"no user {name!r}")

    def remove(self, name: str) -> None:
        if not self._write(_remove, name, time.time()):
            raise UserError(f"no user {name!r}")

    def password_hash(self, name: str) -> str | None:
        row = self._read(_one, "SELECT hash FROM users WHERE name = ?", name)
        return row[0] if row else None

    def exists(self, name: str) -> bool:
        return self.password_hash(name) is not None

    def known(self, name: str) -> bool:
        """A local account, or a name tokens were ever made for (auth = header, ldap, oidc users
        have no account here)."""
        return self.exists(name) or self._read(_one, "SELECT 1 FROM tokens WHERE user = ? LIMIT 1", name) is not None

    def list(self, source: str) -> list[dict]:
        """The accounts, each with its count of live tokens and how many of those are stale: made
        under another identity source than `source` (refused there; `all_tokens` lists them)."""
        rows = self._read(_all, "SELECT u.name, u.created, u.updated, COUNT(t.id), "
                                "COALESCE(SUM(t.source IS NOT NULL AND t.source <> ?), 0) FROM users u "
                                "LEFT JOIN tokens t ON t.user = u.name AND t.revoked IS NULL "
                                "GROUP BY u.name ORDER BY u.name", source)
        return [{"user": n, "created": iso(c), "updated": iso(u), "tokens": t, "stale": st}
                for n, c, u, t, st in rows]

    # -- personal API tokens ----------------------------------------------------------------

    def create_token(self, user: str, name: str, source: str) -> tuple[int, str]:
        """A new token for `user`, bound to the identity `source` it is made under (identity.py):
        (id, value). The value is never stored nor shown again."""
        name = " ".join(name.split())
        if not name or len(name) > MAX_TOKEN_NAME or not name.isprintable():
            raise UserError(f"a token needs a name of 1 to {MAX_TOKEN_NAME} printable characters")
        value = new_token_value()
        token_id = self._write(_insert_token, user, name, token_hash(value), time.time(), source)
        return token_id, value

    def tokens(self, user: str, source: str) -> list[dict]:
        """The user's live tokens of `source`, without their values (which are not kept)."""
        rows = self._read(_all, "SELECT id, name, created, last_used FROM tokens "
                                "WHERE user = ? AND revoked IS NULL AND source = ? ORDER BY id", user, source)
        return [{"id": i, "name": n, "created": iso(c), "last_used": iso(lu)} for i, n, c, lu in rows]

    def all_tokens(self, user: str) -> list[dict]:
        """The user's live tokens of every source (`pushbutton users tokens`), with their source;
        one is stale where `is_stale` says so."""
        rows = self._read(_all, "SELECT id, name, source FROM tokens WHERE user = ? AND revoked IS NULL "
                                "ORDER BY id", user)
        return [{"id": i, "name": n, "source": s} for i, n, s in rows]

    def revoke_token(self, user: str, token_id: int, source: str | None = None) -> bool:
        """False if the user has no such live token (of `source`, when given: the page revokes only
        tokens of the server's own source; another user's token is not theirs to revoke)."""
        return self._write(_revoke, user, token_id, time.time(), source)

    def adopt_tokens(self, source: str) -> int:
        """Bind the tokens an older version made, which name no source, to `source` (the server's,
        at start-up): they were made under the `auth` it runs with, unless ops switched at the upgrade."""
        return self._write(_adopt, source)

    def token_owner(self, value: str, touch: bool = True) -> tuple[int, str, str | None] | None:
        """(token id, user, source) of a live token; notes its use at most once a minute, without
        waiting. Whether its source is the server's is for the caller to say."""
        if not value.startswith(TOKEN_PREFIX):
            return None
        row = self._read(_one, "SELECT id, user, source FROM tokens WHERE hash = ? AND revoked IS NULL",
                         token_hash(value))
        if row is None:
            return None
        now = time.monotonic()
        if touch and now - self._touched.get(row[0], -TOUCH_EVERY) >= TOUCH_EVERY:
            self._touched[row[0]] = now
            self.store.submit(_touch_token, row[0], time.time())
        return row[0], row[1], row[2]


# -- on the writer thread / a reader connection ----------------------------------------------

def _one(conn: sqlite3.Connection, sql: str, *args):
    return conn.execute(sql, args).fetchone()


def _all(conn: sqlite3.Connection, sql: str, *args):
    return conn.execute(sql, args).fetchall()


def _add(conn: sqlite3.Connection, name: str, password_hash: str, now: float) -> bool:
    cur = conn.execute("INSERT OR IGNORE INTO users (name, hash, created, updated) VALUES (?, ?, ?, ?)",
                       (name, password_hash, now, now))
    return cur.rowcount == 1


def _set_hash(conn: sqlite3.Connection, name: str, password_hash: str, now: float, end_sessions: bool) -> bool:
    cur = conn.execute("UPDATE users SET hash = ?, updated = ? WHERE name = ?", (password_hash, now, name))
    if cur.rowcount and end_sessions:
        conn.execute("DELETE FROM sessions WHERE user = ?", (name,))
    return cur.rowcount == 1


def _remove(conn: sqlite3.Connection, name: str, now: float) -> bool:
    cur = conn.execute("DELETE FROM users WHERE name = ?", (name,))
    conn.execute("DELETE FROM sessions WHERE user = ?", (name,))
    conn.execute("UPDATE tokens SET revoked = ? WHERE user = ? AND revoked IS NULL", (now, name))
    return cur.rowcount == 1


def _insert_token(conn: sqlite3.Connection, user: str, name: str, digest: str, now: float, source: str) -> int:
    cur = conn.execute("INSERT INTO tokens (user, name, hash, created, source) VALUES (?, ?, ?, ?, ?)",
                       (user, name, digest, now, source))
    return int(cur.lastrowid)


def _revoke(conn: sqlite3.Connection, user: str, token_id: int, now: float, source: str | None) -> bool:
    cur = conn.execute("UPDATE tokens SET revoked = ? WHERE id = ? AND user = ? AND revoked IS NULL "
                       "AND (? IS NULL OR source = ?)", (now, token_id, user, source, source))
    return cur.rowcount == 1


def _adopt(conn: sqlite3.Connection, source: str) -> int:
    return conn.execute("UPDATE tokens SET source = ? WHERE source IS NULL", (source,)).rowcount


def _touch_token(conn: sqlite3.Connection, token_id: int, now: float) -> None:
    conn.execute("UPDATE tokens SET last_used = ? WHERE id = ?", (now, token_id))
