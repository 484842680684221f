"""jobs.ini's `[schedule:NAME]` sections (filled in by the schedules work)."""

from __future__ import annotations

from dataclasses import dataclass

SCHEDULE_KEYS: tuple[str, ...] = ()


@dataclass
class Schedule:
    name: str


class ScheduleChecks:
    def schedule(self, name: str, section: str, items) -> Schedule:
        self.problem(section, None, "schedules are not supported yet")
        return Schedule(name)

    def check_schedules(self, schedules: dict, jobs: dict) -> None:
        pass
