"""SQLite history: runs and their numbered events, in the data dir.

All writes go through one writer thread, in order, batched into transactions (store_writer.py):
the gevent hub never waits on the disk or a lock, and a line is committed (WAL, so it survives
`kill -9` of the server) before any client is shown it. Reads use one connection per thread and
are called through the hub's threadpool.

History holds run output, so the data dir is private whatever the umask: the folder 0700, every
file Pushbutton makes in it 0600 (created with that mode, not through a process-wide umask, which
the desktop window's process shares). SQLite gives `-wal` and `-shm` the database's own mode.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from server.auth.schema import SCHEMA as AUTH_SCHEMA
from server.auth.schema import migrate as migrate_auth
from server.datadir import DB_NAME, private_data_dir, unusable
from server.datadir import private_dir as _private_dir
from server.datadir import private_file as _private_file
from server.files import remove_run_folder
from server.store_reads import JSON_COLUMNS, READ_BYTES, RUN_COLUMNS, StoreReads  # noqa: F401 (READ_BYTES, RUN_COLUMNS: re-exported)
from server.store_writer import StoreWriter

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

# `events` is a rowid table (its key is an index beside it): it stores a flood's events of ~250 KB
# each in half the writer's time the WITHOUT ROWID table of databases made before 2026-12-02 takes.
# Those keep theirs: the statements are the same (a one-line event costs ~2 us more this way).
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    exit_code INTEGER,
    progress REAL,
    message TEXT,
    owner TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_job ON runs (job, id);
CREATE INDEX IF NOT EXISTS runs_state ON runs (state, id);
CREATE INDEX IF NOT EXISTS runs_finished ON runs (finished);
CREATE TABLE IF NOT EXISTS events (
    run_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS schedule_cursors (  -- server/schedules.py: the last fire time each dealt with
    name TEXT PRIMARY KEY,
    cursor REAL NOT NULL
);
"""
# An event's data comes as UTF-8 JSON bytes (EventLog.emit) and is kept as TEXT, as it always was:
# the hub never decodes a flood's JSON to a str only for SQLite and the SSE writes to encode it again.
INSERT_EVENTS = "INSERT INTO events (run_id, seq, type, data) VALUES "
EVENT_VALUES = "(?, ?, ?, CAST(? AS TEXT))"
INSERT_EVENT = INSERT_EVENTS + EVENT_VALUES
# Columns added after the first release: (name, SQL type); added to older databases on open.
ADDED_COLUMNS = (("hosts", "TEXT"), ("user", "TEXT"), ("stopped_by", "TEXT"), ("preview", "TEXT"),
                 ("approval", "TEXT"), ("artifacts", "TEXT"))
ACTIVE_STATES = ("queued", "running")
AWAITING = "awaiting_approval"
# Why a run that waited for approval ended `interrupted`: its secrets lived in memory only.
APPROVAL_LOST = "the server restarted before approval; secrets are not kept: request the run again"

log = logging.getLogger("pushbutton")


class Store(StoreWriter, StoreReads):
    def __init__(self, data_dir: str | os.PathLike):
        self.dir = Path(data_dir)
        self.path = self.dir / DB_NAME
        self._local = threading.local()
        conn = None
        try:
            private_data_dir(self.dir)
            _private_file(self.path)  # before SQLite opens it: -wal and -shm inherit its mode
            conn = self._connect()
            conn.executescript(SCHEMA + AUTH_SCHEMA)
            _migrate(conn)
            self.owner = uuid.uuid4().hex[:12]
            self._owner_lock = self._lock(self.owner)
        except (OSError, sqlite3.Error) as exc:  # a file, not a folder; no rights; not a database
            if conn is not None:
                conn.close()
            raise unusable(self.dir, exc) from None
        self._conn = conn
        self._start_writer()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    # -- owners: which process is executing a run -----------------------------------------

    def _lock(self, owner: str):
        """Hold an exclusive lock for as long as this process lives: recovery can then tell a
        run whose executor is gone (lock free) from one another process is still running."""
        locks = self.dir / "owners"
        _private_dir(locks)
        handle = os.fdopen(_private_file(locks / f"{owner}.lock", keep_open=True), "w")
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return handle

    def owner_alive(self, owner: str) -> bool:
        if owner == self.owner:
            return True
        path = self.dir / "owners" / f"{owner}.lock"
        if fcntl is None or not path.exists():
            return False
        try:
            handle = os.fdopen(os.open(path, os.O_WRONLY))  # never creates: no mode to choose
        except FileNotFoundError:
            return False
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
        path.unlink(missing_ok=True)
        return False

    def close(self) -> None:
        """Flush every queued write, then stop the writer."""
        self._stop_writer()
        self._owner_lock.close()
        (self.dir / "owners" / f"{self.owner}.lock").unlink(missing_ok=True)

    # -- write operations (run on the writer thread) ---------------------------------------

    @staticmethod
    def insert_run(conn: sqlite3.Connection, run: dict) -> int:
        cur = conn.execute(
            "INSERT INTO runs (job, state, params, created, owner, hosts, user, preview, approval) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run["job"], run["state"], json.dumps(run["params"]), run["created"], run["owner"],
             json.dumps(run.get("hosts") or []), run.get("user"), json.dumps(run.get("preview")),
             json.dumps(run.get("approval"))),
        )
        return int(cur.lastrowid)

    @staticmethod
    def update_run(conn: sqlite3.Connection, run_id: int, fields: dict) -> None:
        names = ", ".join(f"{k} = ?" for k in fields)
        values = [json.dumps(v) if k in JSON_COLUMNS else v for k, v in fields.items()]
        conn.execute(f"UPDATE runs SET {names} WHERE id = ?", (*values, run_id))

    @staticmethod
    def append_event(conn: sqlite3.Connection, run_id: int, event: tuple[int, str, bytes | str]) -> int:
        """One event: one statement, so alone in a batch it needs no transaction of its own."""
        conn.execute(INSERT_EVENT, (run_id, *event))
        return event[0]

    @staticmethod
    def append_each(conn: sqlite3.Connection, calls: list[tuple[int, tuple[int, str, bytes | str]]]) -> list[int]:
        """`append_event` for each of `calls` (its arguments: run id, event), in one statement."""
        conn.execute(INSERT_EVENTS + ", ".join([EVENT_VALUES] * len(calls)),
                     [value for run_id, event in calls for value in (run_id, *event)])
        return [event[0] for _, event in calls]

    @staticmethod
    def append_events(conn: sqlite3.Connection, run_id: int, events: list[tuple[int, str, bytes | str]]) -> int:
        conn.executemany(
            INSERT_EVENT,
            [(run_id, seq, kind, data) for seq, kind, data in events],
        )
        return events[-1][0]

    @staticmethod
    def _wal_bytes(fn, args) -> int:
        """About what a write adds to the WAL, for the checkpointer (store_writer.py)."""
        if fn is Store.append_event:
            return len(args[1][2])
        if fn is Store.append_events:
            return sum(len(event[2]) for event in args[1])
        return 0

    def recover(self) -> dict[int, str]:
        """Runs left queued, running or awaiting approval by a process that is gone become
        `interrupted`, with an `end` event so a resuming client sees them finish. Returns {run id:
        its owner}."""

        def work(conn: sqlite3.Connection) -> dict[int, str]:
            rows = conn.execute(
                "SELECT id, owner, state FROM runs WHERE state IN (?, ?, ?)", (*ACTIVE_STATES, AWAITING)
            ).fetchall()
            dead = {run_id: (owner, state) for run_id, owner, state in rows if not self.owner_alive(owner)}
            now = time.time()
            for run_id, (_, state) in dead.items():
                message = APPROVAL_LOST if state == AWAITING else "the server stopped while this run was active"
                conn.execute("UPDATE runs SET state = 'interrupted', finished = ?, message = ?, "
                             "approval = CASE WHEN approval IS NULL OR approval = 'null' THEN approval "
                             "ELSE json_set(approval, '$.state', 'interrupted') END WHERE id = ?",
                             (now, message, run_id))
                _interrupt_hosts(conn, run_id)
                record = json.dumps(self._record(conn, run_id))
                last = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?",
                                    (run_id,)).fetchone()[0]
                self.append_events(conn, run_id, [(last + 1, "state", record), (last + 2, "end", record)])
            return {run_id: owner for run_id, (owner, _) in dead.items()}

        return self.call(work)

    def jobs_of(self, run_ids: list[int]) -> list[tuple[int, str]]:
        """(run id, job id) of these runs, by id."""
        marks = ", ".join("?" * len(run_ids))
        return self.call(lambda conn: conn.execute(
            f"SELECT id, job FROM runs WHERE id IN ({marks}) ORDER BY id", run_ids).fetchall())

    def prune(self, retention_days: int) -> int:
        """Delete finished runs, and audit entries, older than the retention period (the audit
        log is kept exactly as long as the runs it speaks of); 0 days keeps everything."""
        if retention_days <= 0:
            return 0
        cutoff = time.time() - retention_days * 86400

        def work(conn: sqlite3.Connection) -> int:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM runs WHERE finished IS NOT NULL AND finished < ?", (cutoff,))]
            for run_id in ids:
                conn.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
                conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            conn.execute("DELETE FROM audit WHERE time < ?", (cutoff,))
            return ids

        ids = self.call(work)
        for run_id in ids:  # once the runs are gone: their files (artifacts) go with them
            remove_run_folder(self.dir, run_id)
        return len(ids)

Store.one_statement = (Store.append_event, Store.update_run)
Store.many = {Store.append_event: Store.append_each}


def _interrupt_hosts(conn: sqlite3.Connection, run_id: int) -> None:
    """A remote run's hosts that were queued, connecting or running end `interrupted` with it."""
    (raw,) = conn.execute("SELECT hosts FROM runs WHERE id = ?", (run_id,)).fetchone()
    hosts = json.loads(raw) if raw else []
    for host in hosts:
        if host.get("state") in (*ACTIVE_STATES, "connecting"):
            host["state"] = "interrupted"
    if hosts:
        conn.execute("UPDATE runs SET hosts = ? WHERE id = ?", (json.dumps(hosts), run_id))


def _migrate(conn: sqlite3.Connection) -> None:
    """Add columns a database made by an older version lacks (SQLite: ALTER TABLE ADD COLUMN)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    for name, kind in ADDED_COLUMNS:
        if name not in have:
            conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
    conn.execute("CREATE INDEX IF NOT EXISTS runs_user ON runs (user, id)")  # history by user
    migrate_auth(conn)
