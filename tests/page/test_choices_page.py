"""Lists from a command in the form (assets/js/choices.js), in Chromium against a real server:
a spinner then the options, a dependent list that follows its input, an error with Retry."""

from __future__ import annotations

import re
import textwrap

import pytest
from playwright.sync_api import expect

from tests.page.conftest import start_site, stop_site

JOBS = """
    [job:restore]
    title = Restore a database
    command = echo {region} {db}
    param.region.type = choice
    param.region.choices = eu, us
    param.region.default = eu
    param.db.type = choice
    param.db.label = Database
    param.db.required = yes
    param.db.choices_from = ./dbs.sh {region}
    param.db.choices_cache = 0
    [job:broken]
    title = Broken list
    command = echo {x}
    param.x.type = multichoice
    param.x.label = Targets
    param.x.choices_from = ./targets.sh
    param.x.choices_cache = 0
    """


def script(folder, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body).lstrip())
    path.chmod(0o755)


@pytest.fixture
def site(tmp_path):
    script(tmp_path, "dbs.sh", """
        while [ -f hold ]; do sleep 0.05; done
        echo "$1-main"
        echo "$1-replica"
        """)
    script(tmp_path, "targets.sh", """
        [ -f fixed ] || { echo "inventory is down" >&2; exit 3; }
        echo web1; echo web2
        """)
    (tmp_path / "jobs.ini").write_text(textwrap.dedent(JOBS).lstrip())
    (tmp_path / "hold").touch()
    site = start_site(tmp_path / "jobs.ini", tmp_path)
    site.folder = tmp_path
    yield site
    stop_site(site)


def test_the_form_shows_a_spinner_then_the_options_and_a_dependent_list_follows_its_input(ui, page, site):
    ui.open_job(page, "Restore a database")
    database, status = page.get_by_label("Database"), page.locator("#c-db")
    expect(status).to_have_text("Loading choices…")  # the form is drawn while the command runs
    expect(status.locator(".spinner")).to_be_visible()
    expect(database).to_be_disabled()
    (site.folder / "hold").unlink()
    expect(database.locator("option")).to_have_text(["— choose —", "eu-main", "eu-replica"])
    expect(database).to_be_enabled()
    expect(status).to_be_hidden()

    page.get_by_label("Region").select_option("us")
    expect(database.locator("option")).to_have_text(["— choose —", "us-main", "us-replica"])
    page.get_by_label("Region").select_option("")  # no input, no list
    expect(status).to_have_text("Choose Region first.")
    expect(database).to_be_disabled()
    page.get_by_label("Region").select_option("us")
    expect(database).to_be_enabled()
    database.select_option("us-replica")
    ui.run(page)
    expect(page).to_have_url(re.compile(r"#/runs/\d+$"))
    expect(ui.status(page)).to_have_text("Succeeded")
    assert ui.lines(page) == ["us us-replica"]


def test_a_failing_command_shows_its_error_and_retry_loads_the_list(ui, page, site):
    page.expected_console_errors.append(r"status of 502")  # the browser logs the failed request itself
    ui.open_job(page, "Broken list")
    status = page.locator("#c-x")
    expect(status).to_contain_text("Could not load the choices: the choices command failed (exit 3).")
    expect(status.locator("pre")).to_have_text("inventory is down")
    targets = page.get_by_role("group", name="Targets")
    expect(targets.get_by_role("checkbox")).to_have_count(0)
    (site.folder / "fixed").touch()
    status.get_by_role("button", name="Retry").click()
    expect(targets.get_by_role("checkbox")).to_have_count(2)
    targets.get_by_role("checkbox", name="web2").check()
    ui.run(page)
    expect(ui.status(page)).to_have_text("Succeeded")
    assert ui.lines(page) == ["web2"]
