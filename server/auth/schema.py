"""The auth tables, in the history database beside runs (one file, one writer, one retention).

Passwords and token values are never stored: argon2id hashes for passwords, SHA-256 for API
tokens and session ids (both random and long, so a fast hash is enough).
"""

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    last_used REAL,
    revoked REAL,
    source TEXT
);
CREATE INDEX IF NOT EXISTS tokens_user ON tokens (user, id);
CREATE TABLE IF NOT EXISTS sessions (
    hash TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    method TEXT NOT NULL,
    groups TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL,
    last_seen REAL NOT NULL,
    source TEXT
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    user TEXT,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    ok INTEGER NOT NULL DEFAULT 1,
    address TEXT,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_time ON audit (time);
CREATE INDEX IF NOT EXISTS audit_user ON audit (user, id);
CREATE INDEX IF NOT EXISTS audit_action ON audit (action, id);
"""


def migrate(conn: sqlite3.Connection) -> None:
    """Columns a database of an older version lacks. A token's `source` (what named its user when it
    was made, server/auth/identity.py) is NULL on older tokens until a server adopts them. A
    session's `source` is not guessed: the older sessions end (a sign-in is cheap to redo; a token
    lives in scripts), so none can outlive a switch of directory or issuer made at the upgrade."""
    if "source" not in _columns(conn, "tokens"):
        conn.execute("ALTER TABLE tokens ADD COLUMN source TEXT")
    if "source" not in _columns(conn, "sessions"):
        conn.execute("ALTER TABLE sessions ADD COLUMN source TEXT")
        conn.execute("DELETE FROM sessions")


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
