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
    """A real left click (button press and release events delivered to the web view, as the X
    server would) in the middle of the element, as the analyst clicks."""
    from gi.repository import Gdk, Gtk

    from desktop import gtk_ui

    box = json.loads(js(app, f"(() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect();"
                            " return JSON.stringify([r.left + r.width / 2, r.top + r.height / 2]); })()"))

    def press():
        view = gtk_ui.webkit_view(app.window)
        pointer = Gdk.Display.get_default().get_default_seat().get_pointer()
        for kind in (Gdk.EventType.BUTTON_PRESS, Gdk.EventType.BUTTON_RELEASE):
            event = Gdk.Event.new(kind)
            event.button.window = view.get_window()
            event.button.x, event.button.y = box
            event.button.button = 1
            event.button.time = Gtk.get_current_event_time()
            event.set_device(pointer)
            Gtk.main_do_event(event)

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
           title=on_gui(app, app.native.get_title))
    driver.close_window(app)


if __name__ == "__main__":
    sys.exit(driver.main())
