"""What the form keeps and says beyond its own checks: a draft across a look elsewhere, the
server's verdict at the field as you type, an unknown job's page, the Stop note, and History's
empty list under filters (found by a review of the page as an analyst uses it)."""

from __future__ import annotations

import re

from playwright.sync_api import expect


def test_what_was_typed_is_still_there_after_a_look_at_a_run_and_back(ui, page):
    ui.open_job(page, "Greeting (shell)")
    ui.run(page)
    expect(ui.status(page)).to_have_text("Succeeded")
    ui.open_job(page, "Sales report")
    page.get_by_label("Rows per region").fill("42")
    page.get_by_label("Notes for the report header").fill("for the board")
    page.get_by_label("Warehouse API key").fill("s3cret-key")
    page.goto(re.sub(r"#.*", "#/runs/1", page.url))  # the greeting's run
    expect(ui.status(page)).to_have_text("Succeeded")
    page.go_back()
    expect(page.get_by_label("Rows per region")).to_have_value("42")
    expect(page.get_by_label("Notes for the report header")).to_have_value("for the board")
    expect(page.get_by_label("Warehouse API key")).to_have_value("")  # never a secret


def test_what_the_server_refuses_is_said_at_the_field_before_run_is_pressed(ui, page):
    ui.open_job(page, "Sales report")
    page.get_by_label("Warehouse API key").fill("abc")  # the page's check lets it be; the server does not
    expect(page.locator("#e-api_key")).to_contain_text("8", timeout=10_000)
    page.get_by_label("Warehouse API key").fill("long-enough-key")
    expect(page.locator("#e-api_key")).to_have_text("")


def test_an_unknown_job_shows_nothing_of_the_job_seen_before(ui, page):
    ui.open_job(page, "Deploy web app")
    expect(page.get_by_label("Release tag")).to_be_visible()
    page.goto(re.sub(r"#.*", "#/jobs/nosuch", page.url))
    expect(page.get_by_text("There is no job “nosuch”.")).to_be_visible()
    expect(page.get_by_label("Release tag")).to_have_count(0)
    expect(page.locator("#job-title")).to_have_text("")
    expect(page.locator("#run-button")).to_be_hidden()


def test_the_stopping_note_goes_once_the_run_has_stopped(ui, page):
    ui.open_job(page, "Nightly backup (slow)")
    ui.run(page)
    expect(ui.status(page)).to_have_text("Running")
    page.get_by_role("button", name="Stop").click()
    page.get_by_role("dialog").get_by_role("button", name="Stop the run").click()
    expect(ui.status(page)).to_have_text("Cancelled", timeout=15_000)
    expect(page.locator("#run-note")).to_have_text("")


def test_a_filtered_history_with_no_match_says_so_not_that_there_are_no_runs(ui, page):
    ui.open_job(page, "Greeting (shell)")
    ui.run(page)
    expect(ui.status(page)).to_have_text("Succeeded")
    page.goto(re.sub(r"#.*", "#/history?user=nobody-at-all", page.url))
    expect(page.get_by_text("No runs match these filters.")).to_be_visible()


def test_a_running_runs_duration_in_history_goes_on(ui, page):
    ui.open_job(page, "Nightly backup (slow)")
    ui.run(page)
    expect(ui.status(page)).to_have_text("Running")
    page.goto(re.sub(r"#.*", "#/history", page.url))
    cell = page.locator("#history-rows tr.running td.duration").first
    expect(cell).to_have_text(re.compile(r"^[0-9] s$"))
    first = cell.inner_text()
    expect(cell).not_to_have_text(first, timeout=5_000)


def test_the_required_legend_and_the_job_links_say_only_what_is_there(ui, page):
    ui.open_job(page, "Sales report")  # nothing required
    expect(page.locator("#job-form .legend")).to_be_hidden()
    ui.open_job(page, "Deploy web app")  # the release tag is
    expect(page.locator("#job-form .legend")).to_be_visible()
    expect(page.get_by_role("link", name=re.compile("Deploy web app"))).to_have_count(1)
    expect(page.get_by_role("link", name=re.compile("●"))).to_have_count(0)  # the status dot is decoration
