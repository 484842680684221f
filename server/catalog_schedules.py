"""jobs.ini's `[schedule:NAME]` sections: a job started by the clock (server/schedules.py fires them).

Everything a schedule could get wrong is found at load, as `FILE:LINE: message`: the cron
expression and its zone (parsed by cronsim and zoneinfo, exactly as the scheduler will use them),
the job, and the parameter values, validated with the job's parameters as a start validates them.
Fire times are computed here, by cronsim in the schedule's zone (Debian cron's DST rules), and
handed on as UTC epochs: comparing instants, never local times.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tzlocal
from cronsim import CronSim, CronSimError

from server import params as P
from server.catalog_values import NAME_RULE, parse_bool, positive_duration

SCHEDULE_KEYS = ("job", "cron", "timezone", "enabled", "catchup", "catchup_within", "overlap")
SCHEDULE_PREFIX_KEYS = ("param.NAME",)
ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
           "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}
CATCHUP = ("no", "once")
OVERLAP = ("queue", "skip")
DST_MARGIN = 3 * 3600  # more than any zone's clock change
SKIP_LIMIT = 2000  # answers skipped at most: one per minute of DST_MARGIN, and then some
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
CRON_HELP = ("five fields (minute hour day-of-month month day-of-week, e.g. 0 2 * * *) "
             "or @hourly, @daily, @weekly, @monthly, @yearly")


def local_zone() -> tuple[str, dt.tzinfo]:
    """The server's own zone as an IANA name and zone (tzlocal: TZ, /etc/localtime, the registry)."""
    zone = tzlocal.get_localzone()
    return getattr(zone, "key", None) or str(zone), zone


@dataclass(eq=True)
class Schedule:
    name: str
    job: str = ""
    cron: str = ""  # as written, an @alias included
    expression: str = ""  # the five fields cronsim reads
    timezone: str = ""  # IANA name; the server's zone when jobs.ini names none
    zone: dt.tzinfo = dt.UTC
    params: dict[str, str] = field(default_factory=dict)  # as written; Runs.start validates them again
    enabled: bool = True
    catchup: bool = False  # `catchup = once`: a fire time missed (server down, asleep) runs once
    catchup_within: float = 86400.0  # ... if it was missed at most this long ago
    overlap: str = "queue"  # skip: no new run while this schedule's previous one is still active

    @property
    def user(self) -> str:
        """Who a run started by this schedule was started by, in history and the audit."""
        return f"schedule:{self.name}"

    def next_after(self, t: float) -> float | None:
        """The first fire time strictly after epoch `t` (None: never again). cronsim reads a
        fixed-time expression in naive local time, so inside a repeated hour it may start an hour
        early: instants are compared, and answers not after `t` skipped."""
        return self._first(CronSim(self.expression, dt.datetime.fromtimestamp(t, self.zone)), lambda x: x > t)

    def last_at_or_before(self, t: float) -> float | None:
        """The latest fire time at or before epoch `t`: counted back from a little later (DST
        moves local time by at most a few hours), the first answer not after `t`."""
        later = dt.datetime.fromtimestamp(int(t) + DST_MARGIN, self.zone)
        return self._first(CronSim(self.expression, later, reverse=True), lambda x: x <= t)

    @staticmethod
    def _first(times: CronSim, wanted) -> float | None:
        for _ in range(SKIP_LIMIT):
            try:
                found = next(times).timestamp()
            except StopIteration:
                return None
            if wanted(found):
                return found
        return None

    def upcoming(self, t: float, count: int = 3) -> list[float]:
        out: list[float] = []
        while len(out) < count and (t := self.next_after(t)) is not None:
            out.append(t)
        return out


def parse_cron(raw: str) -> str:
    """`cron =` as written -> the five fields cronsim reads, or ValueError saying what is wrong."""
    text = " ".join(raw.split())
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise ValueError(f"{raw!r} is not one of {', '.join(ALIASES)}")
        return ALIASES[text.lower()]
    if len(text.split()) != 5:
        raise ValueError(f"{raw!r}: expected {CRON_HELP}")
    now = dt.datetime.now(dt.UTC)
    try:
        next(CronSim(text, now))
    except CronSimError as exc:
        if all(_valid(" ".join(f if i == n else "*" for i, f in enumerate(text.split())), now) for n in range(5)):
            raise ValueError(f"{raw!r} never fires: no such date") from None  # 31 alone and 2 alone are fine
        raise ValueError(f"{raw!r}: {str(exc).lower()} field") from None
    except StopIteration:
        raise ValueError(f"{raw!r} never fires") from None
    return text


def _valid(cron: str, now: dt.datetime) -> bool:
    try:
        CronSim(cron, now)
    except CronSimError:
        return False
    return True


def parse_zone(raw: str) -> dt.tzinfo:
    try:
        return ZoneInfo(raw.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file
        raise ValueError(f"{raw!r} is not a time zone: use an IANA name such as Europe/Berlin or UTC") from None


class ScheduleChecks:
    """Mixed into the catalog's reader: `problem`, `warning` and `convert` come from it."""

    def schedule(self, name: str, section: str, items) -> Schedule:
        if not NAME_RE.match(name):
            self.problem(section, None, f"schedule name {NAME_RULE}")
        s = Schedule(name)
        s.timezone, s.zone = local_zone()
        for key, raw in items.items():
            if key.startswith("param."):
                pname = key[len("param."):]
                if not P.NAME_RE.match(pname):
                    self.problem(section, key, "expected param.NAME, NAME made of letters, digits and _")
                s.params[pname] = raw
            elif key == "job":
                s.job = raw.strip()
            elif key == "cron":
                s.cron = raw.strip()
                s.expression = self.convert(section, key, raw, parse_cron, "")
            elif key == "timezone":
                zone = self.convert(section, key, raw, parse_zone)
                if zone is not None:
                    s.timezone, s.zone = raw.strip(), zone
            elif key == "enabled":
                s.enabled = self.convert(section, key, raw, parse_bool, True)
            elif key in ("catchup", "overlap"):
                allowed = CATCHUP if key == "catchup" else OVERLAP
                word = raw.strip().lower()
                if word not in allowed:
                    self.problem(section, key, f"{raw!r} is not {' or '.join(allowed)}")
                elif key == "catchup":
                    s.catchup = word == "once"
                else:
                    s.overlap = word
            elif key == "catchup_within":
                s.catchup_within = self.convert(section, key, raw, positive_duration, s.catchup_within)
            else:
                self.problem(section, key, "unknown key")
        for key in ("job", "cron"):
            if key not in items:
                self.problem(section, None, f"missing {key} =")
        return s

    def check_schedules(self, schedules: dict[str, Schedule], jobs: dict) -> None:
        """Each schedule's job exists and takes its values, as a start would (a required
        parameter with neither a value here nor a default is an error now, not at 2 a.m.)."""
        for s in schedules.values():
            section = f"schedule:{s.name}"
            if not s.job:
                continue
            job = jobs.get(s.job)
            if job is None:
                self.problem(section, "job", f"no job {s.job!r}")
                continue
            try:
                P.validate(job.params, s.params)
            except P.ParamsError as exc:
                for pname, message in exc.fields.items():
                    key = f"param.{pname}"
                    if pname in s.params:
                        self.problem(section, key, message)
                    else:
                        self.problem(section, None, f"param.{pname}: {message}: give it a value here "
                                     f"(job {s.job!r} has no default for it)")
            for p in job.params:
                if p.secret and s.params.get(p.name):
                    self.warning(section, f"param.{p.name}", "a secret written in jobs.ini can be read by "
                                 "whoever can read the file")
