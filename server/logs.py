"""The server's log: one line per request and per run event worth knowing, as text or as JSON
lines for log shippers (`--log-format json`).

What a line never holds: a query string (the per-launch token travels in one), a header, a
parameter value or a secret. Requests are logged when their answer is complete, streams included,
with the time they took; a run's start and end are logged from its state changes.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from server.auth.proxies import client_address
from server.auth.rules import USER_KEY
from server.connections import RAW_PATH

log = logging.getLogger("pushbutton")
access = logging.getLogger("pushbutton.access")
FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and the record's
    `fields` (what the line is about, as keys a shipper can index)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        out.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class JournalFormatter(logging.Formatter):
    """Text lines with their syslog priority first (`<4>pushbutton: ...`), which systemd's journal
    reads from a service's stderr: `journalctl -p warning` then finds warnings and errors."""

    PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}

    def format(self, record: logging.LogRecord) -> str:
        level = next((p for lvl, p in self.PRIORITIES.items() if record.levelno >= lvl), 7)
        return f"<{level}>" + super().format(record)


def configure(fmt: str = "text") -> None:
    """Where and how `pushbutton` logs: stderr, text (`pushbutton: message`) or JSON lines; text
    with syslog priorities when stderr is systemd's journal (it sets JOURNAL_STREAM). A record's
    process and thread are in neither format: not looked up (a system call and two lookups for
    every request's line)."""
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    text = JournalFormatter if _to_journal() else logging.Formatter
    handler.setFormatter(JsonFormatter() if fmt == "json" else text("pushbutton: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _to_journal() -> bool:
    """Whether stderr is the journal's stream systemd names in JOURNAL_STREAM (`device:inode`)."""
    import os

    try:
        device, inode = (int(x) for x in os.environ.get("JOURNAL_STREAM", "").split(":"))
        info = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


def access_log(app):
    """WSGI middleware: log each request once its answer has been sent (or the client left)."""

    def logged(environ, start_response):
        began = time.monotonic()
        status: list[str] = []
        # The path as the client sent it, before a base path is taken off PATH_INFO (api._mount): the
        # proxy's log names that one. Escapes kept: a decoded %0A would begin a forged line of its own.
        path = environ.get(RAW_PATH) or environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")

        def start(code, headers, exc_info=None):
            status[:] = [code]
            return start_response(code, headers, exc_info)

        body = app(environ, start)
        try:
            yield from body
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
            _request_line(environ, path, status[0] if status else "000", time.monotonic() - began)

    return logged


def _request_line(environ: dict, path: str, status: str, seconds: float) -> None:
    user = environ.get(USER_KEY)
    fields = {"method": environ.get("REQUEST_METHOD", ""), "path": path,
              "status": int(status.split(" ", 1)[0] or 0), "ms": round(seconds * 1000, 1),
              "user": getattr(user, "name", None), "client": client_address(environ)}
    access.info("%s %s %s %.1f ms %s", fields["method"], fields["path"], fields["status"], fields["ms"],
                fields["user"] or "-", extra={"fields": fields})


def run_changed(run) -> None:
    """A run's state changed (Runs.on_state): its start and end are worth a line; its queueing
    and approval are in the history and the audit."""
    record, state = run.record, run.state
    fields = {"run": run.id, "job": run.job.id, "state": state, "user": record.get("user"),
              "exit_code": record.get("exit_code")}
    if state == "running":
        log.info("run %s of %s started by %s", run.id, run.job.id, fields["user"] or "-", extra={"fields": fields})
    elif record.get("finished"):
        log.info("run %s of %s ended %s (exit %s)", run.id, run.job.id, state, fields["exit_code"],
                 extra={"fields": fields})
