"""A start request's files: multipart/form-data streamed to disk, never held in memory.

Why not Bottle's `request.files`: its first touch reads the whole body (spooling to a temp file)
and then copies each part again; several small parts can hit its memory limit, and it bounds no
size. Here `wsgi.input` is read in chunks into `multipart`'s sans-IO `PushMultipartParser`
(bounded headers and part count); each file part goes straight to a 0600 file under a random
name in a private staging folder (`DATA/runs/incoming/<owner>/<random>/`, 0700), hashed as it
arrives and cut off at its parameter's `max_size`. Whatever goes wrong (too large, refused, the
client gone), the staging folder is removed; a run that starts takes its files into its own
folder (`adopt`), which is removed once its end is stored (`attach`). <owner> is the store's
owner, as for ready folders (server/files/ready.py): a server removes only the staging of servers
that are gone, never an upload another live server on the same data dir is still receiving
(however long it has been arriving).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from bottle import HTTPResponse
from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

from server import params as P
from server.catalog import Job
from server.events import in_pool
from server.files import RUNS_DIR, remove_run_folder, run_folder
from server.files.upload_params import JSON_PART, Upload, accepted, clean_name, show_size
from server.preview import preview
from server.store import Store

log = logging.getLogger("pushbutton")
STAGING = "incoming"  # DATA/runs/incoming/<owner>/<random>/: not a run id, so no run's folder
CHUNK = 64 * 1024
MAX_JSON = 1024 * 1024  # the `json` part: as much as a JSON-only body may carry (api.MAX_BODY)
OVERHEAD = 64 * 1024  # boundaries and part headers, on top of the parts' own limits
NO_ROOM = (errno.ENOSPC, errno.EDQUOT)  # the data dir's disk (or the server user's quota) is full


def _refuse(status: int, message: str, fields: dict[str, str] | None = None) -> HTTPResponse:
    """An answer sent before the body was read to its end: the connection closes after it."""
    body = {"error": message, **({"fields": fields} if fields else {})}
    return HTTPResponse(json.dumps(body), status, {"Content-Type": "application/json", "Connection": "close"})


@contextlib.contextmanager
def received(environ: dict, job: Job, store: Store, json_body: Callable[[bytes | None], dict]) -> Iterator[dict]:
    """The request's body as `{"params": {...}, "confirm": ...}`, with an `Upload` as the value of
    each file parameter sent. JSON bodies go to `json_body(None)` as before; multipart ones are
    streamed, their `json` part parsed by `json_body(raw)`. Files not adopted by a run by the end
    of the `with` block are removed."""
    kind, options = parse_options_header(environ.get("CONTENT_TYPE", ""))
    if kind != "multipart/form-data":
        yield json_body(None)
        return
    staging = Path(store.dir).absolute() / RUNS_DIR / STAGING / store.owner / secrets.token_hex(16)
    for path in (staging.parents[2], staging.parents[1], staging.parent, staging):
        path.mkdir(mode=0o700, exist_ok=True)
    try:
        yield _Reader(environ, job, staging, json_body).read(options.get("boundary", ""))
    finally:
        in_pool(shutil.rmtree, staging, True)


class _Reader:
    """One multipart body: parts in, a body dict out, or an HTTPResponse raised."""

    def __init__(self, environ: dict, job: Job, staging: Path, json_body: Callable[[bytes | None], dict]):
        self.environ = environ
        self.job_id = job.id
        self.files = {p.name: p for p in job.params if p.type == "file"}
        self.parts = len(job.params) + 2  # the json part, a file per parameter, and one to refuse by name
        self.staging = staging
        self.json_body = json_body
        self.raw_json = b""
        self.json_seen = False
        self.uploads: dict[str, Upload | None] = {}

    def read(self, boundary: str) -> dict:
        try:
            length = int(self.environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        most = sum(p.max_size for p in self.files.values()) + MAX_JSON + OVERHEAD
        if length > most:
            raise _refuse(413, f"the request is larger than this job's files may be ({show_size(most)})")
        if not boundary:
            raise _refuse(400, "multipart/form-data needs a boundary")
        stream = self.environ["wsgi.input"]
        try:
            parser = PushMultipartParser(boundary, length, max_segment_count=self.parts)
            with parser:
                while not parser.closed:
                    chunk = stream.read(CHUNK)  # b"" at the end, or when the client left: the parser knows which
                    for event in parser.parse(chunk):
                        self._event(event)
                    if not chunk and not parser.closed:
                        raise _refuse(400, "the upload ended before it was complete")
        except MultipartError as exc:
            raise _refuse(413 if exc.http_status == 413 else 400, f"bad multipart body: {exc}") from None
        except (OSError, ValueError) as exc:  # reset, cut short, or no data within the connection's timeout
            if getattr(exc, "errno", None) in NO_ROOM:  # a write's, not the client's fault: the operator's to fix
                log.warning("an upload for job %s was refused: no room in the data dir (%s)", self.job_id, exc)
                raise _refuse(507, "the server has no room for this upload: its disk is full") from None
            raise _refuse(400, "the upload was not complete") from None
        finally:
            with contextlib.suppress(OSError):  # after a failed write: the staging folder goes anyway
                self._close_part()
        body = self.json_body(self.raw_json) if self.raw_json else {"params": {}}
        body["params"] = {**body.get("params", {}), **self.uploads}
        return body

    # -- one part at a time ------------------------------------------------------------------

    _part: MultipartSegment | None = None
    _file = None
    _hash = None
    _path: Path | None = None

    def _event(self, event) -> None:
        if isinstance(event, MultipartSegment):
            self._start_part(event)
        elif event is None:
            self._end_part()
        else:
            self._data(bytes(event))

    def _start_part(self, part: MultipartSegment) -> None:
        self._part = part
        name = part.name
        if name in self.uploads or (name == JSON_PART and self.json_seen):
            raise _refuse(400, f"part {name!r} was sent twice")
        if name == JSON_PART:
            self.json_seen = True
            return
        if name not in self.files:
            raise _refuse(400, "invalid parameters", {name: "not a file parameter: send its value in the json part"})
        p = self.files[name]
        if not part.filename:  # a form's file input left empty
            self.uploads[name] = None
            return
        user_name = clean_name(part.filename)
        if not accepted(p.accept, user_name):
            raise _refuse(400, "invalid parameters", {name: "must be one of: " + ", ".join(p.accept)})
        self._path = self.staging / secrets.token_hex(16)
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.uploads[name] = Upload(user_name, 0, "", self._path)

    def _data(self, data: bytes) -> None:
        part = self._part
        if part.name == JSON_PART:
            if len(self.raw_json) + len(data) > MAX_JSON:
                raise _refuse(413, "the json part is too large")
            self.raw_json += data
            return
        upload = self.uploads.get(part.name)
        if upload is None:
            if data:
                raise _refuse(400, "invalid parameters", {part.name: "a file needs a name"})
            return
        upload.size += len(data)
        limit = self.files[part.name].max_size
        if upload.size > limit:
            raise _refuse(413, "invalid parameters", {part.name: f"larger than the {show_size(limit)} allowed"})
        self._hash.update(data)
        self._file.write(data)

    def _end_part(self) -> None:
        upload = self.uploads.get(self._part.name) if self._part is not None else None
        if upload is not None and self._hash is not None:
            upload.sha256 = self._hash.hexdigest()
        self._close_part()
        self._part = None

    def _close_part(self) -> None:
        file, self._file, self._hash, self._path = self._file, None, None, None
        if file is not None:
            file.close()  # flushes: a full disk may tell only now


def stand_ins(job: Job, raw: dict) -> dict:
    """The preview's values: a file is not sent to be previewed, only described (its name, and its
    size to be checked); it stands in the command as `<NAME upload>`, its path once it runs."""
    if not isinstance(raw, dict):
        return raw
    out = dict(raw)
    for p in job.params:
        given = raw.get(p.name)
        if p.type != "file" or not given:
            continue
        name = given.get("name") if isinstance(given, dict) else given
        size = given.get("size") if isinstance(given, dict) else 0
        if isinstance(name, str) and isinstance(size, int) and not isinstance(size, bool):
            out[p.name] = Upload(clean_name(name), size, "", Path(f"<{p.name} upload>"))
    return out


def paths(values: dict[str, P.Value]) -> list[Path]:
    """Where a run's uploaded files are (remote runs copy them to each host)."""
    return [v.path for v in values.values() if isinstance(v, Upload)]


def adopt(store: Store, job: Job, values: dict[str, P.Value], record: dict) -> str | None:
    """Once the run is recorded: move its files into its own folder (a rename within the data dir)
    and store the preview again, now with the paths the job will see. None, or why the files could
    not be moved (their staging folder removed behind the request, a full disk): the run, already
    recorded, cannot run without them and ends failed with that message (`Runs.start`)."""
    uploads = [v for v in values.values() if isinstance(v, Upload)]
    if not uploads:
        return None
    try:
        folder = run_folder(store.dir, record["id"], "uploads").absolute()  # the job may run in any folder
        for upload in uploads:
            target = folder / upload.path.name
            os.replace(upload.path, target)
            upload.path = target
    except OSError as exc:
        log.warning("run %s: its uploaded files could not be moved into its folder: %s", record["id"], exc)
        return f"its uploaded files could not be moved into its folder: {exc.strerror or exc}"
    record["preview"] = preview(job, values)
    store.submit_here(Store.update_run, record["id"], {"preview": record["preview"]})
    return None


def attach(runs) -> None:
    """Remove a run's uploads once its end is stored, whatever the end; and, at start, those left
    by a server that died (runs already ended) and the staging of servers that are gone."""

    def ended(run) -> None:
        if any(p.type == "file" for p in run.job.params):
            in_pool(remove_run_folder, runs.store.dir, run.id, "uploads")

    runs.on_end.append(ended)
    try:
        _sweep(runs.store)
    except Exception:  # tidying must never keep the server from starting
        log.exception("removing leftover uploads")


def _sweep(store: Store) -> None:
    root = Path(store.dir) / RUNS_DIR
    for folder in root.glob(f"{STAGING}/*"):  # a server that is gone receives nothing any more
        if folder.name != store.owner and not store.owner_alive(folder.name):
            shutil.rmtree(folder, ignore_errors=True)
    for folder in root.glob("*/uploads"):
        run_id = folder.parent.name
        if run_id.isdigit():
            record = store.run(int(run_id))
            if record is None or record["state"] in ("succeeded", "failed", "cancelled", "timed_out",
                                                     "interrupted", "rejected", "expired"):
                remove_run_folder(store.dir, int(run_id), "uploads")
