"""Links in the window: the window shows the app and nothing else; a link out of it opens in the
system browser, and only an http(s) one.

Two ways out exist. A link with target=_blank (how the page renders links in output) asks for a new
window: pywebview answers with one hidden page (`nav_handler`) and opens whatever that page is
sent to in the browser, whatever its scheme; here that page is replaced by `ExternalLinks`. Any
other navigation of the window itself is checked by `guard`: within the app's origin it goes
ahead, else it is refused (Chromium reports a script's `location = ...` as a clicked link, so
refusing is the only safe answer; the page puts target=_blank on every link that leaves it).
"""

from __future__ import annotations

import logging
import threading
import webbrowser

from PySide6.QtCore import QUrl
from PySide6.QtWebEngineCore import QWebEngineNavigationRequest, QWebEnginePage

log = logging.getLogger("pushbutton")
WEB = ("http", "https")


def open_in_browser(url: QUrl) -> None:
    """An http(s) URL to the system browser (off the GUI thread: `webbrowser` may wait for it)."""
    if url.scheme().lower() not in WEB:
        log.warning("not opening a %s: link (only http and https open in the browser)", url.scheme())
        return
    threading.Thread(target=webbrowser.open, args=(url.toString(),), daemon=True, name="open-link").start()


class ExternalLinks(QWebEnginePage):
    """The page a new window would show: it never loads; an http(s) URL goes to the browser."""

    def acceptNavigationRequest(self, url, kind, is_main_frame):  # noqa: N802 - Qt's name
        open_in_browser(url)
        return False


def same_origin(url: QUrl, app: QUrl) -> bool:
    return (url.scheme(), url.host(), url.port()) == (app.scheme(), app.host(), app.port())


def guard(page: QWebEnginePage, app_url: str) -> None:
    """Keep `page` (the window's) on the app at `app_url`; send links elsewhere to the browser."""
    app = QUrl(app_url)
    page.nav_handler = ExternalLinks(page.profile(), page)  # pywebview's createWindow returns it

    def check(request: QWebEngineNavigationRequest) -> None:
        url = request.url()
        if not request.isMainFrame() or same_origin(url, app):
            return
        request.reject()
        log.warning("the window did not leave the app for %s", url.toString()[:200])

    page.navigationRequested.connect(check)
