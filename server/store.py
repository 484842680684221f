"""SQLite history: runs and their numbered events, in the data dir.

All writes go through one writer thread, in order, batched into transactions: the gevent hub never
waits on the disk, and a line is committed (WAL, so it survives `kill -9` of the server) before any
client is shown it. Reads use one connection per thread and are called through the hub's
threadpool.

History holds run output, so the data dir is private whatever the umask: the folder 0700, every
file Pushbutton makes in it 0600 (created with that mode, not through a process-wide umask, which
the desktop window's process shares). SQLite gives `-wal` and `-shm` the database's own mode.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from server.auth.schema import SCHEMA as AUTH_SCHEMA
from server.datadir import DB_NAME, private_data_dir
from server.datadir import private_dir as _private_dir
from server.datadir import private_file as _private_file
from server.files import remove_run_folder
from server.store_reads import JSON_COLUMNS, READ_BYTES, RUN_COLUMNS, StoreReads  # noqa: F401 (READ_BYTES, RUN_COLUMNS: re-exported)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

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
) WITHOUT ROWID;
"""
# Columns added after the first release: (name, SQL type); added to older databases on open.
ADDED_COLUMNS = (("hosts", "TEXT"), ("user", "TEXT"), ("stopped_by", "TEXT"), ("preview", "TEXT"),
                 ("approval", "TEXT"), ("artifacts", "TEXT"))
ACTIVE_STATES = ("queued", "running")
AWAITING = "awaiting_approval"
# Why a run that waited for approval ended `interrupted`: its secrets lived in memory only.
APPROVAL_LOST = "the server restarted before approval; secrets are not kept: request the run again"

log = logging.getLogger("pushbutton")
Callback = Callable[[Any, BaseException | None], None]


class Store(StoreReads):
    def __init__(self, data_dir: str | os.PathLike):
        self.dir = Path(data_dir)
        private_data_dir(self.dir)
        self.path = self.dir / DB_NAME
        _private_file(self.path)  # before SQLite opens it: -wal and -shm inherit its mode
        self._local = threading.local()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._soon: list = []  # submit_soon's items, not yet handed to the writer
        self._soon_lock = threading.Lock()  # `submit` from another thread hands them over too
        self._soon_due = False
        self._pending = 0  # items handed to the writer and not yet done (under _soon_lock)
        self._hub_conn: sqlite3.Connection | None = None  # `_inline`'s
        self._inlined = 0
        self.on_commit: Callable[[float], None] | None = None  # seconds each batch took (metrics)
        self._conn = self._connect()
        self._conn.executescript(SCHEMA + AUTH_SCHEMA)
        _migrate(self._conn)
        self.owner = uuid.uuid4().hex[:12]
        self._owner_lock = self._lock(self.owner)
        self._writer = threading.Thread(target=self._write_loop, name="pushbutton-store", daemon=True)
        self._writer.start()

    def _connect(self, timeout: float = 30) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=timeout)
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

    def _owner_alive(self, owner: str) -> bool:
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

    # -- writes: queued, in order, one transaction per batch --------------------------------

    def submit(self, fn: Callable[..., Any], *args: Any, callback: Callback | None = None) -> None:
        """Run `fn(conn, *args)` on the writer thread; `callback(result, error)` runs there too.
        After whatever `submit_soon` holds: writes keep the order they were asked in."""
        with self._soon_lock:
            self._send_soon_locked()
            self._put((fn, args, callback))

    def submit_soon(self, loop, fn: Callable[..., Any], *args: Any, callback: Callback | None = None) -> None:
        """`submit`, from the gevent hub's thread, handed to the writer once per iteration of
        `loop`, just before it polls: the writer then wakes while the hub sleeps. Woken at each
        put, it fought the hub for the GIL while the hub was still at work (several GIL handovers
        per event of a slow stream), and the events of one iteration now make one put.
        A lone small event while the writer is idle is stored by the hub itself (`_inline`)."""
        with self._soon_lock:
            self._soon.append((fn, args, callback))
        if not self._soon_due:
            self._soon_due = True
            loop.run_callback(self._hand_over)

    def _hand_over(self) -> None:
        self._soon_due = False
        with self._soon_lock:
            if len(self._soon) == 1 and self._inline(self._soon[0]):
                self._soon = []
                return
            self._send_soon_locked()

    def _send_soon_locked(self) -> None:
        """Any thread, under `_soon_lock`: an item the hub adds meanwhile waits for the next hand-over."""
        if self._soon:
            items, self._soon = self._soon, []
            self._put(items)

    def _put(self, item) -> None:
        self._pending += 1  # under _soon_lock
        self._queue.put(item)

    def _inline(self, item) -> bool:
        """Store one small event on the hub's thread, under `_soon_lock`, when the writer has
        nothing in hand (so order is kept). A slow stream's line otherwise costs two thread
        switches (to the writer and back), most of its CPU. Only what cannot wait: its own
        connection never waits for a lock (busy timeout 0) nor checkpoints (the writer does, every
        CHECKPOINT_EVERY of these); if SQLite refuses (locked, disk full), the writer takes the
        event the usual way, with its timeout and its error reporting. True if stored."""
        fn, args, callback = item
        if fn is not Store.append_event or self._pending or len(args[1][2]) > INLINE_BYTES:
            return False
        if self._hub_conn is None:
            self._hub_conn = self._connect(timeout=0)
            self._hub_conn.execute("PRAGMA wal_autocheckpoint=0")
        began = time.perf_counter()
        try:
            result = fn(self._hub_conn, *args)
        except sqlite3.Error:
            return False
        if self.on_commit is not None:
            self.on_commit(time.perf_counter() - began)
        self._inlined += 1
        if self._inlined % CHECKPOINT_EVERY == 0:
            self._put(CHECKPOINT)
        if callback is not None:
            callback(result, None)
        return True

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Blocking write, for start-up and for threads that may block."""
        done = threading.Event()
        box: list = []
        self.submit(fn, *args, callback=lambda r, e: (box.append((r, e)), done.set()))
        done.wait()
        result, error = box[0]
        if error is not None:
            raise error
        return result

    def _write_loop(self) -> None:
        stop = False
        while not stop:
            batch: list = []
            checkpoint = False
            item = self._queue.get()
            got = 1
            while True:  # an item, a list of them (`submit_soon`), or None: stop after these
                if item is None:
                    stop = True
                elif item is CHECKPOINT:
                    checkpoint = True
                elif type(item) is list:
                    batch += item
                else:
                    batch.append(item)
                if len(batch) >= 500:
                    break
                try:
                    item = self._queue.get_nowait()
                    got += 1
                except queue.Empty:
                    break
            if batch:
                self._run_batch(batch)
            if checkpoint:
                with contextlib.suppress(sqlite3.Error):  # busy or full: the next one catches up
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            with self._soon_lock:
                self._pending -= got
        self._conn.close()

    def _run_batch(self, batch: list) -> None:
        """One transaction. If it fails (a full disk, say), each item alone, so what fits is stored
        and each failed item's caller hears why; a database locked past the busy timeout fails them
        all at once. The writer never dies of a write: that would leave every run waiting forever."""
        began = time.perf_counter()
        try:
            results = self._transaction(batch)
        except sqlite3.Error as exc:
            self._rollback()
            results = [] if _may_fit_alone(exc) else [(item[2], None, exc) for item in batch]
            for item in batch if _may_fit_alone(exc) else ():
                try:
                    results.extend(self._transaction([item]))
                except sqlite3.Error as error:
                    self._rollback()
                    results.append((item[2], None, error))
        else:
            if self.on_commit is not None:
                self.on_commit(time.perf_counter() - began)
        for callback, result, error in results:
            if callback is not None:
                callback(result, error)

    def _transaction(self, batch: list) -> list:
        if len(batch) == 1 and batch[0][0] in ONE_STATEMENT:  # atomic alone: no BEGIN and COMMIT
            fn, args, callback = batch[0]
            try:
                return [(callback, fn(self._conn, *args), None)]
            except Exception as exc:
                return [(callback, None, exc)]
        if len(batch) == 1:  # alone, the transaction is the item's savepoint: 2 statements fewer per event
            fn, args, callback = batch[0]
            self._conn.execute("BEGIN")
            try:
                result = fn(self._conn, *args)
            except Exception as exc:  # as a failed item of a batch: undone, its caller told
                self._rollback()
                return [(callback, None, exc)]
            self._conn.execute("COMMIT")
            return [(callback, result, None)]
        results = []
        self._conn.execute("BEGIN")
        for fn, args, callback in batch:
            self._conn.execute("SAVEPOINT item")
            try:
                results.append((callback, fn(self._conn, *args), None))
                self._conn.execute("RELEASE item")
            except Exception as exc:  # one bad item must not lose the batch
                self._conn.execute("ROLLBACK TO item")
                self._conn.execute("RELEASE item")
                results.append((callback, None, exc))
        self._conn.execute("COMMIT")
        return results

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                self._conn.execute("ROLLBACK")

    def close(self) -> None:
        """Flush every queued write, then stop the writer."""
        if self._writer.is_alive():
            with self._soon_lock:
                self._send_soon_locked()
                self._put(None)
            self._writer.join()
        if self._hub_conn is not None:
            self._hub_conn.close()
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
    def append_event(conn: sqlite3.Connection, run_id: int, event: tuple[int, str, str]) -> int:
        """One event: one statement, so alone in a batch it needs no transaction of its own."""
        conn.execute("INSERT INTO events (run_id, seq, type, data) VALUES (?, ?, ?, ?)", (run_id, *event))
        return event[0]

    @staticmethod
    def append_events(conn: sqlite3.Connection, run_id: int, events: list[tuple[int, str, str]]) -> int:
        conn.executemany(
            "INSERT INTO events (run_id, seq, type, data) VALUES (?, ?, ?, ?)",
            [(run_id, seq, kind, data) for seq, kind, data in events],
        )
        return events[-1][0]

    def recover(self) -> dict[int, str]:
        """Runs left queued, running or awaiting approval by a process that is gone become
        `interrupted`, with an `end` event so a resuming client sees them finish. Returns {run id:
        its owner}."""

        def work(conn: sqlite3.Connection) -> dict[int, str]:
            rows = conn.execute(
                "SELECT id, owner, state FROM runs WHERE state IN (?, ?, ?)", (*ACTIVE_STATES, AWAITING)
            ).fetchall()
            dead = {run_id: (owner, state) for run_id, owner, state in rows if not self._owner_alive(owner)}
            now = time.time()
            for run_id, (_, state) in dead.items():
                message = APPROVAL_LOST if state == AWAITING else "the server stopped while this run was active"
                conn.execute("UPDATE runs SET state = 'interrupted', finished = ?, message = ? "
                             "WHERE id = ?", (now, message, run_id))
                _interrupt_hosts(conn, run_id)
                record = json.dumps(self._record(conn, run_id))
                last = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?",
                                    (run_id,)).fetchone()[0]
                self.append_events(conn, run_id, [(last + 1, "state", record), (last + 2, "end", record)])
            return {run_id: owner for run_id, (owner, _) in dead.items()}

        return self.call(work)

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

ONE_STATEMENT = (Store.append_event,)
INLINE_BYTES = 8 * 1024  # an event's JSON up to this size may be stored by the hub (`_inline`)
CHECKPOINT_EVERY = 500  # events stored by the hub between two checkpoints by the writer
# The writer's queue item asking for what SQLite does at a commit once the WAL is long
# (`wal_autocheckpoint`): the hub's own commits skip it, as it can take a while.
CHECKPOINT = "checkpoint"  # atomic on their own: alone, they skip BEGIN and COMMIT


def _may_fit_alone(error: sqlite3.Error) -> bool:
    """Whether items of a failed batch are worth trying one by one: not when the database is
    locked (each try would wait out the busy timeout again), yes when, say, the disk is full."""
    return getattr(error, "sqlite_errorcode", None) not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


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
