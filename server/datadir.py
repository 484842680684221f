"""The data dir is private whatever the umask: the folder 0700, every file Pushbutton makes in it
0600, created with that mode rather than through a process-wide umask, which the desktop window's
process shares. (SQLite gives `-wal` and `-shm` the database's own mode.)"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sqlite3
import stat
from pathlib import Path

log = logging.getLogger("pushbutton")
DB_NAME = "history.sqlite3"
# Everything Pushbutton keeps in a data dir (the desktop window adds its lock and socket).
OWN_FILES = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal", "desktop.lock", "desktop.sock")
OWN_DIRS = ("owners", "runs")


class DataDirError(Exception):
    """The data dir or its history cannot be used: every command says so in one line naming the
    data dir, and exits 2 (cli.main), rather than a traceback or a misleading "cannot listen"."""


def unusable(path: Path, exc: OSError | sqlite3.Error) -> DataDirError:
    """Why the data dir at `path` cannot be used, in words."""
    if isinstance(exc, sqlite3.Error):
        return DataDirError(f"data dir {path}: {DB_NAME}: {exc}")
    if path.exists() and not path.is_dir():
        reason = "not a directory"
    elif not path.exists():
        reason = f"cannot create it: {exc.strerror or exc}"
    else:
        reason = exc.strerror or str(exc)
        if exc.filename and Path(exc.filename) != path:
            reason += f" ({exc.filename})"
    return DataDirError(f"data dir {path}: {reason}")


def require_history(path: Path) -> None:
    """For commands that only make sense on an existing history: a mistyped --data-dir is said,
    not silently made into a new empty history."""
    if not (path / DB_NAME).is_file():
        raise DataDirError(f"no history in {path} (see --data-dir)")


def refuse_root_on_other_users(path: Path, command: list[str], new_history_too: bool = True) -> None:
    """As root, refuse (DataDirError, before anything is written) a data dir whose history, or
    with `new_history_too` the folder before it holds one, belongs to another user: what root
    wrote there (history.sqlite3, runs/, owners/) would be root's, and the service, running as
    that user, could not open it. The error names the owner and the command to run as them."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    history = path / DB_NAME
    try:
        owner = (history if history.exists() or not new_history_too else path).stat().st_uid
    except OSError:
        return  # nothing there yet: root begins it, and it is root's
    if owner == 0:
        return
    try:
        import pwd

        name = pwd.getpwuid(owner).pw_name
    except (ImportError, KeyError):
        name = f"#{owner}"  # sudo -u takes a uid so
    raise DataDirError(f"data dir {path} belongs to {name}, and this runs as root: what it wrote would be root's, "
                       f"which {name} cannot open; run it as {name}: sudo -u {name} {shlex.join(_shown(command))}")


def _shown(command: list[str]) -> list[str]:
    """`command` with what may be a secret replaced by `...`: a token, a run's values (`-p NAME=...`)."""
    shown = []
    for before, word in zip([None, *command], command, strict=False):
        if before == "--token":
            word = "..."
        elif word.startswith("--token="):
            word = "--token=..."
        elif before in ("-p", "--param"):
            word = word.split("=", 1)[0] + "=..."
        elif word.startswith(("-p", "--param=")) and "=" in word[2:]:  # -pNAME=V, --param=NAME=V
            word = word[:word.index("=", 8 if word.startswith("--") else 2)] + "=..."
        shown.append(word)
    return shown


def private_data_dir(path: Path) -> None:
    """Make the data dir 0700 and Pushbutton's files in it 0600, whatever the umask.

    A folder that holds only what Pushbutton keeps there (or nothing) is Pushbutton's and is
    tightened if an older version or a loose umask left it open. A folder the user pointed
    --data-dir at that holds other things too (their home, say) keeps its mode: only
    Pushbutton's own files in it are made private."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    names = set(os.listdir(path))
    if names <= {*OWN_FILES, *OWN_DIRS}:
        private_dir(path)
    elif path.stat().st_mode & 0o077:
        log.warning("%s holds other files and is open to other users: only Pushbutton's own files in it "
                    "are made private", path)
    for name in names & set(OWN_FILES):
        private_mode(path / name, 0o600)
    for name in names & set(OWN_DIRS):
        private_dir(path / name)
        for entry in os.scandir(path / name):
            if entry.is_file(follow_symlinks=False):
                private_mode(Path(entry.path), 0o600)


def private_dir(path: Path) -> None:
    path.mkdir(exist_ok=True, mode=0o700)  # the umask can only narrow 0700
    private_mode(path, 0o700)


def private_file(path: Path, keep_open: bool = False) -> int | None:
    """Create `path` 0600 if missing (an existing one is narrowed); an fd if `keep_open`."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    private_mode(path, 0o600)
    if keep_open:
        return fd
    os.close(fd)
    return None


def private_mode(path: Path, mode: int) -> None:
    """Narrow to `mode`; never widen (a user may have made it tighter still)."""
    try:
        current = path.lstat().st_mode
    except OSError:
        return
    if current & 0o777 & ~mode and not stat.S_ISLNK(current):
        with contextlib.suppress(OSError):  # not ours to change (another user's file)
            os.chmod(path, current & mode & 0o777)
