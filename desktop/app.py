"""The desktop window: the headless server, in this process, behind a pywebview window.

The toolkit is the system's web view: GTK + WebKitGTK 4.1 on Linux (`desktop.gtk_ui`), WebView2
on Windows and WKWebView on macOS through pywebview alone (`desktop.native_ui`).
Threads: the toolkit owns the main thread (pywebview requires it); the server runs in its own OS
thread on its own gevent hub (`server.runtime.Server`); nothing is monkey patched. The window
reaches the server only through `Server.call`, the server reaches the window only through
`MainThread`. The per-launch token never leaves this process: the window loads the login URL,
which swaps it for an HttpOnly cookie that lives in the window's private, in-memory profile.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

import platformdirs
import webview

from desktop import settings
from desktop.errorpage import error_page
from desktop.instance import SingleInstance
from desktop.main import close_splash
from desktop.notify import Notifier, notice_for
from server import catalog as C
from server.auth.identity import User, os_user
from server.auth.methods import for_the_window
from server.datadir import DataDirError
from server.run_record import FINAL
from server.runtime import Server

log = logging.getLogger("pushbutton")
ICON = Path(__file__).resolve().with_name("icon.png")
ASK_TIMEOUT = 600  # s an ssh prompt waits for the person; then it counts as Cancel
READY_LINE = "Pushbutton window showing {url}"  # on stdout once the page is shown (no token in it)

if sys.platform.startswith("linux"):
    from desktop import gtk_ui as ui
    from desktop import links

    GUI = "gtk"
else:
    from desktop import native_ui as ui

    links = None
    GUI = None  # pywebview's default: WebView2 on Windows, WKWebView on macOS


def close_prompt(titles: list[str]) -> tuple[str, str, str, str, str]:
    """The close prompt's words: (title, text, details, stop button, keep button)."""
    n = len(titles)
    counts = Counter(titles)
    running = ", ".join(f"{t} (x{c})" if c > 1 else t for t, c in counts.items())
    return ("Jobs are still running" if n > 1 else "A job is still running",
            f"{n} jobs are still running. Stop them and quit, or keep the window open?" if n > 1 else
            "1 job is still running. Stop it and quit, or keep the window open?",
            f"Running: {running}. Stopped jobs are recorded as cancelled.",
            "Stop and quit" if n > 1 else "Stop it and quit", "Keep the window open")


def prepare_environment() -> str | None:
    """Return why no window can open here, if it cannot."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        return ("there is no display to open a window on (DISPLAY is not set); "
                "serve browsers instead with: pushbutton --headless")
    return None


class DesktopApp:
    """One launch of the window. `on_ready(app)`, if given, runs on a thread of its own once the
    first page has loaded (embedding and the tests use it to drive the window)."""

    def __init__(self, args: argparse.Namespace, catalog: C.Catalog | None, problems: list[str] | None = None,
                 on_ready: Callable[[DesktopApp], None] | None = None):
        self.args = args
        self.catalog = catalog
        self.problems = problems or []
        self.on_ready = on_ready
        self.data_dir = Path(args.data_dir or platformdirs.user_data_dir(C.APP_NAME))
        self.instance = SingleInstance(self.data_dir)
        self.server: Server | None = None
        self.window: webview.Window | None = None
        self.native = None  # what desktop.gtk_ui/native_ui take: the toolkit's window, once created
        self.main: ui.MainThread | None = None
        self.notifier: Notifier | None = None
        self.cancel_runs = False  # the analyst chose "stop and quit": runs end as cancelled
        self.skip_prompt = False  # close without asking (the analyst already answered, or a test)
        self.closing = False
        self.first_page = threading.Event()
        self.t0 = time.monotonic()

    # -- the launch ----------------------------------------------------------------------------

    def run(self) -> int:
        why_not = prepare_environment()
        if why_not:
            print(f"pushbutton: {why_not}", file=sys.stderr)
            return 2
        if not self.instance.acquire():
            answer = self.instance.ask_to_raise()
            if answer == "raised":
                print(f"pushbutton: already open on {self.data_dir}: brought its window forward", file=sys.stderr)
                return 0
            if answer == "closing":
                log.info("the open window is closing (stopping its runs): starting once it has")
            if answer != "closing" or not self.instance.wait_for_lock():
                print(f"pushbutton: another Pushbutton holds {self.instance.lock_path} but does not answer; "
                      "close it (or end it in the task manager) and start again", file=sys.stderr)
                return 1
        try:
            return self._run()
        finally:
            self.instance.release()

    def _run(self) -> int:
        code = 0
        url = html = None
        if self.catalog is None:
            looked_in = None if self.args.jobs else [str(p) for p in C.candidate_paths()]
            html, title, code = error_page(self.problems, looked_in), "Pushbutton: cannot open the jobs", 2
        else:
            title = self.catalog.settings.title
            if self.args.host not in ("127.0.0.1", "localhost") or self.args.token:
                log.warning("--host and --token apply to --headless only; the window uses 127.0.0.1 "
                            "and a new secret")
            self.server = Server(for_the_window(self.catalog), self.data_dir, "127.0.0.1", self.args.port or 0,
                                 asker=self.ask_ssh if ui.ASKS else None, window=True)
            try:
                url = self.server.start()
            except DataDirError as exc:  # the history's folder or file: say which, as the CLI does
                self.server = None
                html, code = error_page([str(exc)], None), 2
            except OSError as exc:
                self.server = None
                html = error_page([f"cannot start the local server: {exc.strerror or exc}"], None)
                code = 1
            else:
                self.server.call(self._spawn_run_watcher)

        geo = settings.load_geometry()
        self.window = webview.create_window(
            title, url=url, html=html, width=geo.width, height=geo.height, x=geo.x, y=geo.y,
            min_size=settings.MIN_SIZE, text_select=True)
        self.window.events.before_show += partial(self._before_show, geo)
        self.window.events.shown += close_splash
        self.window.events.loaded += self._loaded
        self.window.events.closing += self._on_closing
        signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            webview.start(self._after_start, gui=GUI, private_mode=True, icon=str(ICON) if ICON.exists() else None)
        finally:
            self.closing = True
            self._stop_server()
        return code

    def _before_show(self, geo: settings.Geometry) -> None:
        """GUI thread, window built but not shown yet."""
        self.native = ui.handle(self.window)
        self.main = ui.MainThread()
        if self.server is not None and links is not None:
            from webview.platforms.gtk import BrowserView

            browser = BrowserView.instances[self.window.uid]
            links.guard(browser.webview, self.server.url, browser.on_navigation)
        if geo.x is not None and not settings.on_a_screen(geo, ui.monitors()):
            log.info("the saved window position is on no screen now: centring the window")
            ui.center(self.native)
        if self.server is not None:
            self.notifier = Notifier(self.catalog.settings.title, partial(ui.focused, self.native),
                                     partial(ui.alert, self.native))
        try:
            self.instance.listen(self._raise_requested)
        except OSError as exc:  # the window still works; a second launch will say it gets no answer
            log.warning("cannot listen for a second launch: %s", exc)

    def _loaded(self) -> None:
        if not self.first_page.is_set():
            log.info("window: first page shown after %.2f s", time.monotonic() - self.t0)
            if self.server is not None:  # for ops scripts, support and the tests
                print(READY_LINE.format(url=self.server.url), flush=True)
            self.first_page.set()

    def _after_start(self) -> None:
        """pywebview runs this on its own thread once the GUI loop is starting."""
        if self.on_ready is None:
            return
        if not self.first_page.wait(60):
            log.error("window: the first page did not load within 60 s")
        self.on_ready(self)

    # -- while open ----------------------------------------------------------------------------

    def _raise_requested(self) -> bool:
        """Listener thread: a second launch wants the window. False once it is closing."""
        if self.closing or self.main is None:
            return False
        self.main(self.bring_forward)
        return True

    def bring_forward(self) -> None:
        """GUI thread: un-minimise, raise and focus the window."""
        ui.bring_forward(self.native)

    def _spawn_run_watcher(self) -> None:
        import gevent

        gevent.spawn(self._watch_runs, self.server.runs.watch())

    def _watch_runs(self, queue) -> None:
        """Server hub: hand every run end, and every run now waiting for this user's approval, to
        the GUI thread."""
        rights = self.server.runs.rights
        me = User(os_user(), admin=True, method="token")  # the window's one user, as TokenMethod sees it
        for record in queue:
            state = record.get("state")
            wanted = state in FINAL or (state == "awaiting_approval" and rights.can_approve(me, record))
            if wanted and self.main is not None and not self.closing:
                self.main(partial(self._run_ended, dict(record)))

    def _run_ended(self, record: dict) -> None:
        if self.closing or self.notifier is None:
            return
        runs = self.server.runs if self.server is not None else None
        catalog = runs.catalog if runs is not None else self.catalog  # as jobs.ini says now (live reload)
        job = catalog.jobs.get(record.get("job"))
        title = (job.title or job.id) if job else str(record.get("job"))
        notice = notice_for(record, title, self.notifier.focused())
        if notice is not None:
            self.notifier.show(notice)

    def ask_ssh(self, host: str, prompt: str, secret: bool) -> str | None:
        """The server's asker (a threadpool thread): the dialog on the GUI thread; None = Cancel."""
        if self.closing or self.main is None:
            return None
        return self.main.wait(partial(self._ask_on_gui, host, prompt, secret), timeout=ASK_TIMEOUT)

    def _ask_on_gui(self, host: str, prompt: str, secret: bool) -> str | None:
        if self.closing:
            return None
        self.bring_forward()
        return ui.ask_text(self.native, f"{host} asks", f"Connecting to {host}, ssh asks:\n{prompt}", secret)

    def active_titles(self) -> list[str]:
        """Titles of the runs queued or running now (any thread but the server's)."""
        if self.server is None or not self.server.alive:
            return []

        def titles():
            return [run.job.title or run.job.id for run in self.server.runs.active.values()]

        return self.server.call(titles, timeout=10)

    # -- closing -------------------------------------------------------------------------------

    def _on_closing(self):
        """GUI thread, the analyst closed the window. Returning False keeps it open."""
        titles = [] if self.skip_prompt else self.active_titles()
        if titles:
            log.info("close asked with %d active run(s): asking whether to stop them", len(titles))
            if not ui.ask_stop_runs(self.native, *close_prompt(titles)):
                log.info("close cancelled: the window stays open")
                return False
            self.cancel_runs = self.skip_prompt = True
        self.closing = True
        self._save_geometry()
        return True

    def _save_geometry(self) -> None:
        if self.native is None or ui.is_fullscreen(self.native):
            return
        width, height, x, y = ui.geometry(self.native)
        try:
            settings.save_geometry(settings.Geometry(width=width, height=height, x=x, y=y))
        except OSError as exc:
            log.warning("cannot remember the window size: %s", exc)

    def _on_sigterm(self, *_) -> None:
        """Stop without asking (logout, kill): runs end as `interrupted`."""
        self.closing = True
        ui.quit_app()

    def _stop_server(self) -> None:
        server = self.server
        if server is None or not server.alive:
            return
        if self.cancel_runs:
            log.info("stopping the active runs: the analyst chose to (recorded as cancelled)")
            server.call(server.runs.shutdown, "cancelled")
        server.stop()


def open_window(args: argparse.Namespace, catalog: C.Catalog | None, problems: list[str] | None = None,
                on_ready: Callable[[DesktopApp], None] | None = None) -> int:
    return DesktopApp(args, catalog, problems, on_ready).run()
