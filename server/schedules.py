"""The scheduler: starts each `[schedule:NAME]`'s run at its fire times, on the server's hub.

One greenlet wakes at the next fire time or after WAKE_MAX, whichever is first, and compares the
wall clock (`clock`, injectable) with each schedule's next fire time, a UTC epoch. A scheduled run
is an ordinary run (`Runs.start`, user `schedule:NAME`): limits, queue, history, audit, approvals.

Per schedule, a cursor says up to which instant every fire time has been dealt with. A fire time
noticed within GRACE of it fires; one noticed later was missed (the server was down, the machine
asleep, the clock jumped): it runs once if the schedule says `catchup = once` and it is recent
enough, otherwise it is logged and audited, never replayed tick by tick. A reload replaces the
schedules by name and keeps their cursors, so an edit never fires a time twice. Each fire time
dealt with (fired or skipped) is stored (`schedule_cursors`) before its run starts, so a restart
resumes from it: a time skipped or fired is never one missed, and one is never started twice.
A schedule not firing here (disabled, or in a window that runs none) has its cursor stored too,
when it begins to let times pass and at each time it lets pass: those were seen, not missed, so a
restart that finds it enabled again catches none of them up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import gevent
from gevent.event import Event

from server.catalog import Catalog
from server.catalog_schedules import Schedule
from server.events import in_pool
from server.run_record import iso
from server.runs import Runs

log = logging.getLogger("pushbutton")
WAKE_MAX = 30.0  # never sleep longer: a suspend or a clock change is seen within this
GRACE = 90.0  # a fire time noticed later than this was missed
CLOCK_RESET = 3 * 3600.0  # the clock went back this far: start over from the new time (as cron)


@dataclass
class Entry:
    schedule: Schedule
    cursor: float  # every fire time up to this epoch has been dealt with
    next: float | None  # the next fire time after the cursor; None: not firing here
    idle_next: float | None = None  # not firing here: the next time it lets pass (None: store now)


class Scheduler:
    def __init__(self, runs: Runs, window: bool = False, clock: Callable[[], float] = time.time):
        self.runs = runs
        self.window = window  # in the desktop window: fires only with `schedules_in_window = yes`
        self.clock = clock
        self.entries: dict[str, Entry] = {}
        self.resumed = False  # the stored cursors read at start-up and applied (_loop)
        self._wakeup = Event()
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        """On the server's hub: read where each schedule left off, then run; follow reloads."""
        self.runs.scheduler = self
        self.runs.on_catalog.append(self.update)
        self._greenlet = gevent.spawn(self._loop)

    def stop(self) -> None:
        if self.update in self.runs.on_catalog:
            self.runs.on_catalog.remove(self.update)
        if self._greenlet is not None:
            self._greenlet.kill()

    def wake(self) -> None:
        """Look at the clock now (after a reload; tests that moved their clock)."""
        self._wakeup.set()

    def active(self, catalog: Catalog) -> bool:
        return not self.window or catalog.settings.schedules_in_window

    def update(self, catalog: Catalog, cursors: dict[str, float] | None = None) -> None:
        """Replace the schedules by name. An unchanged one keeps its entry; a changed one keeps
        its cursor (a fire time already dealt with is not one again); a new one starts now, and
        says so in the history: a schedule removed once and added again by a reload must not
        take its old cursor at the next restart and catch up the times it did not exist."""
        now, entries = self.clock(), {}
        on = self.active(catalog)
        for name, s in catalog.schedules.items():
            old = self.entries.get(name)
            if old is not None and old.schedule == s and (old.next is not None) == (on and s.enabled):
                entries[name] = old
                continue
            cursor = old.cursor if old is not None else (cursors or {}).get(name, now)
            entries[name] = Entry(s, cursor, s.next_after(cursor) if on and s.enabled else None)
            if old is None and cursors is None and self.resumed:  # added by a reload
                self.runs.store.submit_here(save_cursor, name, now, callback=_unsaved)
        self.entries = entries
        self.wake()

    def _cursors(self) -> dict[str, float]:
        """Where each enabled schedule left off: its stored cursor, else (a database from before
        cursors were stored) when it last started a run. Fire times after it were missed."""
        found = {}
        try:
            stored = in_pool(self.runs.store.read, read_cursors)
        except Exception:  # history unreadable: nothing to catch up, scheduling goes on
            log.exception("schedules: cannot read where they left off")
            return found
        for s in self.runs.catalog.schedules.values():
            if not s.enabled:
                continue
            if s.name in stored:
                found[s.name] = stored[s.name]
                continue
            try:
                last = in_pool(self.runs.store.runs, s.job, None, 1, None, s.user)
            except Exception:
                log.exception("schedule %s: cannot read its last run", s.name)
                continue
            if last:
                found[s.name] = last[0]["created"]
        return found

    def _loop(self) -> None:
        self.update(self.runs.catalog, self._cursors())
        self.resumed = True
        while True:
            now = self.clock()
            try:
                self.tick(now)
            except Exception:  # a bug here must not end scheduling for good
                log.exception("scheduler")
            soonest = min((t for e in self.entries.values() for t in (e.next, e.idle_next) if t is not None),
                          default=now + WAKE_MAX)
            self._wakeup.clear()
            self._wakeup.wait(min(WAKE_MAX, max(0.01, soonest - now)))

    def tick(self, now: float) -> None:
        """Deal with every fire time up to `now`. Every entry moves on first, runs are started
        after (a start waits for the disk): a reload meanwhile copies cursors already past them."""
        work = []
        for entry in list(self.entries.values()):
            s = entry.schedule
            if now < entry.cursor - CLOCK_RESET:
                entry.cursor = now
                entry.next = s.next_after(now) if entry.next is not None else None
                continue
            due = entry.next
            if due is None or due > now:
                entry.cursor = max(entry.cursor, now)
                if due is None and (entry.idle_next is None or entry.idle_next <= now):
                    entry.idle_next = s.next_after(now)
                    self.runs.store.submit_here(save_cursor, s.name, entry.cursor, callback=_unsaved)
                continue
            latest = due if now - due <= GRACE else (s.last_at_or_before(now) or due)
            entry.cursor, entry.next = now, s.next_after(now)
            work.append((s, latest))
        for s, latest in work:
            self.runs.store.submit_here(save_cursor, s.name, latest, callback=_unsaved)  # before the run's insert
            if now - latest <= GRACE:
                self._fire(s, latest, "due")
            elif s.catchup and now - latest <= s.catchup_within:
                self._fire(s, latest, "catchup")
            else:
                self._skip(s, latest, "missed (the server was not running, or the machine slept)")

    def _fire(self, s: Schedule, due: float, why: str) -> None:
        if s.overlap == "skip" and any(r.record.get("user") == s.user for r in self.runs.active.values()):
            self._skip(s, due, "its previous run is still active (overlap = skip)")
            return
        try:
            run = self.runs.start(s.job, dict(s.params), confirmed=True, user=s.user)
        except Exception as exc:  # the job is gone, the server is closing, a value went stale
            log.warning("schedule %s: could not start job %s: %s", s.name, s.job, exc)
            self._skip(s, due, f"could not start: {exc}")
            return
        log.info("schedule %s: started run %s of job %s (%s at %s)", s.name, run.id, s.job,
                 "caught up, due" if why == "catchup" else "due", iso(due))

    def _skip(self, s: Schedule, due: float, reason: str) -> None:
        log.info("schedule %s: fire time %s skipped: %s", s.name, iso(due), reason)
        if self.runs.audit is not None:
            self.runs.audit.record("schedule.skip", s.user, target=f"job:{s.job}",
                                   detail={"due": iso(due), "reason": reason})


def save_cursor(conn, name: str, fire: float) -> None:
    conn.execute("INSERT INTO schedule_cursors (name, cursor) VALUES (?, ?) "
                 "ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor", (name, fire))


def read_cursors(conn) -> dict[str, float]:
    return dict(conn.execute("SELECT name, cursor FROM schedule_cursors"))


def _unsaved(_, error: Exception | None) -> None:
    if error is not None:
        log.warning("schedules: cannot store the last fire time dealt with (a restart may miss or repeat it): %s",
                    error)


def public(runs: Runs, job_id: str) -> list[dict]:
    """A job's schedules as `GET /api/jobs` shows them; `next` is null where it will not fire
    (disabled, or in the desktop window without `schedules_in_window`)."""
    scheduler: Scheduler | None = runs.scheduler
    out = []
    for s in runs.catalog.schedules.values():
        if s.job != job_id:
            continue
        entry = scheduler.entries.get(s.name) if scheduler is not None else None
        nxt = entry.next if entry is not None and entry.schedule == s else None
        out.append({"name": s.name, "cron": s.cron, "timezone": s.timezone, "enabled": s.enabled,
                    "next": iso(nxt), "upcoming": [iso(t) for t in s.upcoming(nxt - 1, 3)] if nxt else []})
    return out
