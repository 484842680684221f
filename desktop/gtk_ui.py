"""The window's toolkit on Linux: GTK 3 and WebKitGTK 4.1 from the system, through PyGObject.

pywebview's GTK backend owns the main thread and its GLib loop; everything here runs on that
thread (`MainThread` hands callables to it with `GLib.idle_add`). Dialogs are plain Gtk dialogs
run modally (`Gtk.Dialog.run` spins a nested loop, so the page keeps painting); their texts are
plain labels, never markup (ssh's keyboard-interactive text comes from the server).
`OPEN_DIALOGS` lists the dialogs on screen, for the tests that answer them as an analyst would.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("Gdk", "3.0")
gi.require_version("WebKit2", "4.1")
from gi.repository import Gdk, GLib, Gtk, WebKit2  # noqa: E402

from server.runtime import call_via  # noqa: E402

log = logging.getLogger("pushbutton")
OPEN_DIALOGS: list[dict] = []  # {"dialog", "buttons": {label: Gtk.Button}, "entry", "label"} while shown


class MainThread:
    """Run a function on the GTK thread from any thread."""

    def __call__(self, fn: Callable[[], object]) -> None:
        def run():
            try:
                fn()
            except Exception:
                log.exception("error on the GUI thread")
            return False  # once

        GLib.idle_add(run)

    def wait(self, fn: Callable[[], object], timeout: float = 10) -> object:
        """Run `fn` on the GTK thread and return its result (call from another thread only)."""
        return call_via(self, fn, timeout=timeout)


def _run_dialog(dialog: Gtk.Dialog, buttons: dict, entry: Gtk.Entry | None = None,
                label: Gtk.Label | None = None) -> int:
    seen = {"dialog": dialog, "buttons": buttons, "entry": entry, "label": label}
    OPEN_DIALOGS.append(seen)
    dialog.show_all()
    try:
        return dialog.run()
    finally:
        OPEN_DIALOGS.remove(seen)


def ask_stop_runs(parent: Gtk.Window, title: str, text: str, details: str, stop: str, keep: str) -> bool:
    """The close prompt. True = the analyst chose `stop`; Esc and closing it mean `keep`."""
    dialog = Gtk.MessageDialog(transient_for=parent, modal=True, destroy_with_parent=True,
                               message_type=Gtk.MessageType.WARNING, buttons=Gtk.ButtonsType.NONE, text=text)
    dialog.set_title(title)
    dialog.format_secondary_text(details)
    stop_button = dialog.add_button(stop, Gtk.ResponseType.ACCEPT)
    stop_button.get_style_context().add_class("destructive-action")
    keep_button = dialog.add_button(keep, Gtk.ResponseType.CANCEL)
    dialog.set_default_response(Gtk.ResponseType.CANCEL)
    keep_button.grab_focus()
    try:
        return _run_dialog(dialog, {stop: stop_button, keep: keep_button}) == Gtk.ResponseType.ACCEPT
    finally:
        dialog.destroy()


def ask_text(parent: Gtk.Window, title: str, question: str, secret: bool) -> str | None:
    """One line of text (hidden if `secret`); None = Cancel, Esc or closed."""
    dialog = Gtk.Dialog(title=title, transient_for=parent, modal=True, destroy_with_parent=True)
    cancel = dialog.add_button("Cancel", Gtk.ResponseType.CANCEL)
    ok = dialog.add_button("OK", Gtk.ResponseType.OK)
    dialog.set_default_response(Gtk.ResponseType.OK)
    label = Gtk.Label(label=question, xalign=0, selectable=False, wrap=True, max_width_chars=70)
    entry = Gtk.Entry(visibility=not secret, activates_default=True, width_chars=40)
    box = dialog.get_content_area()
    box.set_spacing(8)
    box.set_border_width(12)
    box.add(label)
    box.add(entry)
    entry.grab_focus()
    try:
        answer = _run_dialog(dialog, {"Cancel": cancel, "OK": ok}, entry, label)
        text = entry.get_text() if answer == Gtk.ResponseType.OK else None
        entry.set_text("")
        return text
    finally:
        dialog.destroy()


def show_error(title: str, text: str) -> None:
    """A message box before any window exists (its own short loop)."""
    dialog = Gtk.MessageDialog(modal=True, message_type=Gtk.MessageType.ERROR, buttons=Gtk.ButtonsType.CLOSE,
                               text=title)
    dialog.set_title("Pushbutton")
    dialog.format_secondary_text(text)
    OPEN_DIALOGS.append({"dialog": dialog, "buttons": {}, "entry": None, "label": None})
    dialog.run()
    dialog.destroy()


# -- the window -----------------------------------------------------------------------------------

def is_iconified(window: Gtk.Window) -> bool:
    gdk = window.get_window()
    return bool(gdk is not None and gdk.get_state() & Gdk.WindowState.ICONIFIED)


def is_fullscreen(window: Gtk.Window) -> bool:
    gdk = window.get_window()
    return bool(gdk is not None and gdk.get_state() & Gdk.WindowState.FULLSCREEN)


def focused(window: Gtk.Window) -> bool:
    return window.is_active() and window.get_visible() and not is_iconified(window)


def bring_forward(window: Gtk.Window) -> None:
    """Un-minimise (or show again), raise and focus; the urgency hint for window managers that
    refuse to hand over focus."""
    window.deiconify()
    if not window.get_mapped():  # hidden: focus can only be given once the X server has mapped it

        def focus_once_mapped(*_):
            window.disconnect(handler[0])
            window.present_with_time(Gdk.CURRENT_TIME)

        handler = [window.connect("map-event", focus_once_mapped)]
    window.present_with_time(Gdk.CURRENT_TIME)
    alert(window)


def alert(window: Gtk.Window) -> None:
    """Ask for attention (taskbar/dock urgency) until the window is focused again."""
    if window.is_active():
        return
    window.set_urgency_hint(True)

    def clear(*_):
        window.set_urgency_hint(False)
        window.disconnect(handler[0])

    handler = [window.connect("focus-in-event", clear)]


def geometry(window: Gtk.Window) -> tuple[int, int, int, int]:
    """(width, height, x, y): the content size and the frame's position, as `move`/`resize` take them."""
    width, height = window.get_size()
    x, y = window.get_position()
    return width, height, x, y


def monitors() -> list[tuple[int, int, int, int]]:
    display = Gdk.Display.get_default()
    found = []
    for i in range(display.get_n_monitors() if display else 0):
        area = display.get_monitor(i).get_geometry()
        found.append((area.x, area.y, area.width, area.height))
    return found


def center(window: Gtk.Window) -> None:
    """Move to the middle of the first screen (pywebview has already placed it)."""
    screens = monitors()
    if screens:
        x, y, width, height = screens[0]
        w, h = window.get_size()
        window.move(x + max(0, (width - w) // 2), y + max(0, (height - h) // 2))


def set_icon(path: str) -> None:
    Gtk.Window.set_default_icon_from_file(path)


def webkit_view(window) -> WebKit2.WebView:
    """The WebKit view inside pywebview's window."""
    from webview.platforms.gtk import BrowserView

    return BrowserView.instances[window.uid].webview


def quit_app() -> None:
    """End the GTK loop as a logout would: no close prompt."""
    from webview.platforms import gtk as backend

    if backend._app is not None:
        backend._app.quit()


ASKS = True  # ssh's questions get a dialog


def handle(window) -> Gtk.Window:
    """What the functions above take: the Gtk window behind pywebview's."""
    return window.native
