"""A run's artifacts: the files a job leaves in `$PB_ARTIFACTS`, kept and served with the run.

Every local run gets an empty private folder, `DATA/runs/<id>/artifacts/` (0700). Once the process
tree is gone, and before the run's end is recorded (so the end record and notifications carry
them), `collect` indexes what is there: regular files only, found with `lstat` and opened with
`O_NOFOLLOW` below a directory descriptor, so a symlink (or a folder swapped for one) never leads
out of the folder. Files over the caps, symlinks and anything else are deleted with a line on the
run's stderr saying so. An entry the job made unreadable (mode 000) is its owner's again before it
is opened (`files.open_at`); one that still cannot be opened is deleted too, and said so. What is
kept is made 0600 and recorded on the run as
`record["artifacts"] = [{"name": "sub/report.csv", "size": N, "sha256": HEX, "modified": ISO}]`;
only names in that index are ever served (server/files/artifact_routes.py), and the folder goes
when the store prunes the run. Remote jobs get no `PB_ARTIFACTS` (docs/files.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from server import files
from server import params as P
from server.catalog_values import non_negative_int, parse_size
from server.events import in_pool
from server.files.ready import ReadyFolders
from server.files.upload_params import show_size as _size

log = logging.getLogger("pushbutton")
PART = "artifacts"
ENV = "PB_ARTIFACTS"
KEYS = ("artifacts_max_files", "artifacts_max_run", "artifacts_max_total")  # [pushbutton] keys
MAX_DEPTH = 32  # folders below PB_ARTIFACTS
MAX_NAME = 1024  # bytes in a name, folders included
CHUNK = 256 * 1024
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO swapped in cannot block
LISTED = 20  # dropped names listed in the run's message


@dataclass
class Limits:
    """`[pushbutton] artifacts_max_*`: per run (files, bytes) and across all runs kept (bytes)."""

    max_files: int = 1000
    max_run: int = 1000**3  # 1GB
    max_total: int = 10 * 1000**3  # 10GB


def setting(limits: Limits, key: str, raw: str) -> None:
    """One `[pushbutton] artifacts_*` key into `limits`; ValueError says what is wrong."""
    if key == "artifacts_max_files":
        limits.max_files = non_negative_int(raw)
    else:
        setattr(limits, key.removeprefix("artifacts_"), parse_size(raw))


def folder(data_dir, run_id: int):
    return files.run_folder(data_dir, run_id, PART)


def prepare(ready: ReadyFolders, run_id: int, remote: bool) -> str | None:
    """The run's empty artifacts folder (its path for `PB_ARTIFACTS`); None for a remote job. One
    made ahead (server/files/ready.py), else made now on the threadpool (not on the hub: a new
    folder costs ext4 0.2-0.8 ms here). If it cannot be made the path is still given: the job's
    writes there fail, they never land elsewhere."""
    if remote:
        return None
    data_dir = ready.store.dir
    if ready.take(run_id):
        return files.run_path(data_dir, run_id, PART)

    def make() -> None:
        files.remove_run_folder(data_dir, run_id, PART)  # a data dir reused without its database
        folder(data_dir, run_id)

    try:
        in_pool(make)
    except OSError:
        log.exception("the artifacts folder of run %s", run_id)
    return files.run_path(data_dir, run_id, PART)


def open_root(data_dir, run_id: int) -> int | None:
    """A descriptor of the run's artifacts folder, or None if it has none."""
    path = files.run_path(data_dir, run_id, PART)
    try:
        return files.open_at(path, DIR_FLAGS)
    except OSError:
        return None


def open_file(root: int, name: str) -> int:
    """A descriptor of the regular file `name` (a/b/c) below `root`, never through a symlink:
    every component is opened with O_NOFOLLOW relative to the one before. OSError otherwise."""
    *folders, base = name.split("/")
    fd = os.dup(root)
    try:
        for part in folders:
            if part in ("", ".", ".."):
                raise FileNotFoundError(name)
            inner = files.open_at(part, DIR_FLAGS, fd)
            os.close(fd)
            fd = inner
        if base in ("", ".", ".."):
            raise FileNotFoundError(name)
        out = files.open_at(base, FILE_FLAGS, fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(out).st_mode):
        os.close(out)
        raise FileNotFoundError(name)
    return out


def collect(runs, run) -> list[dict] | None:
    """Index a run's artifacts once its processes are gone (`Runs._execute`, before its end is
    recorded); what was dropped is said on the run's stderr. None for a remote job."""
    if run.job.targets:
        return None
    store, limits = runs.store, runs.catalog.settings.artifacts
    if empty(store.dir, run.id):  # most jobs leave nothing: no threadpool round trip
        return []
    secrets = P.secret_values(run.job.params, run.values)
    # Runs that ended a moment ago may not have their artifacts in SQLite yet: theirs are counted
    # from memory (`Runs._execute` indexes one run at a time, up to its end record in memory).
    recent = [r for r in runs.ended.values() if r.id != run.id]
    in_memory = sum(a["size"] for r in recent for a in r.record.get("artifacts") or [])
    others = [r.id for r in recent]

    def used() -> int:
        return store.read(used_bytes, run.id, *others) + in_memory

    try:
        kept, notes = in_pool(lambda: index(store.dir, run.id, limits, used, secrets))
    except Exception as exc:  # the run must still end; its files stay for a lazy index (artifact_routes)
        log.exception("indexing the artifacts of run %s", run.id)
        kept, notes = None, [f"pushbutton: artifacts: could not be indexed: {exc}"]
    if notes:
        run.log.emit("output", {"stream": "stderr", "lines": notes})
    return kept


def empty(data_dir, run_id: int) -> bool:
    """Whether the run's artifacts folder holds nothing (a look at its first entry, never through a
    symlink). No folder to open counts as empty, as `index` finds nothing there either; one that
    cannot be read does not, for `index` to say why."""
    root = open_root(data_dir, run_id)
    if root is None:
        return True
    try:
        with os.scandir(root) as entries:
            return next(entries, None) is None
    except OSError:
        return False
    finally:
        os.close(root)


def index(data_dir, run_id: int, limits: Limits, used_bytes_elsewhere: Callable[[], int],
          secrets: list[str] = ()) -> tuple[list[dict], list[str]]:
    """(kept files, notes for the run's stderr). Deletes whatever is not kept: symlinks, special
    files, names that are not UTF-8 or hold a secret value, what cannot be opened even once made
    its owner's, and files beyond the caps (taken in name order). `used_bytes_elsewhere` (a read
    over all history) is asked only when there are files."""
    root = open_root(data_dir, run_id)
    if root is None:
        return [], []
    try:
        found, odd, unreadable = _walk(root)
        used_elsewhere = used_bytes_elsewhere() if found else 0
        hiding = [name for name, _ in found if any(secret in name for secret in secrets)]
        odd += hiding
        kept, over = [], []
        total = 0
        for name, size in sorted(f for f in found if f[0] not in hiding):
            if not (len(kept) < limits.max_files and total + size <= limits.max_run
                    and used_elsewhere + total + size <= limits.max_total):
                over.append(name)
                continue
            try:
                entry = _keep(root, name)
            except OSError:
                unreadable.append(name)
                continue
            if entry is None:  # no longer a lone regular file (a hard link made meanwhile)
                odd.append(name)
                continue
            kept.append(entry)
            total += entry["size"]
        for name in over + odd + unreadable:
            _delete(root, name)
    finally:
        os.close(root)
    notes = []
    if unreadable:
        notes.append(_note(f"{len(unreadable)} not kept: could not be opened, even made readable by "
                           "its owner", [_masked(name, secrets) for name in unreadable]))
    odd = [_masked(name, secrets) for name in odd]
    if odd:
        notes.append(_note(f"{len(odd)} not kept: only regular files with UTF-8 names, at most {MAX_DEPTH} "
                           "folders deep, are artifacts (no symlinks or hard links, no secret values in names)", odd))
    if over:
        caps = (f"{limits.max_files} files and {_size(limits.max_run)} per run, {_size(limits.max_total)} "
                "for all runs kept (artifacts_max_files, artifacts_max_run, artifacts_max_total)")
        notes.append(_note(f"{len(over)} file(s) dropped, over the caps of {caps}", over))
    return kept, notes


def _walk(root: int) -> tuple[list[tuple[str, int]], list[str], list[str]]:
    """(regular files as (name, size), other entries by name, folders that cannot be opened),
    without following a symlink."""
    found, odd, unreadable = [], [], []
    stack = [("", 0)]
    while stack:
        prefix, depth = stack.pop()
        fd = open_file_dir(root, prefix)
        if fd is None:
            unreadable.append(prefix.removesuffix("/"))
            continue
        try:
            for entry in os.scandir(fd):
                name = prefix + entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                    name.encode()
                except (OSError, UnicodeEncodeError):
                    odd.append(name)
                    continue
                if len(name.encode()) > MAX_NAME:
                    odd.append(name)
                elif stat.S_ISDIR(st.st_mode) and depth < MAX_DEPTH:
                    stack.append((name + "/", depth + 1))
                elif stat.S_ISREG(st.st_mode) and st.st_nlink == 1:  # a hard link's other names are not ours
                    found.append((name, st.st_size))
                else:
                    odd.append(name)
        finally:
            os.close(fd)
    return found, odd, unreadable


def open_file_dir(root: int, prefix: str) -> int | None:
    """A descriptor of the folder `a/b/` below root (root itself for ''), through no symlink, made
    0700 (a folder readable but not searchable lists names it cannot stat)."""
    fd = os.dup(root)
    for part in prefix.split("/")[:-1]:
        try:
            inner = files.open_at(part, DIR_FLAGS, fd)
        except OSError:
            os.close(fd)
            return None
        os.close(fd)
        fd = inner
    os.fchmod(fd, 0o700)
    return fd


def _keep(root: int, name: str) -> dict | None:
    """The index entry of a file, made 0600 and hashed through one O_NOFOLLOW descriptor; None if
    it is no longer a lone regular file. OSError if it cannot be opened or read."""
    fd = open_file(root, name)
    try:
        if os.fstat(fd).st_nlink != 1:
            return None
        os.fchmod(fd, 0o600)
        digest, size = hashlib.sha256(), 0
        while chunk := os.read(fd, CHUNK):
            digest.update(chunk)
            size += len(chunk)
        modified = dt.datetime.fromtimestamp(os.fstat(fd).st_mtime, dt.UTC)
    finally:
        os.close(fd)
    return {"name": name, "size": size, "sha256": digest.hexdigest(),
            "modified": modified.isoformat(timespec="seconds").replace("+00:00", "Z")}


def _delete(root: int, name: str) -> None:
    """Remove one entry (a folder with what is in it) below root, never through a symlink."""
    folder_name, _, base = name.rpartition("/")
    parent = open_file_dir(root, folder_name + "/" if folder_name else "")
    if parent is None:
        return
    try:
        if stat.S_ISDIR(os.lstat(base, dir_fd=parent).st_mode):
            files.remove_tree(base, parent)  # a folder the job locked (mode 000) too
        else:
            os.unlink(base, dir_fd=parent)
    except OSError as exc:
        log.warning("could not remove artifact %r: %s", name, exc)
    finally:
        os.close(parent)


def _masked(name: str, secrets: list[str]) -> str:
    for secret in secrets:
        name = name.replace(secret, P.MASK)
    return name


def _note(text: str, names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in sorted(names)[:LISTED])
    more = f" and {len(names) - LISTED} more" if len(names) > LISTED else ""
    return f"pushbutton: artifacts: {text}: {shown}{more}"


def used_bytes(conn, run_id: int, *others: int) -> int:
    """Bytes of artifacts recorded on every run but this one and `others` (a store read)."""
    skip = (run_id, *others)
    row = conn.execute("SELECT COALESCE(SUM(json_extract(a.value, '$.size')), 0) FROM runs, "
                       "json_each(runs.artifacts) AS a WHERE runs.artifacts IS NOT NULL AND runs.id NOT IN "
                       f"({', '.join('?' * len(skip))})", skip).fetchone()
    return int(row[0])
