"""`pushbutton backup FILE`: an online, consistent copy of the history while the server runs.

SQLite's backup API copies the database in one step, inside one read transaction, so the copy is
one consistent moment of the history while the server's writer keeps committing (WAL mode lets
both go on at once). In several steps, every commit between two of them would start the copy
over: a run printing 100 lines a second kept a 270 MB history's backup from ever ending.
The copy is written next to FILE and renamed into place only when it is
whole and passes `PRAGMA integrity_check`: a failed backup never leaves a half file under FILE's
name. Restoring is copying it back while the server is stopped (docs/operations.md).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path

from server.store import DB_NAME


def backup(data_dir: Path, target: Path) -> dict:
    """Copy DATA/history.sqlite3 to `target` (0600); return what was copied."""
    source = Path(data_dir) / DB_NAME
    if not source.is_file():
        raise FileNotFoundError(f"no history at {source}")
    target = Path(target).resolve()
    if target == source.resolve():
        raise ValueError("the backup cannot replace the history it copies")
    if not target.parent.is_dir():  # said of the folder given, not of our hidden partial file in it
        raise FileNotFoundError(f"no folder {target.parent} to write {target.name} in")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    started = time.monotonic()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # private before a byte is in it
    os.close(fd)
    try:
        src = sqlite3.connect(source, timeout=30)  # never written: read transactions only
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # pages=-1: all in one step
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            ok = dst.execute("PRAGMA integrity_check").fetchone()[0]
            runs = dst.execute("SELECT count(*) FROM runs").fetchone()[0]
        finally:
            dst.close()
            src.close()
        if ok != "ok":
            raise RuntimeError(f"the copy failed its integrity check: {ok}")
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return {"file": str(target), "runs": runs, "bytes": target.stat().st_size,
            "seconds": round(time.monotonic() - started, 3)}


def main(data_dir: Path, target: str) -> int:
    try:
        done = backup(data_dir, Path(target))
    except (OSError, ValueError, RuntimeError, sqlite3.Error) as exc:
        print(f"pushbutton: backup failed: {exc}", file=sys.stderr)
        return 1
    print(f"{done['file']}: {done['runs']} run(s), {done['bytes']} bytes, {done['seconds']} s")
    return 0
