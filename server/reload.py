"""Live reload of jobs.ini: on change (polled), on SIGHUP and on `POST /api/reload`.

A greenlet on the server's hub reads the file *by name* every POLL seconds (in the threadpool):
an editor that saves by writing a temporary file and renaming it over jobs.ini, vim's backup
dance, a Kubernetes ConfigMap's symlink swap and a network or WSL folder without inotify are all
seen the same way, which a watch on the file's inode is not. A change waits until two reads
SETTLE seconds apart agree (a truncate-then-write editor shows an empty file for a moment), then
`catalog.load` checks it as `pushbutton check` does. Only a file that passes is applied, in one
step (`Runs.replace_catalog`); otherwise the last good catalog stays in force and the problems
(`FILE:LINE: message`) are kept as `error` until a good file replaces it. Either way the log and
the audit say so and every `/api/events` stream is told (`sse.catalog_changed`).

Settings the server is built from at start-up (how users sign in, TLS, the base path, the allowed
hosts, proxies, sessions) cannot change under it: a file that changes them is refused with a
"restart" problem. Their values in force (command-line and desktop-window overrides included)
carry over into each reloaded catalog.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import gevent
from bottle import response
from gevent.lock import Semaphore

from server import catalog as C
from server import sse
from server.auth import rules as R
from server.events import in_pool
from server.runs import Runs

log = logging.getLogger("pushbutton")
POLL = 1.0  # seconds between two reads of jobs.ini
SETTLE = 0.3  # a change is applied once two reads this far apart agree
MAX_SETTLE = 20  # reads; a file rewritten without pause for longer is taken as it is then
# Settings read once at start-up (server/runtime.py, server/auth/): changing them needs a restart.
RESTART_KEYS = ("auth", "trusted_proxies", "user_header", "groups_header", "session_idle", "session_max",
                "certfile", "keyfile", "base_path", "allowed_hosts", "oidc", "ldap")
# Resolved from a file or the environment at each load: a rotated one is applied by a reload (the
# method reads it from the catalog in force); every other ldap_* and oidc_* key needs a restart.
LIVE_SECRETS = ("bind_password", "client_secret")
HIDDEN_ERROR = "jobs.ini has an error (an admin can see which); its last good version stays in force"


class Reloader:
    """Watches one jobs.ini for one `Runs`; `error` is None or the problems of the last attempt."""

    def __init__(self, runs: Runs, path: str | Path, poll: float = POLL):
        self.runs = runs
        self.path = Path(path)
        self.poll = poll
        self.error: list[str] | None = None
        self._lock = Semaphore()  # one reload at a time: the watcher, SIGHUP and the API
        # The bytes the catalog in force was parsed from, not a read now: an edit saved while the
        # server started (recovery, pruning) differs from them and is applied at the first poll.
        self._seen: bytes | str = runs.catalog.source
        self._started = _restart_settings(self.path, runs.catalog.source) or {
            k: getattr(runs.catalog.settings, k) for k in RESTART_KEYS}
        self._watcher: gevent.Greenlet | None = None
        runs.reloader = self

    def start(self) -> None:
        self._watcher = gevent.spawn(self._watch)

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.kill(block=False)

    def _watch(self) -> None:
        while True:
            gevent.sleep(self.poll)
            try:
                if in_pool(_read, self.path) != self._seen:
                    self.reload("file")
            except Exception:  # the watcher must outlive any one bad attempt
                log.exception("reloading %s", self.path)

    def reload(self, trigger: str, user: str | None = None) -> list[str] | None:
        """Read jobs.ini once it is stable and apply it if it passes; the problems, or None.
        `trigger`: file, signal or api (with the admin's name as `user`)."""
        with self._lock:
            text = self._settled()
            if trigger == "file" and text == self._seen:
                return self.error  # saved and put back, or another reload got there first
            catalog, problems = self._parse(text)
            self._seen = text
            if problems:
                self._refuse(problems, trigger, user)
            else:
                self._apply(catalog, trigger, user)
            sse.catalog_changed(self.runs, applied=not problems)
            return problems or None

    def _settled(self) -> bytes | str:
        """The file's content once two reads SETTLE apart agree (its bytes, or why it cannot be read)."""
        text = in_pool(_read, self.path)
        for _ in range(MAX_SETTLE):
            gevent.sleep(SETTLE)
            again = in_pool(_read, self.path)
            if again == text:
                break
            text = again
        return text

    def _parse(self, text: bytes | str) -> tuple[C.Catalog | None, list[str]]:
        """The settled bytes checked (not the file read again: what was compared is what is
        applied), and their problems; `text` is a string when the file could not be read."""
        if isinstance(text, str):
            return None, [str(C.Problem(str(self.path), 0, text))]
        try:
            catalog = in_pool(C.load, self.path, text)
        except C.CatalogError as exc:
            return None, [str(p) for p in exc.problems]
        return catalog, self._needs_restart(catalog, text)

    def _needs_restart(self, catalog: C.Catalog, text: bytes) -> list[str]:
        """One problem for each start-up setting the file changes; none carry over the values in force."""
        lines = C._Lines(text.decode("utf-8", "replace"), str(catalog.path))
        changed = self._changed(catalog.settings)
        if not changed:
            for key in RESTART_KEYS:
                kept, new = getattr(self.runs.catalog.settings, key), getattr(catalog.settings, key)
                if dataclasses.is_dataclass(kept):  # but a rotated secret: the sign-in method reads it
                    kept = dataclasses.replace(kept, **{f: getattr(new, f) for f in LIVE_SECRETS if hasattr(new, f)})
                setattr(catalog.settings, key, kept)
        return [f"{catalog.path}:{lines.of('pushbutton', key)}: [pushbutton] {key}: changing it needs a restart of "
                "Pushbutton; until then the jobs.ini loaded last stays in force" for key in changed]

    def _changed(self, settings: C.Settings) -> list[str]:
        """The start-up keys whose value differs from the file's at start-up (`oidc_*`, `ldap_*` one
        by one, and only under their own method: otherwise they do nothing yet)."""
        unused = {"oidc", "ldap"} - {self._started["auth"]}
        out = []
        for key in RESTART_KEYS:
            new, old = getattr(settings, key), self._started[key]
            if key in unused or new == old:
                continue
            if dataclasses.is_dataclass(new):
                out += [f"{key}_{f.name}" for f in dataclasses.fields(new)
                        if f.name not in LIVE_SECRETS and getattr(new, f.name) != getattr(old, f.name)]
            else:
                out.append(key)
        return out

    def _apply(self, catalog: C.Catalog, trigger: str, user: str | None) -> None:
        old = self.runs.catalog.jobs
        diff = {"added": sorted(set(catalog.jobs) - set(old)), "removed": sorted(set(old) - set(catalog.jobs)),
                "changed": sorted(j for j in set(old) & set(catalog.jobs) if old[j] != catalog.jobs[j])}
        self.runs.replace_catalog(catalog)
        self.error = None
        for warning in catalog.warnings:
            log.warning("%s", warning)
        log.info("reloaded %s (%s): %s", self.path, trigger,
                 "; ".join(f"{k} {', '.join(v)}" for k, v in diff.items() if v) or "no job changed")
        self._audit("config.reload", user, True, {"trigger": trigger, **diff})

    def _refuse(self, problems: list[str], trigger: str, user: str | None) -> None:
        self.error = problems
        log.error("%s not reloaded (%s), the last good version stays in force:\n%s", self.path, trigger,
                  "\n".join(problems))
        self._audit("config.error", user, False, {"trigger": trigger, "problems": problems})

    def _audit(self, action: str, user: str | None, ok: bool, detail: dict) -> None:
        if self.runs.audit is not None:
            self.runs.audit.record(action, user, target=f"file:{self.path}", ok=ok, detail=detail)


def config_error(runs: Runs, user) -> str | None:
    """`config_error` in GET /api/jobs: the problems for admins (they name hidden jobs and files),
    a notice without them for everyone else, None while the file in force is the file on disk."""
    if runs.reloader is None or runs.reloader.error is None:
        return None
    return "\n".join(runs.reloader.error) if user is not None and user.admin else HIDDEN_ERROR


def add_routes(app, runs: Runs | None) -> None:
    """`POST /api/reload`: re-read jobs.ini now (after fixing a file it names, say); admins only."""

    @app.post("/api/reload", rule=R.ADMIN)
    def reload_now():
        """200 {"config_error": null} once applied; 422 with the problems when the file is refused."""
        problems = runs.reloader.reload("api", R.current_user().name) if runs.reloader is not None else None
        if problems:
            response.status = 422
        return {"config_error": "\n".join(problems) if problems else None}


def _read(path: Path) -> bytes | str:
    """The file's bytes, or a string saying why it cannot be read (a change like any other)."""
    try:
        return path.read_bytes()
    except OSError as exc:
        return f"cannot read: {exc.strerror}"


def _restart_settings(path: Path, data: bytes) -> dict | None:
    """The start-up settings as the file's bytes say them (before command-line or window overrides)."""
    try:
        settings = C.load(path, data).settings
    except C.CatalogError:
        return None
    return {key: getattr(settings, key) for key in RESTART_KEYS}

