"""The artifact routes: a run's list of artifacts, and one artifact's download.

Mounted by `make_app` (server/api.py). Both need `run.view` on the run. Only a name in the run's
recorded index is served, opened below the run's artifacts folder with O_NOFOLLOW at every step
(server/files/artifacts.py): an encoded `..`, an absolute path, a symlink the job made or a file
swapped for one after indexing all answer 404. A download is always an attachment of type
`application/octet-stream` (never rendered by the browser), read in chunks on the threadpool.
"""

from __future__ import annotations

import logging
import os
from urllib.parse import quote

from bottle import HTTPResponse
from gevent.lock import BoundedSemaphore

from server.auth import rules as R
from server.events import in_pool, store_call
from server.files import artifacts as A
from server.files import run_path
from server.run_errors import NotFound
from server.run_record import FINAL
from server.store import Store

log = logging.getLogger("pushbutton")
_indexing = BoundedSemaphore()  # one lazy index at a time (runs a crash left unindexed)


def add_routes(app, runs) -> None:
    @app.get("/api/runs/<run_id:int>/artifacts", rule=R.RUN_VIEW)
    def artifacts(run_id: int):
        return {"artifacts": listed(runs, run_id, R.target_run())}

    @app.get("/api/runs/<run_id:int>/artifacts/<path:path>", rule=R.RUN_VIEW)
    def artifact(run_id: int, path: str):
        if not any(entry["name"] == path for entry in listed(runs, run_id, R.target_run())):
            raise NotFound(f"no artifact {path!r} in run {run_id}")
        try:
            fd, size = in_pool(_open, runs.store.dir, run_id, path)
        except OSError:
            raise NotFound(f"no artifact {path!r} in run {run_id}") from None
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size),
                   "Content-Disposition": disposition(path), "X-Content-Type-Options": "nosniff",
                   "Cache-Control": "private, no-store"}
        if size == 0:
            os.close(fd)
            return HTTPResponse(b"", 200, headers)
        return HTTPResponse(FileBody(fd, size), 200, headers)


def listed(runs, run_id: int, record: dict) -> list[dict]:
    """The run's index. A run that ended without one (the server was killed while it ran) is
    indexed now, once: what it wrote is kept, within the caps (its secrets are gone with that
    server's memory, so names are not checked for them). Only a run that started on this machine:
    one that never ran here (cancelled while queued, rejected, expired, a remote job's) has no
    folder of its own, and one of its id is another database's (a data dir reused without it)."""
    if record.get("artifacts") is not None or record["state"] not in FINAL:
        return record.get("artifacts") or []
    if not record.get("started") or record.get("hosts"):
        return []
    with _indexing:
        record = runs.get(run_id)
        if record.get("artifacts") is not None:
            return record["artifacts"]
        store = runs.store

        def work():
            if not os.path.isdir(run_path(store.dir, run_id, A.PART)):
                return None, []
            return A.index(store.dir, run_id, runs.catalog.settings.artifacts,
                           lambda: store.read(A.used_bytes, run_id))

        kept, notes = in_pool(work)
        if kept is None:
            return []
        store_call(store, Store.update_run, run_id, {"artifacts": kept})
        for note in notes:
            log.warning("run %s: %s", run_id, note)
        return kept


def _open(data_dir, run_id: int, name: str) -> tuple[int, int]:
    root = A.open_root(data_dir, run_id)
    if root is None:
        raise FileNotFoundError(name)
    try:
        fd = A.open_file(root, name)
    finally:
        os.close(root)
    return fd, os.fstat(fd).st_size


def disposition(name: str) -> str:
    """`attachment` with the file's own name (RFC 6266: `filename*` in UTF-8, and an ASCII
    fallback for old clients)."""
    base = name.rsplit("/", 1)[-1]
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in base)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(base, safe='')}"


class FileBody:
    """A response body read from a descriptor in chunks on the threadpool (never whole, never
    blocking the hub); closed by the server when the answer ends or the client goes."""

    def __init__(self, fd: int, size: int):
        self.fd: int | None = fd
        self.left = size

    def __iter__(self):
        while self.left > 0 and self.fd is not None:
            chunk = in_pool(os.read, self.fd, min(A.CHUNK, self.left))
            if not chunk:
                break
            self.left -= len(chunk)
            yield chunk
        self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
