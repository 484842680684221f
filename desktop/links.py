"""Links in the window: the window shows the app and nothing else; a link out of it opens in the
system browser, and only an http(s) one.

WebKit asks before every navigation (`decide-policy`). A link with target=_blank (how the page
renders links in output) is a new-window request: never granted; an http(s) URL goes to the
browser. Any other navigation of the window itself goes ahead only within the app's origin, else
it is refused (a script's `location = ...` looks like a clicked link, so refusing is the only safe
answer; the page puts target=_blank on every link that leaves it). pywebview's own handler, which
would hand a new window of any scheme to the browser, is replaced; response decisions (downloads)
stay its.
"""

from __future__ import annotations

import logging
import threading
import webbrowser
from urllib.parse import urlsplit

log = logging.getLogger("pushbutton")
WEB = ("http", "https")


def open_in_browser(url: str) -> bool:
    """An http(s) URL to the system browser (off the GUI thread: `webbrowser` may wait for it)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in WEB:
        log.warning("not opening a %s: link (only http and https open in the browser)", scheme)
        return False
    threading.Thread(target=webbrowser.open, args=(url,), daemon=True, name="open-link").start()
    return True


def same_origin(url: str, app: str) -> bool:
    def origin(u):
        parts = urlsplit(u)
        try:
            port = parts.port
        except ValueError:
            return None
        return parts.scheme.lower(), parts.hostname, port

    return origin(url) == origin(app)


def guard(view, app_url: str, pywebview_handler) -> None:
    """Keep `view` (the window's WebKit2.WebView) on the app at `app_url`."""
    from gi.repository import WebKit2

    view.disconnect_by_func(pywebview_handler)

    def decide(view, decision, kind):
        if kind == WebKit2.PolicyDecisionType.RESPONSE:
            return pywebview_handler(view, decision, kind)
        url = decision.get_navigation_action().get_request().get_uri() or ""
        if kind == WebKit2.PolicyDecisionType.NEW_WINDOW_ACTION:
            decision.ignore()
            open_in_browser(url)
            return True
        if same_origin(url, app_url) or url == "about:blank":
            decision.use()
            return True
        decision.ignore()
        log.warning("the window did not leave the app for %s", url[:200])
        return True

    view.connect("decide-policy", decide)
