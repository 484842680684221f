"""Reads of the SQLite history (runs and their events), on any thread: one read-only connection
per thread, called from the hub through its threadpool. A mixin of `Store`, which writes."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

RUN_COLUMNS = ("id", "job", "state", "params", "created", "started", "finished", "exit_code",
               "progress", "message", "hosts", "user", "stopped_by", "preview", "approval", "artifacts")
JSON_COLUMNS = ("params", "hosts", "preview", "approval", "artifacts")
READ_BYTES = 1024 * 1024  # the most event data one read returns (at least one event)


class StoreReads:
    """Needs `self._local` (a threading.local) and `self._connect()` from the class using it."""

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
        return conn

    @staticmethod
    def _record(conn: sqlite3.Connection, run_id: int) -> dict | None:
        row = conn.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _row_to_run(row) if row else None

    def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(conn, *args)` on this thread's read-only connection (the auth tables' reads)."""
        return fn(self._reader(), *args)

    def run(self, run_id: int) -> dict | None:
        return self._record(self._reader(), run_id)

    def runs(self, job: str | None = None, state: str | None = None, limit: int = 50,
             before: int | None = None, user: str | None = None, jobs: set[str] | None = None) -> list[dict]:
        """Newest first; `jobs`: only runs of these jobs (None: of every job, removed ones too)."""
        if jobs is not None and not jobs:
            return []
        where, args = [], []
        for column, value in (("job", job), ("state", state), ("user", user)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if jobs is not None:
            where.append(f"job IN ({', '.join('?' * len(jobs))})")
            args.extend(sorted(jobs))
        if before:
            where.append("id < ?")
            args.append(before)
        sql = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        return [_row_to_run(r) for r in self._reader().execute(sql, (*args, limit))]

    def last_runs(self) -> dict[str, dict]:
        """The newest finished run of each job, for the job list."""
        rows = self._reader().execute(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE id IN "
            "(SELECT MAX(id) FROM runs WHERE finished IS NOT NULL GROUP BY job)")
        return {r[1]: _row_to_run(r) for r in rows}

    def events(self, run_id: int, after: int, limit: int = 200,
               kind: str | None = None) -> list[tuple[int, str, bytes]]:
        """Events with seq > after, in order, their data as UTF-8 JSON bytes (what the SSE streams
        write); only one type if `kind` is given. At most READ_BYTES
        of data (but at least one event): a reader far behind a flood must not hold 200 events of
        256 KiB each at once, and a client that stops reading holds only what it was given."""
        if kind is None:
            sql, args = "", ()
        else:
            sql, args = " AND type = ?", (kind,)
        cursor = self._reader().execute(
            f"SELECT seq, type, CAST(data AS BLOB) FROM events WHERE run_id = ? AND seq > ?{sql} ORDER BY seq LIMIT ?",
            (run_id, after, *args, limit),
        )
        rows, size = [], 0
        for row in cursor:  # stepped row by row: the rest is never read
            rows.append(row)
            size += len(row[2])
            if size >= READ_BYTES:
                break
        cursor.close()
        return rows


def _row_to_run(row: tuple) -> dict:
    run = dict(zip(RUN_COLUMNS, row, strict=True))
    for name in JSON_COLUMNS:  # null in rows from before the column existed: [] for hosts, else None
        run[name] = json.loads(run[name]) if run[name] else ([] if name == "hosts" else None)
    return run
