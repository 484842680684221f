"""The window's toolkit on Windows (WebView2) and macOS (WKWebView), through pywebview's own API.

These builds carry no GUI toolkit of their own: pywebview's calls are thread-safe and marshal to
the GUI thread themselves, so `MainThread` simply runs the callable on a worker thread. What
pywebview offers no API for is left out here and listed in docs/desktop.md's checklist: there is
no text dialog, so ssh's questions are not asked in these windows (password-only hosts fail with
the reason, as headless); the close prompt is pywebview's OK/Cancel confirmation.
This module is not exercised on Linux (the machine the tests run on).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from server.runtime import call_via

log = logging.getLogger("pushbutton")
OPEN_DIALOGS: list[dict] = []
ASKS = False  # no text dialog: the server gets no asker


class MainThread:
    def __call__(self, fn: Callable[[], object]) -> None:
        def run():
            try:
                fn()
            except Exception:
                log.exception("error in a window call")

        threading.Thread(target=run, daemon=True, name="window-call").start()

    def wait(self, fn: Callable[[], object], timeout: float = 10) -> object:
        return call_via(self, fn, timeout=timeout)


def ask_stop_runs(window, title: str, text: str, details: str, stop: str, keep: str) -> bool:
    return bool(window.create_confirmation_dialog(title, f"{text}\n\n{details}\n\nOK: {stop}. Cancel: {keep}."))


def ask_text(window, title: str, question: str, secret: bool) -> str | None:
    return None


def show_error(title: str, text: str) -> None:
    log.error("%s: %s", title, text)


def is_fullscreen(window) -> bool:
    return False  # not known through pywebview: the size is saved as it is


def focused(window) -> bool:
    return False  # pywebview cannot tell: notify every time (a notice while looking is harmless)


def bring_forward(window) -> None:
    window.restore()
    window.show()


def alert(window) -> None:
    pass


def geometry(window) -> tuple[int, int, int, int]:
    return window.width, window.height, window.x, window.y


def monitors() -> list[tuple[int, int, int, int]]:
    import webview

    return [(s.x, s.y, s.width, s.height) for s in webview.screens]


def center(window) -> None:
    pass


def set_icon(path: str) -> None:
    pass


def quit_app() -> None:
    import webview

    for window in list(webview.windows):
        window.destroy()


def handle(window):
    """What the functions above take: pywebview's window itself."""
    return window
