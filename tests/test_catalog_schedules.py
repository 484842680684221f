"""`[schedule:NAME]` sections: what loads, and every problem `check` reports, each as FILE:LINE."""

from __future__ import annotations

import re
import subprocess
import textwrap

import pytest
import tzlocal

from server import catalog as C
from server.catalog_schedules import ALIASES, SCHEDULE_KEYS, SCHEDULE_PREFIX_KEYS
from tests.conftest import ROOT
from tests.helpers import BIN

JOB = """
[job:backup]
command = echo {target} {n} {when}
param.target.required = yes
param.n.type = int
param.n.default = 3
param.n.max = 10
param.when.type = date
param.when.default = today
param.pw.type = secret
"""


def with_job(text: str) -> str:
    return JOB + textwrap.dedent(text)


def problems(write_jobs, text: str) -> list[str]:
    path = write_jobs(text)
    with pytest.raises(C.CatalogError) as info:
        C.load(path)
    return [str(p).replace(str(path), "FILE") for p in info.value.problems]


def test_a_schedule_loads_with_its_job_cron_zone_values_and_defaults(write_jobs):
    catalog = C.load(write_jobs(with_job("""
        [schedule:nightly]
        job = backup
        cron = 30 2 * * 1-5
        timezone = Europe/Berlin
        param.target = db
        param.n = 7
        """)))
    s = catalog.schedules["nightly"]
    assert (s.job, s.cron, s.expression, s.timezone) == ("backup", "30 2 * * 1-5", "30 2 * * 1-5", "Europe/Berlin")
    assert s.params == {"target": "db", "n": "7"}
    assert (s.enabled, s.catchup, s.overlap, s.user) == (True, False, "queue", "schedule:nightly")
    assert not catalog.settings.schedules_in_window


def test_every_at_alias_loads_as_its_five_fields_and_reboot_does_not(write_jobs):
    text = JOB + "".join(f"[schedule:s{i}]\njob = backup\ncron = {alias}\nparam.target = x\n"
                         for i, alias in enumerate(ALIASES))
    catalog = C.load(write_jobs(text))
    assert [s.expression for s in catalog.schedules.values()] == list(ALIASES.values())
    found = problems(write_jobs, JOB + "[schedule:boot]\njob = backup\ncron = @reboot\nparam.target = x\n")
    assert len(found) == 1 and re.fullmatch(r"FILE:12: \[schedule:boot\] cron: '@reboot' is not one of @hourly, .*",
                                            found[0]), found


def test_without_timezone_a_schedule_uses_the_servers_own_zone(write_jobs):
    s = C.load(write_jobs(JOB + "[schedule:a]\njob = backup\ncron = @hourly\nparam.target = x\n")).schedules["a"]
    assert s.timezone == tzlocal.get_localzone_name()


def test_every_schedule_problem_is_reported_at_its_line(write_jobs):
    found = problems(write_jobs, with_job("""
        [schedule:bad]
        job = backup
        cron = 61 * * * *
        timezone = Mars/Olympus
        enabled = perhaps
        catchup = always
        catchup_within = soon
        overlap = never
        colour = red
        param.target = db
        param.n = eleven
        param.nope = 1
        param.bad-name = 1

        [schedule:six]
        job = backup
        cron = 0 0 * * * *
        param.target = x

        [schedule:never]
        job = backup
        cron = 0 0 31 2 *
        param.target = x

        [schedule:ghost]
        job = nothing
        cron = @daily

        [schedule:required]
        job = backup
        cron = @daily

        [schedule:with space]
        job = backup
        cron = @daily
        param.target = x

        [schedule:empty]
        """))
    assert found == [
        "FILE:13: [schedule:bad] cron: '61 * * * *': bad minute field",
        "FILE:14: [schedule:bad] timezone: 'Mars/Olympus' is not a time zone: use an IANA name such as "
        "Europe/Berlin or UTC",
        "FILE:15: [schedule:bad] enabled: 'perhaps' is not yes or no",
        "FILE:16: [schedule:bad] catchup: 'always' is not no or once",
        "FILE:17: [schedule:bad] catchup_within: 'soon' is not a duration like 90s, 30m or 1h",
        "FILE:18: [schedule:bad] overlap: 'never' is not queue or skip",
        "FILE:19: [schedule:bad] colour: unknown key",
        "FILE:21: [schedule:bad] param.n: must be a whole number",
        "FILE:22: [schedule:bad] param.nope: no such parameter",
        "FILE:23: [schedule:bad] param.bad-name: expected param.NAME, NAME made of letters, digits and _",
        "FILE:23: [schedule:bad] param.bad-name: no such parameter",
        "FILE:27: [schedule:six] cron: '0 0 * * * *': expected five fields (minute hour day-of-month month "
        "day-of-week, e.g. 0 2 * * *) or @hourly, @daily, @weekly, @monthly, @yearly",
        "FILE:32: [schedule:never] cron: '0 0 31 2 *' never fires: no such date",
        "FILE:36: [schedule:ghost] job: no job 'nothing'",
        "FILE:39: [schedule:required]: param.target: required: give it a value here "
        "(job 'backup' has no default for it)",
        "FILE:43: [schedule:with space]: schedule name starts with a letter or digit, then letters, digits, "
        "'.', '_' and '-'",
        "FILE:48: [schedule:empty]: missing job =",
        "FILE:48: [schedule:empty]: missing cron =",
    ]


def test_a_value_is_checked_as_a_start_checks_it_leading_dash_and_range_included(write_jobs):
    found = problems(write_jobs, with_job("""
        [schedule:a]
        job = backup
        cron = @daily
        param.target = --delete-all
        param.n = 11
        """))
    assert found == [
        "FILE:14: [schedule:a] param.target: must not start with '-' (it would be read as an option)",
        "FILE:15: [schedule:a] param.n: must be at most 10",
    ]


def test_a_secret_written_in_a_schedule_loads_with_a_warning(write_jobs):
    catalog = C.load(write_jobs(JOB + "[schedule:a]\njob = backup\ncron = @daily\nparam.target = x\n"
                                      "param.pw = correct-horse\n"))
    assert [str(w).split(": ", 1)[1] for w in catalog.warnings] == [
        "warning: [schedule:a] param.pw: a secret written in jobs.ini can be read by whoever can read the file"]


def test_schedules_in_window_is_a_yes_no_setting(write_jobs):
    catalog = C.load(write_jobs("[pushbutton]\nschedules_in_window = yes\n" + JOB))
    assert catalog.settings.schedules_in_window is True
    found = problems(write_jobs, "[pushbutton]\nschedules_in_window = sometimes\n" + JOB)
    assert found == ["FILE:2: [pushbutton] schedules_in_window: 'sometimes' is not yes or no"]


def test_pushbutton_check_prints_a_schedule_problem_as_file_line_and_exits_2(write_jobs):
    path = write_jobs(JOB + "[schedule:a]\njob = backup\ncron = every day\nparam.target = x\n")
    result = subprocess.run([BIN, "check", "--jobs", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{path}:12: [schedule:a] cron: 'every day': expected five fields" in result.stdout + result.stderr


def test_every_schedule_key_is_documented():
    docs = (ROOT / "docs" / "jobs-ini.md").read_text()
    documented = set(re.findall(r"`([a-z_.A-Z]+)`", docs))
    missing = sorted({*SCHEDULE_KEYS, *SCHEDULE_PREFIX_KEYS, "schedules_in_window"} - documented)
    assert not missing, f"docs/jobs-ini.md does not document: {missing}"
