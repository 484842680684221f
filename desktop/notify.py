"""Tell the analyst when a run ends, or waits for their approval, while they look at something else.

`notice_for` decides (pure, tested without a display); `Notifier` delivers: on Linux through
`notify-send` (freedesktop notifications: GNOME, KDE, XFCE...; a desktop without a notification
service simply shows none), and in any case the window asks for attention (the toolkit's urgency
hint: taskbar flash, dock bounce).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("pushbutton")

WORDS = {"succeeded": "succeeded", "failed": "failed", "timed_out": "timed out"}


@dataclass(frozen=True)
class Notice:
    title: str
    body: str
    ok: bool


def notice_for(record: dict, job_title: str, focused: bool) -> Notice | None:
    """The notice for a run that just changed state, or None if there is nothing to say.

    Only ends the analyst did not cause are worth it: a cancel came from them, and `interrupted`
    only happens when the app itself stops. A run that starts waiting for approval is worth it
    too: the caller passes only those this user may approve (nothing runs until someone does)."""
    state = record.get("state")
    if focused or (state not in WORDS and state != "awaiting_approval"):
        return None
    if state == "awaiting_approval":
        by = record.get("user")
        return Notice(f"{job_title} waits for your approval",
                      f"Run {record.get('id')}" + (f" was requested by {by}." if by else " was requested."), True)
    detail = f"Run {record.get('id')}"
    code = record.get("exit_code")
    if state == "failed" and code is not None:
        detail += f" exited with status {code}"
    elif state == "timed_out":
        detail += " ran past its time limit and was stopped"
    else:
        detail += " finished"
    return Notice(f"{job_title} {WORDS[state]}", detail + ".", state == "succeeded")


class Notifier:
    """Delivery; call on the GUI thread. `focused()` and `alert()` come from the window's toolkit."""

    def __init__(self, app_title: str, focused: Callable[[], bool], alert: Callable[[], None]):
        self.app_title = app_title
        self.focused = focused
        self.alert = alert

    def show(self, notice: Notice) -> list[str]:
        """Deliver; return the channels used (for the log and the tests)."""
        used = []
        if sys.platform.startswith("linux") and shutil.which("notify-send"):
            argv = ["notify-send", "--app-name", self.app_title, "--urgency",
                    "normal" if notice.ok else "critical", notice.title, notice.body]
            threading.Thread(target=_run_quietly, args=(argv,), daemon=True).start()
            used.append("notify-send")
        self.alert()
        used.append("alert")
        log.info("notified: %s (%s)", notice.title, ", ".join(used))
        return used


def _run_quietly(argv: list[str]) -> None:
    try:
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("notify-send failed: %s", exc)
