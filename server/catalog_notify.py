"""jobs.ini's `[notify:NAME]` sections (filled in by the notifications work)."""

from __future__ import annotations

from dataclasses import dataclass

NOTIFY_KEYS: tuple[str, ...] = ()


@dataclass
class Notifier:
    name: str


class NotifyChecks:
    def notifier(self, name: str, section: str, items) -> Notifier:
        self.problem(section, None, "notifications are not supported yet")
        return Notifier(name)

    def check_notifiers(self, notifiers: dict, jobs: dict) -> None:
        pass
