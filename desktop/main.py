"""The `pushbutton` command: a window by default, `--headless` for browsers.

Only the window path imports pywebview and the toolkit (in `desktop.app`); `--headless`, `check`
and `run` go straight to the server package and never load a GUI toolkit.
"""

from __future__ import annotations

import contextlib
import os
import sys

# What a Linux desktop needs for the window: the system's WebKitGTK 4.1 and its GObject bindings.
WEBKIT_PACKAGES = (
    "Debian, Ubuntu: sudo apt install libwebkit2gtk-4.1-0 gir1.2-webkit2-4.1\n"
    "Fedora, RHEL: sudo dnf install webkit2gtk4.1\n"
    "openSUSE: sudo zypper install libwebkit2gtk-4_1-0 typelib-1_0-WebKit2-4_1\n"
    "Arch: sudo pacman -S webkit2gtk-4.1"
)


def missing_toolkit(exc: BaseException) -> str | None:
    """What to install, if `exc` (from importing the window) says the system's web view is missing."""
    text = str(exc)
    if not sys.platform.startswith("linux"):
        return None
    if isinstance(exc, ValueError) and "not available" in text:  # gi.require_version: no such typelib
        return text
    if isinstance(exc, ImportError) and (exc.name == "gi" or "WebKit2" in text or "Gtk" in text):
        return text
    return None


def tell_missing_toolkit(why: str) -> None:
    """On the terminal and, when GTK itself is there, in a message box (a double-click shows no terminal)."""
    title = "Pushbutton needs WebKitGTK 4.1 to show its window"
    text = (f"This computer lacks the system's web view ({why}). Install it, then start Pushbutton again:\n\n"
            f"{WEBKIT_PACKAGES}\n\nOr serve a browser instead: pushbutton --headless")
    print(f"pushbutton: {title}\n{text}", file=sys.stderr)
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return
    try:
        import gi

        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk

        dialog = Gtk.MessageDialog(message_type=Gtk.MessageType.ERROR, buttons=Gtk.ButtonsType.CLOSE, text=title)
        dialog.set_title("Pushbutton")
        dialog.format_secondary_text(text)
        print("pushbutton: message box shown", file=sys.stderr, flush=True)
        dialog.run()
        dialog.destroy()
    except (ImportError, ValueError, RuntimeError):
        pass


def open_window(args, catalog, problems: list[str] | None = None) -> int:
    """`server.cli` calls this when no `--headless` was given; `catalog` is None (and `problems`
    says why) when the jobs.ini could not be loaded."""
    try:
        from desktop.app import open_window as open_app_window
    except (ImportError, ValueError) as exc:
        close_splash()
        why = missing_toolkit(exc)
        if why is not None:
            tell_missing_toolkit(why)
        elif isinstance(exc, ImportError):
            print(f"pushbutton: the desktop window is not installed ({exc.name or exc}); install it with "
                  "pip install 'pushbutton[desktop]', or serve browsers with: pushbutton --headless",
                  file=sys.stderr)
        else:
            raise
        for line in problems or []:
            print(line, file=sys.stderr)
        return 2
    return open_app_window(args, catalog, problems)


def close_splash() -> None:
    """Close the one-file build's splash screen (shown while it unpacks), if it shows one."""
    if "pyi_splash" in sys.modules:
        with contextlib.suppress(RuntimeError, OSError, ConnectionError):
            sys.modules["pyi_splash"].close()


def main(argv: list[str] | None = None) -> int:
    from server.cli import main as cli_main

    argv = sys.argv[1:] if argv is None else argv
    if "--headless" in argv or any(a in argv for a in ("check", "run", "hosts", "users", "audit", "backup",
                                                       "askpass", "-h", "--help")):
        close_splash()  # no window will come
    try:
        return cli_main(argv, window=open_window)
    finally:
        close_splash()


if __name__ == "__main__":
    sys.exit(main())
