"""The `links` scenario for tests/desktop/test_links.py, on the shared driver (tests/desktop/driver.py).

    python -m tests.desktop.links_driver links [pushbutton arguments...]
"""

from __future__ import annotations

import json
import sys
import time

from tests.desktop import driver
from tests.desktop.driver import js, on_gui, report, start_job, wait_state, wait_until

LINK = "https://example.com/pb-link-test"


def click(app, selector: str) -> None:
    """A real left click (Qt mouse events) in the middle of the element, as the analyst clicks."""
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtTest import QTest

    box = json.loads(js(app, f"(() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect();"
                            " return JSON.stringify([r.left + r.width / 2, r.top + r.height / 2]); })()"))
    view = app.native.webview

    def press():
        ratio = view.zoomFactor()
        target = view.focusProxy() or view
        QTest.mouseClick(target, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                         QPoint(int(box[0] * ratio), int(box[1] * ratio)))

    on_gui(app, press)


@driver.scenario
def links(app):
    """A link in output opens in the system browser ($BROWSER); nothing moves the window off the app."""
    run_id = start_job(app, "links")
    wait_state(app, run_id, {"succeeded"})
    js(app, f"location.hash = '#/runs/{run_id}'; true")
    wait_until(lambda: js(app, "document.querySelectorAll('#log a').length") == 1, 20)
    report(links=json.loads(js(app, "JSON.stringify([...document.querySelectorAll('#log a')].map(a => a.href))")))
    js(app, "document.getElementById('log').scrollTop = 0; true")
    click(app, "#log a")
    time.sleep(2)
    # Other ways out: a script sending the window elsewhere, a new window for a file: URL.
    js(app, "location.href = 'https://example.org/away'; true")
    js(app, "const a = document.createElement('a'); a.href = 'file:///etc/passwd'; a.target = '_blank';"
            " document.body.append(a); a.click(); true")
    time.sleep(2)
    report(url=js(app, "location.href"), shows_run=js(app, "document.querySelector('#run-state').textContent"),
           title=on_gui(app, app.native.windowTitle))
    driver.close_window(app)


if __name__ == "__main__":
    sys.exit(driver.main())
