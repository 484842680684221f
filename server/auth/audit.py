"""The audit log: who did what, when, from where, and whether it was allowed.

Entries go to the `audit` table beside the runs (same file, same writer thread, same retention:
`Store.prune` deletes both). `record` never waits: it queues the insert on the store's writer, so
a sign-in or a run start never stalls the hub on the disk. There is no update or delete here;
only retention removes entries.

No password, token or secret value is ever written: run parameters arrive already masked (as the
runs table keeps them), callers never pass credentials, and `record` masks any detail key that
names one, as a backstop.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from server.run_record import iso

ACTIONS = ("signin", "signin.failed", "signout", "run.start", "run.rerun", "run.stop", "run.approve",
           "run.reject", "run.expire", "refused",
           "token.create", "token.revoke", "user.add", "user.remove", "user.passwd", "config.reload", "config.error",
           "notify.failed", "schedule.skip")
CREDENTIAL_KEYS = frozenset({"password", "token", "secret", "hash"})
MASK = "********"
MAX_LIMIT = 500
COLUMNS = ("id", "time", "user", "action", "target", "ok", "address", "detail")
RELATIVE_RE = re.compile(r"(?:\d+(?:\.\d+)?[dhms])+")
UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


class Audit:
    def __init__(self, store):
        self.store = store
        # The client address of the request being served, if any (the API sets it); callers
        # that know better pass `address=` themselves.
        self.current_address: Callable[[], str | None] = lambda: None

    def record(self, action: str, user: Any, *, target: str = "", detail: dict | None = None,
               address: str | None = None, ok: bool = True) -> None:
        """Queue one entry; returns at once. `user` is a name (a `User` is taken by its name)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        name = getattr(user, "name", user)
        row = (time.time(), name or None, action, target, int(bool(ok)),
               address if address is not None else self.current_address(),
               json.dumps(_scrub(detail or {}), default=str, ensure_ascii=False))
        self.store.submit_here(_insert, row)

    def query(self, *, user: str | None = None, action: str | None = None, since: float | None = None,
              until: float | None = None, before: int | None = None, limit: int = 100) -> list[dict]:
        """Entries newest first, at most `limit` (up to MAX_LIMIT); `before` an id, for paging.
        A blocking SQLite read: from the hub, call it through the threadpool."""
        where, args = _filters(user, action, since, until)
        if before is not None:
            where.append("id < ?")
            args.append(before)
        limit = max(1, min(MAX_LIMIT, limit))
        return _select(self.store, where, args, "DESC", limit)

    def oldest_first(self, *, user: str | None = None, action: str | None = None,
                     since: float | None = None, until: float | None = None) -> Iterator[dict]:
        """Every matching entry, oldest first, read a page at a time (`pushbutton audit`)."""
        after = 0
        while True:
            where, args = _filters(user, action, since, until)
            page = _select(self.store, [*where, "id > ?"], [*args, after], "ASC", MAX_LIMIT)
            yield from page
            if len(page) < MAX_LIMIT:
                return
            after = page[-1]["id"]


def filters_of(query: Mapping[str, str]) -> dict:
    """`user`, `action`, `since`, `until` from a request's query (empty = no filter), checked:
    raises ValueError for an unknown action or a time that is not one."""
    out = {"user": query.get("user") or None, "action": query.get("action") or None}
    _filters(None, out["action"], None, None)
    for key in ("since", "until"):
        out[key] = parse_time(query[key]) if query.get(key) else None
    return out


def print_log(data_dir: Path, since: str | None, user: str | None, action: str | None) -> int:
    """`pushbutton audit`: matching entries as JSON lines, oldest first; exit 2 on a bad filter
    or a data dir without history."""
    from server.datadir import require_history
    from server.store import Store

    try:
        filters = filters_of({"since": since or "", "user": user or "", "action": action or ""})
    except ValueError as exc:
        print(f"pushbutton: {exc}", file=sys.stderr)
        return 2
    require_history(data_dir)  # a mistyped --data-dir: said (exit 2), nothing made
    store = Store(data_dir)
    try:
        for entry in Audit(store).oldest_first(**filters):
            sys.stdout.write(json.dumps(entry, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `pushbutton audit | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (Python's recipe)
    finally:
        store.close()
    return 0


def parse_time(text: str, now: float | None = None) -> float:
    """A moment as epoch seconds: `1767225600` (epoch seconds), `2026-01-01` or
    `2026-01-01T12:00:00+02:00` (ISO 8601; UTC unless it names an offset), or `7d`, `12h`,
    `1d12h`, `30m` (that long ago). Raises ValueError."""
    text = text.strip()
    if re.fullmatch(r"[0-9]{1,12}(\.[0-9]+)?", text):
        return float(text)
    if RELATIVE_RE.fullmatch(text.lower()):
        ago = sum(float(n) * UNIT_SECONDS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([dhms])", text.lower()))
        return (time.time() if now is None else now) - ago
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: give 2026-01-01, 2026-01-01T12:00:00Z, "
                         "epoch seconds, or an age like 7d or 12h") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _scrub(detail: dict) -> dict:
    """Mask any value under a key that names a credential, however deep."""
    out = {}
    for key, value in detail.items():
        if str(key).lower() in CREDENTIAL_KEYS:
            out[key] = MASK
        elif isinstance(value, dict):
            out[key] = _scrub(value)
        else:
            out[key] = value
    return out


def _filters(user: str | None, action: str | None, since: float | None, until: float | None) -> tuple[list, list]:
    where: list[str] = []
    args: list[Any] = []
    if user:
        where.append("user = ?")
        args.append(user)
    if action:  # one action, or several separated by commas
        wanted = [a.strip() for a in action.split(",")]
        unknown = [a for a in wanted if a not in ACTIONS]
        if unknown:
            raise ValueError(f"unknown action {unknown[0]!r}: the actions are {', '.join(ACTIONS)}")
        where.append(f"action IN ({', '.join('?' * len(wanted))})")
        args.extend(wanted)
    if since is not None:
        where.append("time >= ?")
        args.append(since)
    if until is not None:  # inclusive to the millisecond, as times are shown
        where.append("time < ?")
        args.append(until + 0.001)
    return where, args


def _select(store, where: list[str], args: list, order: str, limit: int) -> list[dict]:
    sql = f"SELECT {', '.join(COLUMNS)} FROM audit"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY id {order} LIMIT ?"
    return [_public(row) for row in store.read(lambda conn: conn.execute(sql, (*args, limit)).fetchall())]


def _public(row: tuple) -> dict:
    entry = dict(zip(COLUMNS, row, strict=True))
    entry["time"] = iso(entry["time"])
    entry["ok"] = bool(entry["ok"])
    entry["detail"] = json.loads(entry["detail"])
    return entry


def _insert(conn: sqlite3.Connection, row: tuple) -> None:
    conn.execute("INSERT INTO audit (time, user, action, target, ok, address, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 row)
