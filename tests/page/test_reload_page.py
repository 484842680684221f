"""The page follows live reloads of jobs.ini without being reloaded: a broken edit shows a banner
with its FILE:LINE problems over the last good jobs; a fix clears it and brings the new jobs."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import expect

from tests.page.conftest import start_site, stop_site

JOBS = "[pushbutton]\ntitle = Ops\n[job:report]\ntitle = Sales report\ncommand = echo report\n"


def save(path, text: str) -> None:
    tmp = path.with_name(".jobs.ini.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture
def edited(tmp_path):
    path = tmp_path / "jobs.ini"
    path.write_text(JOBS)
    site = start_site(path, tmp_path)
    yield site, path
    stop_site(site)


def test_a_broken_edit_shows_a_banner_over_the_last_good_jobs_and_a_fix_clears_it(ui, edited):
    site, path = edited
    page = ui.open(site)
    banner = page.get_by_role("alert").filter(has_text="jobs.ini was not reloaded")
    expect(banner).to_have_count(0)
    marker = page.evaluate("() => (window.__sameDocument = 'yes')")  # gone if the page were reloaded

    save(path, JOBS + "[job:deploy]\ntitle = Deploy\ncommand = echo deploy\ncolour = blue\n")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(f"{path}:9: [job:deploy] colour: unknown key")
    expect(ui.job_link(page, "Sales report")).to_be_visible()  # still served, still runnable
    expect(ui.job_link(page, "Deploy")).to_have_count(0)

    save(path, JOBS.replace("title = Ops", "title = Ops v2") + "[job:deploy]\ntitle = Deploy\ncommand = echo deploy\n")
    expect(ui.job_link(page, "Deploy")).to_be_visible()
    expect(banner).to_be_hidden()
    expect(page.locator("#app-title")).to_have_text("Ops v2")
    ui.open_job(page, "Deploy")
    ui.run(page)
    expect(ui.status(page)).to_have_text(re.compile("Succeeded"))
    assert page.evaluate("() => window.__sameDocument") == marker
