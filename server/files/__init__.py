"""Files that belong to a run: what a user uploads for it, what the job leaves behind for them.

Both live in the run's private folder in the data dir, `DATA/runs/<id>/` (0700, files 0600):
`uploads/` (server/files/uploads.py) and `artifacts/` (server/files/artifacts.py).

A job runs as the server's user and may take its own permissions away (`chmod 000` on a folder
it leaves): what the server reads or removes there is made its owner's again first (`open_at`,
`remove_tree`), never through a symlink, instead of being skipped and left behind for good.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import sys
from pathlib import Path

log = logging.getLogger("pushbutton")

RUNS_DIR = "runs"


def run_path(data_dir, run_id: int, part: str | None = None) -> str:
    """Where `DATA/runs/<id>/` (or its `<part>/`) is, made or not: a string, for the start of a run."""
    folder = os.path.join(data_dir, RUNS_DIR, str(run_id))
    return os.path.join(folder, part) if part else folder


def run_folder(data_dir: Path, run_id: int, part: str) -> Path:
    """`DATA/runs/<id>/<part>/`, created private (0700 whatever the umask)."""
    folder = Path(run_path(data_dir, run_id, part))
    for path in (folder.parent.parent, folder.parent, folder):
        make_private(path)
    return folder


def make_private(folder: Path) -> None:
    """`folder` (its parent exists), 0700 whatever the umask; one that exists is made 0700."""
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o700)


def remove_run_folder(data_dir: Path, run_id: int, part: str | None = None) -> None:
    """Remove a run's folder (or one part of it); nothing there is not an error."""
    remove_tree(run_path(data_dir, run_id, part))


def owner_access(name: str, dir_fd: int | None, is_dir: bool) -> None:
    """Make `name` (below `dir_fd`) its owner's to read (a folder: and to enter and change); not
    through a symlink (OSError then, as for a mode the server may not change)."""
    try:
        os.chmod(name, 0o700 if is_dir else 0o600, dir_fd=dir_fd, follow_symlinks=False)
    except (ValueError, NotImplementedError):  # a symlink: Python refuses, the kernel cannot
        raise PermissionError(f"{name!r} is a symlink") from None


def open_at(name: str, flags: int, dir_fd: int | None = None) -> int:
    """`os.open`, and for an entry its owner may not open (mode 000) its owner's access given
    back first, then opened again (`flags` hold O_NOFOLLOW: a symlink swapped in is not opened)."""
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except PermissionError:
        owner_access(name, dir_fd, bool(flags & os.O_DIRECTORY))
        return os.open(name, flags, dir_fd=dir_fd)


def remove_tree(path: str, dir_fd: int | None = None) -> None:
    """`shutil.rmtree` that also removes folders a job made unreadable or read-only: a step
    refused for permissions gives the folders concerned back to their owner and is tried again,
    once. Nothing there is not an error; what still cannot go is logged."""
    tried: set[str] = set()

    def retry(function, failed: str, exc: BaseException) -> None:
        if isinstance(exc, FileNotFoundError):
            return
        if not isinstance(exc, PermissionError) or failed in tried:
            log.warning("could not remove %s: %s", failed, exc)
            return
        tried.add(failed)
        with contextlib.suppress(OSError):
            owner_access(os.path.dirname(failed) or ".", dir_fd, True)
        try:
            if stat.S_ISDIR(os.lstat(failed, dir_fd=dir_fd).st_mode):
                owner_access(failed, dir_fd, True)
                shutil.rmtree(failed, dir_fd=dir_fd, **handler)
            else:
                os.unlink(failed, dir_fd=dir_fd)
        except OSError as again:
            retry(function, failed, again)

    handler = ({"onexc": retry} if sys.version_info >= (3, 12)
               else {"onerror": lambda function, failed, info: retry(function, failed, info[1])})
    shutil.rmtree(path, dir_fd=dir_fd, **handler)
