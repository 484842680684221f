"""Files that belong to a run: what a user uploads for it, what the job leaves behind for them.

Both live in the run's private folder in the data dir, `DATA/runs/<id>/` (0700, files 0600):
`uploads/` (server/files/uploads.py) and `artifacts/` (server/files/artifacts.py).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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
    shutil.rmtree(run_path(data_dir, run_id, part), ignore_errors=True)
