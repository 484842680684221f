"""The server in its own OS thread, on its own gevent hub, without monkey patching.

This is how it runs headless and inside the desktop window's process alike: the window's toolkit
owns the main thread, and `gevent.monkey.patch_all()` would turn its threads into greenlets and
hang it. Other threads talk to the server only through `call()`, which hands work to the hub with
`loop.run_callback_threadsafe`.
"""

from __future__ import annotations

import importlib.util
import logging
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any

import bottle
import gevent
import gevent.local
import gevent.ssl
from gevent.event import Event

from server.api import make_app
from server.auth import Guard, new_token
from server.auth.audit import Audit
from server.auth.guard import is_loopback
from server.catalog import Catalog
from server.connections import Server as HTTPServer
from server.events import in_pool
from server.executors.askpass import Asker
from server.executors.local import kill_orphans, run_marker
from server.executors.ssh_client import remove_stale_workdirs
from server.executors.ssh_shared import SHARED
from server.logs import access_log, run_changed
from server.memory import fixed_thresholds, trim_after_load
from server.metrics import Metrics
from server.notify import Notifications
from server.reload import Reloader
from server.runs import Runs
from server.schedules import Scheduler
from server.store import Store

log = logging.getLogger("pushbutton")
BACKLOG = 1024  # the default 128 makes a burst of 1000 connections take seconds
PRUNE_EVERY = 24 * 3600


def call_via(dispatch, fn, *args: Any, timeout: float | None = None) -> Any:
    """Hand `fn(*args)` to `dispatch` (which runs a callable on another thread or hub) and block
    this thread until its result or exception comes back."""
    done = threading.Event()
    box: list = []

    def go():
        try:
            box.append((fn(*args), None))
        except BaseException as exc:
            box.append((None, exc))
        finally:
            done.set()

    dispatch(go)
    if not done.wait(timeout):
        raise TimeoutError(f"{fn!r} did not finish")
    result, error = box[0]
    if error is not None:
        raise error
    return result


class ConfigError(ValueError):
    """The settings cannot be served as given (an unreadable certificate, say): exit 2."""


def tls_context(certfile: Path, keyfile: Path | None) -> gevent.ssl.SSLContext:
    """A server TLS context (TLS 1.2 and up) with the certificate chain and its key, or ConfigError
    saying what is wrong with which file."""
    context = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for path in (certfile, keyfile):
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:  # never a passphrase prompt: a service has no one to answer it (it would also fail)
        context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None, password=_no_passphrase)
    except _Encrypted:
        raise ConfigError(f"the key {keyfile or certfile} is encrypted with a passphrase: give Pushbutton a key "
                          "without one (openssl pkey -in KEY -out PLAIN), readable by its user only") from None
    except (ssl.SSLError, ValueError, OSError) as exc:
        raise ConfigError(f"cannot use certificate {certfile} with key {keyfile}: "
                          f"{getattr(exc, 'reason', None) or exc}") from None
    return context


class _Encrypted(Exception):
    """The key asked for a passphrase."""


def _no_passphrase() -> bytes:
    raise _Encrypted


def assets_dir() -> Path:
    """Bundled files live in `sys._MEIPASS` in a PyInstaller build, else in the repo."""
    base = getattr(sys, "_MEIPASS", None)
    return Path(base) / "assets" if base else Path(__file__).resolve().parent.parent / "assets"


def _greenlet_local(state: gevent.local.local, name: str) -> property:
    def fget(_):
        try:
            return getattr(state, name)
        except AttributeError:
            raise RuntimeError("Request context not initialized.") from None

    def fset(_, value):
        setattr(state, name, value)

    def fdel(_):
        delattr(state, name)

    return property(fget, fset, fdel, "Greenlet-local property")


def make_bottle_greenlet_local() -> None:
    """Bottle keeps the current request in `threading.local`; every greenlet of the server
    thread would share one. Give each greenlet its own, as monkey patching would have. One
    greenlet-local object holds all six: a greenlet's first use of each local object costs it
    a dictionary of its own (six of them were ~35 us of every request)."""
    if getattr(bottle.LocalRequest, "_pushbutton_greenlet_local", False):
        return
    state = gevent.local.local()
    bottle.LocalRequest.environ = _greenlet_local(state, "environ")
    for name in ("_status_line", "_status_code", "_cookies", "_headers", "body"):
        setattr(bottle.LocalResponse, name, _greenlet_local(state, name))
    bottle.LocalRequest._pushbutton_greenlet_local = True


class Server:
    def __init__(self, catalog: Catalog, data_dir: str | Path, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None, assets: Path | None = None, asker: Asker | None = None,
                 window: bool = False, clock=time.time):
        self.catalog = catalog
        # The desktop window's server fires schedules only with `schedules_in_window = yes`; `clock`
        # is the wall clock schedules read (tests pass their own).
        self.scheduler: Scheduler | None = None
        self.window, self.clock = window, clock
        self.asker = asker  # ask(host, prompt, secret) -> answer | None: the window's, for ssh (askpass.py)
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.token = token or new_token()
        self.assets = assets or assets_dir()
        settings = catalog.settings
        self.base_path = settings.base_path
        self.tls = tls_context(settings.certfile, settings.keyfile) if settings.certfile else None
        if settings.auth == "oidc" and importlib.util.find_spec("joserfc") is None:
            raise ConfigError("auth = oidc needs joserfc and cryptography, which the window build leaves out "
                              "to start faster: serve teams with pushbutton-server (docs/desktop.md)")
        self.runs: Runs | None = None
        self.hub = None
        self._thread = threading.Thread(target=self._main, name="pushbutton-server", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: Event | None = None
        # SIGHUP before the server is ready (start-up's recovery can take seconds) is kept for then.
        self._reloads = threading.RLock()  # RLock: a signal handler may interrupt its own thread's holder
        self._serving = self._reload_due = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{self.base_path}/"

    @property
    def login_url(self) -> str:
        """With `auth = token` the address carries the token; otherwise users sign in, and the
        token (which then grants nothing) stays out of the address."""
        return f"{self.url}?token={self.token}" if self.catalog.settings.auth == "token" else self.url

    def start(self, timeout: float = 30) -> str:
        """Start the thread; return the login URL once the port accepts connections."""
        make_bottle_greenlet_local()
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the server did not start")
        if self._error is not None:
            raise self._error
        if self.catalog.settings.auth == "token" and not is_loopback(self.host):
            log.warning("listening on %s with auth = token: the address printed below grants every right to "
                        "whoever has it (see and run every job); set auth = local, header, ldap or oidc in "
                        "jobs.ini to give each person their own rights", self.host)
        return self.login_url

    def _main(self) -> None:
        self.hub = gevent.get_hub()
        fixed_thresholds()  # large buffers are not kept once freed: server/memory.py
        try:
            store = Store(self.data_dir)
            recovered = store.recover()
            if recovered:
                log.info("marked %d run(s) left active by a stopped server as interrupted", len(recovered))
                orphans = kill_orphans({run_marker(owner, run_id) for run_id, owner in recovered.items()})
                if orphans:
                    log.info("stopped %d process(es) those runs left behind", len(orphans))
            remove_stale_workdirs()  # left in TMPDIR by a killed Pushbutton
            store.prune(self.catalog.settings.retention_days)
            self.runs = Runs(self.catalog, store, self.asker)
            self.runs.audit = Audit(store)
            notifications = Notifications(self.runs)  # [notify:NAME]: server/notify.py
            self.runs.metrics = Metrics(self.runs)  # GET /metrics
            if recovered:
                ended = store.jobs_of(list(recovered))
                self.runs.metrics.recovered([job for _, job in ended])
                for run_id, job in ended:
                    log.info("run %s of %s ended interrupted (the server stopped while it was active)", run_id, job,
                             extra={"fields": {"run": run_id, "job": job, "state": "interrupted"}})
            store.on_commit = self.runs.metrics.write_committed
            self.runs.on_state.append(run_changed)  # a log line per run start and end
            reloader = Reloader(self.runs, self.catalog.path)  # jobs.ini live: server/reload.py
            self._stop = Event()
            # Bind first: the real port (for --port 0) is the one the address printed names.
            tls = {"ssl_context": self.tls} if self.tls else {}
            self.wsgi = HTTPServer((self.host, self.port), None, backlog=BACKLOG, log=None, error_log=log,
                                   trusted_proxies=self.catalog.settings.trusted_proxies, **tls)
            self.wsgi.init_socket()
            self.port = self.wsgi.server_port
            guard = Guard(self.token, self.host, self.catalog.settings.allowed_hosts)
            self.wsgi.application = access_log(make_app(self.runs, guard, self.assets, self.base_path))
            self.wsgi.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        pruner = gevent.spawn(self._prune_daily, store)
        trimmer = gevent.spawn(trim_after_load, self.runs)  # memory back to the OS after load: server/memory.py
        self.runs.ready.start()  # run folders made ahead: server/files/ready.py
        reloader.start()
        with self._reloads:
            self._serving = True
            if self._reload_due:  # a SIGHUP came during start-up: applied now
                gevent.spawn(reloader.reload, "signal")
        self.scheduler = Scheduler(self.runs, self.window, self.clock)  # [schedule:NAME]: server/schedules.py
        self.scheduler.start()
        self._ready.set()
        self._stop.wait()
        reloader.stop()
        self.scheduler.stop()
        self.wsgi.close()  # no new connections; open streams see the runs end
        self.runs.shutdown("interrupted")
        in_pool(SHARED.close_all)  # SSH connections kept open for the next run: server/executors/ssh_shared.py
        if self.runs.ready.filling is not None:
            self.runs.ready.filling.kill()
        in_pool(self.runs.ready.close)
        notifications.close(timeout=5)  # the runs just interrupted are told too
        pruner.kill()
        trimmer.kill()
        self.wsgi.stop(timeout=1)
        store.close()

    def _prune_daily(self, store: Store) -> None:
        while True:
            gevent.sleep(PRUNE_EVERY)
            in_pool(store.prune, self.runs.catalog.settings.retention_days)  # as jobs.ini says now

    def call(self, fn, *args: Any, timeout: float | None = None) -> Any:
        """Run `fn(*args)` in a greenlet of the server's hub from any other thread; wait for it."""
        return call_via(lambda go: self.hub.loop.run_callback_threadsafe(gevent.spawn, go), fn, *args,
                        timeout=timeout)

    def reload(self) -> None:
        """Re-read jobs.ini on the hub, without waiting (SIGHUP's handler calls it); before the
        server is ready, once it is."""
        with self._reloads:
            if not self._serving:
                if not self._reload_due:
                    log.info("SIGHUP during start-up: jobs.ini is re-read once the server is ready")
                self._reload_due = True
                return
        if self.runs is not None and self.runs.reloader is not None:
            self.hub.loop.run_callback_threadsafe(gevent.spawn, self.runs.reloader.reload, "signal")

    def stop(self, timeout: float | None = None) -> None:
        """Stop accepting, stop active runs as a cancel would (recorded `interrupted`), flush
        history, end the thread."""
        if self._stop is not None and self._thread.is_alive():
            self.hub.loop.run_callback_threadsafe(self._stop.set)
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
