"""The scheduler: fire times across DST, real runs started by a schedule, catch-up, reloads,
missed and skipped fire times, the desktop window. Clocks are injected: a test moves time."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
import time
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import gevent
import httpx
import pytest

from server import catalog as C
from server.auth.audit import Audit
from server.catalog_schedules import Schedule, parse_cron
from server.runs import Runs
from server.runtime import Server
from server.schedules import Scheduler, public
from server.store import Store
from tests.helpers import wait_for


class Clock:
    """A wall clock that stands still until a test moves it."""

    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def at(text: str, zone: str = "UTC", fold: int = 0) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone), fold=fold).timestamp()


def local(t: float, zone: str) -> str:
    return dt.datetime.fromtimestamp(t, ZoneInfo(zone)).isoformat()


def schedule(cron: str, zone: str) -> Schedule:
    return Schedule("s", expression=parse_cron(cron), timezone=zone, zone=ZoneInfo(zone))


def jobs_ini(write_jobs, schedules: str, job: str = "command = true", settings: str = "") -> C.Catalog:
    return C.load(write_jobs(f"{settings}[job:j]\n{job}\n" + textwrap.dedent(schedules)))


@pytest.fixture
def make_runs(tmp_path):
    """Runs on this thread's hub with a real store (and audit) in tmp_path/NAME."""
    made = []

    def make(catalog: C.Catalog, data: str = "data") -> Runs:
        store = Store(tmp_path / data)
        runs = Runs(catalog, store)
        runs.audit = Audit(store)
        made.append((runs, store))
        return runs

    yield make
    for runs, store in made:
        runs.shutdown(timeout=30)
        store.close()


def settle(predicate, timeout: float = 10):
    """Wait on the hub (runs progress meanwhile) until `predicate()` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        gevent.sleep(0.02)


def started_by(runs: Runs, name: str) -> list[dict]:
    return runs.store.runs(user=f"schedule:{name}", limit=500)


def skips(runs: Runs, count: int) -> list[dict]:
    """The schedule.skip audit entries, once there are `count` (the store's writer thread writes
    them, when a busy machine gives it a CPU), and no more by 0.1 s later."""
    settle(lambda: len(runs.audit.query(action="schedule.skip")) >= count)
    gevent.sleep(0.1)
    return runs.audit.query(action="schedule.skip")


def walk(scheduler: Scheduler, clock: Clock, runs: Runs, until: float, step: float = 60) -> list[tuple[str, float]]:
    """Move the clock in steps, ticking at each; return (schedule user, clock) for each run started."""
    seen = runs.watch()
    fired = []
    while clock.t < until:
        clock.t = min(until, clock.t + step)
        scheduler.tick(clock.t)
        while not seen.empty():
            record = seen.get()
            if record["state"] in ("queued", "awaiting_approval") and record["user"]:
                fired.append((record["user"], clock.t))
    runs.unwatch(seen)
    return fired


# -- fire times ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cron, zone, start, expected", [
    # spring forward: 02:30 does not exist that night; it runs at once, at 03:00, once
    ("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00",
     ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]),
    ("30 2 * * *", "America/New_York", "2026-03-07T12:00",
     ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
    # fall back: 02:30 (Berlin), 01:30 (New York) happen twice; a daily job runs the first time only
    ("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00",
     ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]),
    ("30 1 * * *", "America/New_York", "2026-10-31T12:00",
     ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
    # hourly (and finer) runs in both repeated hours and not in the skipped one
    ("0 * * * *", "Europe/Berlin", "2026-10-25T01:10",
     ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"]),
    ("0 * * * *", "America/New_York", "2026-03-08T01:10",
     ["2026-03-08T03:00:00-04:00", "2026-03-08T04:00:00-04:00"]),
    ("@daily", "UTC", "2026-10-25T00:00", ["2026-10-26T00:00:00+00:00", "2026-10-27T00:00:00+00:00"]),
])
def test_fire_times_follow_the_zone_across_dst_as_debian_cron_does(cron, zone, start, expected):
    s = schedule(cron, zone)
    assert [local(t, zone) for t in s.upcoming(at(start, zone), len(expected))] == expected


def test_the_next_fire_time_is_always_after_the_instant_asked_even_inside_a_repeated_hour():
    s = schedule("30 1 * * *", "America/New_York")
    second_pass = at("2026-11-01T01:10", "America/New_York", fold=1)  # after 01:30 EDT already fired
    assert local(s.next_after(second_pass), "America/New_York") == "2026-11-02T01:30:00-05:00"
    assert local(s.last_at_or_before(second_pass), "America/New_York") == "2026-11-01T01:30:00-04:00"


def test_a_scheduler_with_a_fixed_clock_fires_each_dst_night_once_per_fire_time(write_jobs, make_runs):
    catalog = jobs_ini(write_jobs, """
        [schedule:berlin]
        job = j
        cron = 30 2 * * *
        timezone = Europe/Berlin
        [schedule:newyork]
        job = j
        cron = 30 1 * * *
        timezone = America/New_York
        [schedule:hourly]
        job = j
        cron = 0 * * * *
        timezone = Europe/Berlin
        """)
    runs = make_runs(catalog)
    for night, zone in (("2026-10-25", "Europe/Berlin"), ("2026-03-29", "Europe/Berlin")):
        clock = Clock(at(f"{night}T00:30", zone))
        scheduler = Scheduler(runs, clock=clock)
        scheduler.update(catalog)
        fired = walk(scheduler, clock, runs, at(f"{night}T04:30", zone))
        berlin = [local(t, zone) for user, t in fired if user == "schedule:berlin"]
        hourly = [local(t, zone) for user, t in fired if user == "schedule:hourly"]
        if night.endswith("10-25"):  # fall back: the daily job once, the hourly one in both 02:00s
            assert berlin == ["2026-10-25T02:30:00+02:00"]
            assert hourly == ["2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00",
                              "2026-10-25T03:00:00+01:00", "2026-10-25T04:00:00+01:00"]
        else:  # spring forward: 02:30 never happens; the daily job runs at 03:00, once
            assert berlin == ["2026-03-29T03:00:00+02:00"]
            assert hourly == ["2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"]
    clock = Clock(at("2026-11-01T00:00", "America/New_York"))
    scheduler = Scheduler(runs, clock=clock)
    scheduler.update(catalog)
    fired = walk(scheduler, clock, runs, at("2026-11-01T03:00", "America/New_York"))
    assert [local(t, "America/New_York") for user, t in fired if user == "schedule:newyork"] == [
        "2026-11-01T01:30:00-04:00"]


# -- a real server ------------------------------------------------------------------------------

def api_of(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30)


def scheduled_runs(api: httpx.Client, name: str) -> list[dict]:
    return api.get("/api/runs", params={"user": f"schedule:{name}"}).json()["runs"]


def test_a_schedule_starts_a_real_run_that_lands_in_history_as_started_by_the_schedule(write_jobs, tmp_path):
    catalog = jobs_ini(write_jobs, """
        [schedule:every-minute]
        job = j
        cron = * * * * *
        timezone = Europe/Berlin
        param.who = the clock
        """, job="command = echo hello {who}\nparam.who.required = yes")
    clock = Clock(time.time())
    server = Server(catalog, tmp_path / "data", clock=clock)
    server.start()
    try:
        api = api_of(server)
        listed = wait_for(lambda: api.get("/api/jobs").json()["jobs"][0]["schedules"][0]["next"])
        item = api.get("/api/jobs").json()["jobs"][0]["schedules"][0]
        assert (item["name"], item["cron"], item["timezone"], item["enabled"]) == (
            "every-minute", "* * * * *", "Europe/Berlin", True)
        due = dt.datetime.fromisoformat(listed.replace("Z", "+00:00")).timestamp()
        assert due > clock.t and due - clock.t <= 60
        assert len(item["upcoming"]) == 3 and item["upcoming"][0] == listed
        assert scheduled_runs(api, "every-minute") == []
        clock.t = due + 1
        server.call(server.scheduler.wake)
        run = wait_for(lambda: [r for r in scheduled_runs(api, "every-minute") if r["state"] == "succeeded"])[0]
        assert run["user"] == "schedule:every-minute" and run["params"] == {"who": "the clock"}
        lines = [line for e in server.runs.store.events(run["id"], 0, 200, "output")
                 for line in json.loads(e[2])["lines"]]
        assert lines == ["hello the clock"]
        later = api.get("/api/jobs").json()["jobs"][0]
        assert later["last_run"]["user"] == "schedule:every-minute"
        assert later["schedules"][0]["next"] > listed  # the next fire time moved on
        assert len(scheduled_runs(api, "every-minute")) == 1  # one fire time, one run
    finally:
        server.stop(30)


def test_catchup_once_runs_a_missed_fire_time_once_at_start_up_and_the_default_does_not(write_jobs, tmp_path):
    catalog = jobs_ini(write_jobs, """
        [schedule:caught]
        job = j
        cron = */10 * * * *
        catchup = once
        [schedule:dropped]
        job = j
        cron = */10 * * * *
        """)
    clock = Clock(time.time())
    first = Server(catalog, tmp_path / "data", clock=clock)
    first.start()
    try:
        api = api_of(first)
        wait_for(lambda: all(e.next for e in first.scheduler.entries.values()))
        boundary = first.scheduler.entries["caught"].next
        clock.t = boundary + 1  # every schedule fires once while it is up
        first.call(first.scheduler.wake)
        wait_for(lambda: all(len(scheduled_runs(api, n)) == 1 for n in ("caught", "dropped")))
    finally:
        first.stop(30)
    # The server was down for two hours: twelve fire times passed. It starts again half-way between
    # two of them: at a fire time's very moment, `dropped` would rightly fire (it is due, not missed).
    clock.t = boundary + 2 * 3600 + 300
    second = Server(catalog, tmp_path / "data", clock=clock)
    second.start()
    try:
        api = api_of(second)
        wait_for(lambda: len(scheduled_runs(api, "caught")) == 2)
        second.call(second.scheduler.wake)
        time.sleep(0.5)
        assert len(scheduled_runs(api, "caught")) == 2  # once, not once per missed fire time
        assert len(scheduled_runs(api, "dropped")) == 1
    finally:
        second.stop(30)


def test_catchup_within_bounds_how_old_a_missed_fire_time_may_be(write_jobs, make_runs):
    catalog = jobs_ini(write_jobs, """
        [schedule:recent]
        job = j
        cron = 0 2 * * *
        catchup = once
        catchup_within = 12h
        [schedule:stale]
        job = j
        cron = 0 2 * * *
        catchup = once
        catchup_within = 3h
        """)
    runs = make_runs(catalog)
    down_since = at("2026-06-01T03:00")  # the last run: 02:00 the day before; down since then
    clock = Clock(at("2026-06-02T08:00"))  # 02:00 was missed, 6 h ago
    scheduler = Scheduler(runs, clock=clock)
    scheduler.update(catalog, {"recent": down_since, "stale": down_since})
    scheduler.tick(clock.t)
    settle(lambda: len(started_by(runs, "recent")) == 1)
    assert started_by(runs, "stale") == []
    [entry] = skips(runs, 1)
    assert entry["user"] == "schedule:stale" and entry["detail"]["due"] == "2026-06-02T02:00:00.000Z"
    assert "missed" in entry["detail"]["reason"]
    assert scheduler.entries["stale"].next == at("2026-06-03T02:00")


def restarted(runs: Runs, clock: Clock) -> Scheduler:
    """A new scheduler as a restarted server starts one: it reads where each schedule left off."""
    scheduler = Scheduler(runs, clock=clock)
    scheduler.start()
    gevent.sleep(0.3)
    scheduler.stop()
    return scheduler


def fired_once(runs: Runs, catalog: C.Catalog, clock: Clock, name: str, when: str) -> Scheduler:
    """A scheduler that has started `name`'s run for the fire time just before `when`."""
    scheduler = Scheduler(runs, clock=clock)
    scheduler.update(catalog)
    clock.t = at(when)
    scheduler.tick(clock.t)
    settle(lambda: len(started_by(runs, name)) == 1)
    return scheduler


def test_a_restart_resumes_from_the_last_fire_time_dealt_with_and_replays_no_skipped_one(
        write_jobs, make_runs, monkeypatch):
    """11:00 is skipped (overlap = skip: 10:00 still runs), the run ends, the server restarts at
    11:20: nothing was missed while it was down, so `catchup = once` has nothing to run."""
    catalog = jobs_ini(write_jobs, """
        [schedule:hourly]
        job = j
        cron = 0 * * * *
        overlap = skip
        catchup = once
        """, job="command = sleep 300")
    clock = Clock(at("2026-06-01T09:59:30"))
    monkeypatch.setattr("server.runs.time", SimpleNamespace(time=clock, monotonic=time.monotonic))  # runs' times
    runs = make_runs(catalog)
    first = fired_once(runs, catalog, clock, "hourly", "2026-06-01T10:00:01")
    clock.t = at("2026-06-01T11:00:01")
    first.tick(clock.t)
    assert [e["detail"]["due"] for e in skips(runs, 1)] == ["2026-06-01T11:00:00.000Z"]
    [run] = runs.active.values()
    runs.stop(run, "cancelled")
    settle(lambda: not runs.active)
    clock.t = at("2026-06-01T11:20:00")
    assert restarted(runs, clock).entries["hourly"].next == at("2026-06-01T12:00")
    assert len(started_by(runs, "hourly")) == 1, "the restart started a run for 11:00, already skipped"
    assert len(skips(runs, 1)) == 1


def test_at_start_up_a_missed_fire_time_of_a_catchup_no_schedule_is_logged_and_audited(
        write_jobs, make_runs, caplog):
    catalog = jobs_ini(write_jobs, "[schedule:dropped]\njob = j\ncron = 0 2 * * *\n")
    clock = Clock(at("2026-06-01T01:59:30"))
    runs = make_runs(catalog)
    fired_once(runs, catalog, clock, "dropped", "2026-06-01T02:00:01")
    clock.t = at("2026-06-02T08:00:00")  # the server was down from 03:00 to 08:00: 02:00 was missed
    with caplog.at_level("INFO", logger="pushbutton"):
        restarted(runs, clock)
    [entry] = skips(runs, 1)
    assert (entry["user"], entry["detail"]["due"]) == ("schedule:dropped", "2026-06-02T02:00:00.000Z")
    assert "missed" in entry["detail"]["reason"]
    assert "schedule dropped: fire time 2026-06-02T02:00:00.000Z skipped: missed" in caplog.text
    assert len(started_by(runs, "dropped")) == 1


def test_a_schedule_added_again_by_a_reload_catches_up_nothing_from_before_at_the_next_restart(
        write_jobs, make_runs):
    """`hourly` fires at 10:00, is removed, and is added again at 15:30 by a reload; the server
    restarts at 15:40, before its next fire time. Its cursor from 10:00 must not make the restart
    catch up the hours it did not exist."""
    section = "[schedule:hourly]\njob = j\ncron = 0 * * * *\ncatchup = once\ncatchup_within = 1d\n"
    catalog = jobs_ini(write_jobs, section)
    clock = Clock(at("2026-06-01T09:59:30"))
    runs = make_runs(catalog)
    first = Scheduler(runs, clock=clock)
    first.start()
    gevent.sleep(0.2)
    clock.t = at("2026-06-01T10:00:01")
    first.tick(clock.t)
    settle(lambda: len(started_by(runs, "hourly")) == 1)
    clock.t = at("2026-06-01T11:30:00")
    first.update(jobs_ini(write_jobs, ""))  # removed by a reload
    clock.t = at("2026-06-01T15:30:00")
    first.update(jobs_ini(write_jobs, section))  # added again
    first.stop()
    settle(lambda: not runs.active)
    clock.t = at("2026-06-01T15:40:00")
    assert restarted(runs, clock).entries["hourly"].next == at("2026-06-01T16:00")
    assert len(started_by(runs, "hourly")) == 1, "the restart caught up a time from before it was added"


@pytest.mark.parametrize("stopped, restart", [("12:30:00", "12:40:00"), ("12:00:30", "12:01:00")])
def test_a_fire_time_that_came_while_the_running_server_had_the_schedule_disabled_is_never_caught_up(
        write_jobs, make_runs, stopped, restart):
    """`hourly` fires at 10:00 and is disabled by a reload at 10:30; the server runs on, so 11:00
    and 12:00 come while it is off, and it is stopped. Re-enabled in jobs.ini, it restarts: those
    times were not missed (the server saw them, disabled), so even `catchup = once` runs none,
    nor does a restart within GRACE of 12:00 run 12:00 as due."""
    section = "[schedule:hourly]\njob = j\ncron = 0 * * * *\ncatchup = once\ncatchup_within = 1d\n"
    catalog = jobs_ini(write_jobs, section)
    clock = Clock(at("2026-06-01T09:59:30"))
    runs = make_runs(catalog)
    first = fired_once(runs, catalog, clock, "hourly", "2026-06-01T10:00:01")
    first.resumed = True
    clock.t = at("2026-06-01T10:30:00")
    first.update(jobs_ini(write_jobs, section + "enabled = no\n"))
    assert walk(first, clock, runs, at(f"2026-06-01T{stopped}")) == []
    settle(lambda: not runs.active)
    clock.t = at(f"2026-06-01T{restart}")
    assert restarted(runs, clock).entries["hourly"].next == at("2026-06-01T13:00")
    assert len(started_by(runs, "hourly")) == 1, "the restart caught up a time the schedule was disabled"


# -- reloads, clock jumps, overlap, disabled ------------------------------------------------------

def test_a_reload_replaces_schedules_by_name_and_never_fires_a_time_twice(write_jobs, make_runs):
    text = "[schedule:a]\njob = j\ncron = 0 10 * * *\n[schedule:b]\njob = j\ncron = 0 10 * * *\n"
    catalog = jobs_ini(write_jobs, text)
    runs = make_runs(catalog)
    clock = Clock(at("2026-06-01T09:59:30"))
    scheduler = Scheduler(runs, clock=clock)
    scheduler.start()  # follows runs.replace_catalog from here on
    try:
        settle(lambda: scheduler.entries)
        clock.t = at("2026-06-01T10:00:01")
        scheduler.tick(clock.t)
        settle(lambda: len(started_by(runs, "a")) == len(started_by(runs, "b")) == 1)
        # The same file again; a changed `a` whose new times include 10:00; a new `c` due at 10:00.
        runs.replace_catalog(jobs_ini(write_jobs, text))
        runs.replace_catalog(jobs_ini(write_jobs, text.replace("0 10 * * *", "0,5 10 * * *", 1)
                                      + "[schedule:c]\njob = j\ncron = 0 10 * * *\n"))
        assert set(scheduler.entries) == {"a", "b", "c"}
        assert runs.on_catalog.count(scheduler.update) == 1
        for _ in range(3):
            clock.t += 1
            scheduler.tick(clock.t)
        gevent.sleep(0.2)
        assert [len(started_by(runs, n)) for n in "abc"] == [1, 1, 0]
        clock.t = at("2026-06-01T10:05:01")  # `a`'s new time
        scheduler.tick(clock.t)
        settle(lambda: len(started_by(runs, "a")) == 2)
        runs.replace_catalog(jobs_ini(write_jobs, "[schedule:b]\njob = j\ncron = 0 10 * * *\n"))
        assert set(scheduler.entries) == {"b"}  # a removed schedule is gone
    finally:
        scheduler.stop()


def test_a_reload_arriving_while_due_runs_are_being_started_fires_nothing_twice(write_jobs, make_runs):
    text = "[schedule:a]\njob = j\ncron = 0 10 * * *\n[schedule:b]\njob = j\ncron = 0 10 * * *\n"
    catalog = jobs_ini(write_jobs, text)
    runs = make_runs(catalog)
    clock = Clock(at("2026-06-01T09:59:30"))
    scheduler = Scheduler(runs, clock=clock)
    scheduler.update(catalog)
    runs.on_catalog.append(scheduler.update)
    changed = jobs_ini(write_jobs, text.replace("0 10 * * *", "0,30 10 * * *"))  # both still name 10:00
    clock.t = at("2026-06-01T10:00:01")
    gevent.spawn(runs.replace_catalog, changed)  # runs while the first start waits for the disk
    scheduler.tick(clock.t)
    assert scheduler.entries["b"].schedule.cron == "0,30 10 * * *"  # the reload did land mid-tick
    for _ in range(3):
        clock.t += 1
        scheduler.tick(clock.t)
    gevent.sleep(0.2)
    assert [len(started_by(runs, n)) for n in "ab"] == [1, 1]


def test_after_a_suspend_or_a_clock_jump_a_stale_fire_time_never_fires_in_a_burst(write_jobs, make_runs):
    catalog = jobs_ini(write_jobs, """
        [schedule:plain]
        job = j
        cron = */5 * * * *
        [schedule:caught]
        job = j
        cron = */5 * * * *
        catchup = once
        """)
    runs = make_runs(catalog)
    clock = Clock(at("2026-06-01T10:00:01"))
    scheduler = Scheduler(runs, clock=clock)
    scheduler.update(catalog, {"plain": at("2026-06-01T09:59"), "caught": at("2026-06-01T09:59")})
    scheduler.tick(clock.t)
    settle(lambda: len(started_by(runs, "plain")) == len(started_by(runs, "caught")) == 1)
    clock.t = at("2026-06-01T13:02:30")  # asleep for three hours: 36 fire times passed
    scheduler.tick(clock.t)
    settle(lambda: len(started_by(runs, "caught")) == 2)  # caught up once
    assert len(started_by(runs, "plain")) == 1  # missed, not replayed
    assert [e["user"] for e in skips(runs, 1)] == ["schedule:plain"]
    assert scheduler.entries["plain"].next == at("2026-06-01T13:05")
    clock.t = at("2026-06-01T13:05:02")
    scheduler.tick(clock.t)
    settle(lambda: len(started_by(runs, "plain")) == 2)
    assert len(started_by(runs, "caught")) == 3


def test_a_clock_set_back_a_little_does_not_fire_the_same_time_again(write_jobs, make_runs):
    catalog = jobs_ini(write_jobs, "[schedule:a]\njob = j\ncron = 0 10 * * *\n")
    runs = make_runs(catalog)
    clock = Clock(at("2026-06-01T09:59:50"))
    scheduler = Scheduler(runs, clock=clock)
    scheduler.update(catalog)
    fired = walk(scheduler, clock, runs, at("2026-06-01T10:00:20"), step=10)
    clock.t = at("2026-06-01T09:59:00")  # NTP puts the clock back
    fired += walk(scheduler, clock, runs, at("2026-06-01T10:01:00"), step=10)
    assert [local(t, "UTC") for _, t in fired] == ["2026-06-01T10:00:00+00:00"]


def test_overlap_skip_starts_nothing_while_the_previous_run_is_active_and_queue_waits_for_concurrency(
        write_jobs, make_runs):
    catalog = jobs_ini(write_jobs, """
        [schedule:skipping]
        job = j
        cron = * * * * *
        overlap = skip
        [schedule:queueing]
        job = j
        cron = * * * * *
        """, job="command = sleep 30\nconcurrency = 1")
    runs = make_runs(catalog)
    clock = Clock(at("2026-06-01T10:00:30"))
    scheduler = Scheduler(runs, clock=clock)
    scheduler.update(catalog)
    walk(scheduler, clock, runs, at("2026-06-01T10:02:10"), step=20)  # fire times 10:01 and 10:02
    states = {n: sorted(r["state"] for r in started_by(runs, n)) for n in ("skipping", "queueing")}
    assert states == {"skipping": ["running"], "queueing": ["queued", "queued"]}
    assert [(e["user"], "overlap = skip" in e["detail"]["reason"]) for e in skips(runs, 1)] == [
        ("schedule:skipping", True)]


def test_a_disabled_schedule_never_fires_and_shows_no_next_time(write_jobs, make_runs):
    catalog = jobs_ini(write_jobs, "[schedule:off]\njob = j\ncron = * * * * *\nenabled = no\n")
    runs = make_runs(catalog)
    clock = Clock(at("2026-06-01T10:00:00"))
    scheduler = Scheduler(runs, clock=clock)
    scheduler.update(catalog, {"off": at("2026-05-01T00:00")})
    runs.scheduler = scheduler
    assert walk(scheduler, clock, runs, at("2026-06-01T13:00"), step=30) == []
    assert public(runs, "j") == [{"name": "off", "cron": "* * * * *", "timezone": catalog.schedules["off"].timezone,
                                  "enabled": False, "next": None, "upcoming": []}]
    assert started_by(runs, "off") == [] and skips(runs, 0) == []


def test_a_job_with_approve_by_gets_its_scheduled_run_awaiting_approval(write_jobs, make_runs):
    catalog = jobs_ini(write_jobs, "[schedule:a]\njob = j\ncron = 0 10 * * *\n",
                       job="command = true\nrun_by = alice\napprove_by = bob", settings="[pushbutton]\nauth = local\n")
    runs = make_runs(catalog)
    clock = Clock(at("2026-06-01T09:59:50"))
    scheduler = Scheduler(runs, clock=clock)
    scheduler.update(catalog)
    walk(scheduler, clock, runs, at("2026-06-01T10:00:10"), step=10)
    [run] = started_by(runs, "a")
    assert (run["state"], run["user"], run["approval"]["approvers"]) == ("awaiting_approval", "schedule:a", ["bob"])


# -- the desktop window -------------------------------------------------------------------------

@pytest.mark.parametrize("allowed", [False, True])
def test_the_desktop_windows_server_fires_schedules_only_with_schedules_in_window(write_jobs, tmp_path, allowed):
    catalog = jobs_ini(write_jobs, "[schedule:a]\njob = j\ncron = * * * * *\n",
                       settings="[pushbutton]\nschedules_in_window = yes\n" if allowed else "")
    clock = Clock(time.time())
    server = Server(catalog, tmp_path / "data", window=True, clock=clock)
    server.start()
    try:
        api = api_of(server)
        wait_for(lambda: "a" in server.scheduler.entries)
        [item] = api.get("/api/jobs").json()["jobs"][0]["schedules"]
        assert item["enabled"] is True and (item["next"] is not None) is allowed
        clock.t += 120
        server.call(server.scheduler.wake)
        if allowed:
            wait_for(lambda: scheduled_runs(api, "a"))
        else:
            time.sleep(0.5)
            assert scheduled_runs(api, "a") == []
    finally:
        server.stop(30)
