"""The job list shows a scheduled job's next run, in the schedule's zone (not the browser's)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.page.conftest import start_site, stop_site

JOBS = """[job:backup]
title = Nightly backup
command = echo backup
[job:report]
title = Report
command = echo report
[job:plain]
title = Plain
command = echo plain
[schedule:nightly]
job = backup
cron = 0 2 * * *
timezone = Asia/Tokyo
[schedule:paused]
job = report
cron = @hourly
enabled = no
"""


@pytest.fixture
def scheduled(tmp_path):
    path = tmp_path / "jobs.ini"
    path.write_text(JOBS)
    site = start_site(path, tmp_path)
    yield site
    stop_site(site)


def test_the_job_list_shows_the_next_run_in_the_schedules_zone(ui, scheduled):
    page = ui.open(scheduled, timezone_id="America/New_York", locale="en-GB")
    nxt = ui.job_link(page, "Nightly backup").locator(".job-next")
    expect(nxt).to_have_text(re.compile(r"^Next run .*\b02:00\b.*\(nightly\)$"))  # 02:00 in Tokyo, not New York
    expect(nxt).to_have_attribute("title", re.compile(r"^nightly: 0 2 \* \* \* \(Asia/Tokyo\), next .*02:00.*02:00"))
    expect(ui.job_link(page, "Report").locator(".job-next")).to_have_text("Schedule disabled")
    expect(ui.job_link(page, "Plain").locator(".job-next")).to_have_count(0)
