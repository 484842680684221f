"""Nothing from jobs.ini or from output becomes HTML: every string the page shows, through every
view, renders as the literal text written (tests/page/hostile-jobs.ini), and output with broken or
hostile escape sequences shows every line, links only http(s), and trips no CSP rule."""

from __future__ import annotations

import configparser
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.page.conftest import start_site, stop_site

HOSTILE = Path(__file__).with_name("hostile-jobs.ini")
INI = configparser.RawConfigParser()
INI.read(HOSTILE)
TITLE = INI["pushbutton"]["title"]
JOB = INI["job:hostile"]
CHOICES = [c.strip() for c in JOB["param.pick.choices"].split(",")]
MULTI = [c.strip() for c in JOB["param.many.choices"].split(",")]


@pytest.fixture
def hostile(tmp_path) -> Iterator:
    site = start_site(HOSTILE, tmp_path)
    yield site
    stop_site(site)


def test_the_page_is_served_under_a_policy_that_refuses_inline_script_and_style(hostile):
    policy = hostile.api("GET", "/").headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy  # a violation is a console error


def unharmed(page) -> None:
    """No script ran, and no element came out of a string."""
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("document.querySelectorAll('img, svg, script:not([src])').length") == 0


def test_every_jobs_ini_string_is_shown_as_text_in_every_view(ui, hostile):
    page = ui.open(hostile)
    job_title = JOB["title"]
    expect(page.locator("#app-title")).to_have_text(TITLE)
    assert page.title() == TITLE
    link = page.locator("#job-list .job").filter(has_text=job_title)
    expect(link.locator(".job-title")).to_have_text(job_title)
    expect(link.locator(".job-desc")).to_have_text(JOB["description"])
    unharmed(page)

    # the form: title, description, labels, help, choices, defaults
    link.click()
    expect(page.locator("#job-title")).to_have_text(job_title)
    expect(page.locator("#job-desc")).to_have_text(JOB["description"])
    for key in ("pick", "many", "note", "flag", "key", "when", "count"):
        expect(page.locator("#fields")).to_contain_text(JOB[f"param.{key}.label"])
    for key in ("pick", "many", "count"):
        expect(page.locator("#fields")).to_contain_text(JOB[f"param.{key}.help"])
    pick = page.get_by_label(JOB["param.pick.label"])
    assert pick.locator("option").all_text_contents()[-3:] == CHOICES
    expect(pick).to_have_value(JOB["param.pick.default"])
    many = page.get_by_role("group", name=JOB["param.many.label"])
    assert many.locator("label").all_text_contents() == [f" {c}" for c in MULTI]
    for choice in MULTI:
        expect(many.get_by_label(choice, exact=True)).to_be_checked(checked=choice != MULTI[1])
    expect(page.get_by_label(JOB["param.note.label"])).to_have_value(JOB["param.note.default"])
    unharmed(page)

    # a pattern in an error message
    page.get_by_label("Code").fill("abc")
    expect(page.locator("#fields")).to_contain_text(f"Must match {JOB['param.code.pattern']}")
    page.get_by_label("Code").fill("")
    unharmed(page)

    # the confirm question, with a hostile value in it
    pick.select_option(CHOICES[0])
    ui.run(page)
    dialog = page.get_by_role("dialog", name=f"Run “{job_title}”?")
    expect(dialog.locator("#ask-text")).to_have_text(JOB["confirm"].replace("{pick}", CHOICES[0]))
    unharmed(page)
    dialog.get_by_role("button", name="Yes, run it").click()

    # the run view: title, parameters, the values echoed into the output
    expect(ui.status(page)).to_have_text("Succeeded")
    expect(page.locator("#run-title")).to_have_text(f"{job_title} — run 1")
    expect(page.locator("#run-params")).to_contain_text(f"{JOB['param.pick.label']}: {CHOICES[0]}")
    expect(page.locator("#run-params")).to_contain_text(f"{JOB['param.many.label']}: {MULTI[0]}, {MULTI[2]}")
    assert ui.lines(page) == [CHOICES[0], MULTI[0], MULTI[2], JOB["param.note.default"]]
    unharmed(page)

    # history: job title and parameters; the filter's job names
    page.get_by_role("link", name="History").click()
    row = page.locator("#history-rows tr").first
    expect(row).to_contain_text(job_title)
    expect(row).to_contain_text(f"{JOB['param.note.label']}: {JOB['param.note.default']}")
    assert job_title in page.locator("#h-job option").all_text_contents()
    unharmed(page)


def test_run_again_asks_the_servers_question_and_cancel_starts_nothing(ui, hostile):
    run = hostile.api("POST", "/api/jobs/hostile/runs", json={"params": {}, "confirm": True})
    assert run.status_code == 202
    first = run.json()["run"]["id"]
    question = JOB["confirm"].replace("{pick}", JOB["param.pick.default"])
    page = ui.open(hostile)

    # from the run view
    page.goto(f"{hostile.base}/#/runs/{first}")
    expect(ui.status(page)).to_have_text("Succeeded")
    page.get_by_role("button", name="Run again").click()
    dialog = page.get_by_role("dialog", name=f"Run “{JOB['title']}”?")
    expect(dialog.locator("#ask-text")).to_have_text(question)  # the server's, filled in
    dialog.get_by_role("button", name="Go back").click()
    expect(dialog).to_be_hidden()
    assert len(hostile.runs()) == 1
    assert page.url.endswith(f"#/runs/{first}")
    page.get_by_role("button", name="Run again").click()
    dialog.get_by_role("button", name="Yes, run it").click()
    expect(page).to_have_url(re.compile(rf"#/runs/{first + 1}$"))
    expect(ui.status(page)).to_have_text("Succeeded")

    # from history
    page.get_by_role("link", name="History").click()
    page.get_by_role("button", name=f"Run again (run {first})").click()
    expect(dialog.locator("#ask-text")).to_have_text(question)
    dialog.get_by_role("button", name="Go back").click()
    assert len(hostile.runs()) == 2
    page.get_by_role("button", name=f"Run again (run {first})").click()
    dialog.get_by_role("button", name="Yes, run it").click()
    expect(page).to_have_url(re.compile(rf"#/runs/{first + 2}$"))
    expect(ui.status(page)).to_have_text("Succeeded")
    assert len(hostile.runs()) == 3
    unharmed(page)


def test_broken_escape_sequences_never_hide_output(ui, hostile):
    page = ui.open(hostile)
    ui.open_job(page, "Broken escapes")
    ui.run(page)
    expect(ui.status(page)).to_have_text("Succeeded")
    expect(page.locator("#log .l")).to_have_count(2007)
    lines = ui.lines(page)
    assert lines[0].startswith("first ")
    assert lines[1:2001] == [f"line {i}" for i in range(1, 2001)]  # after an unterminated OSC
    assert lines[2001].startswith("lone")
    assert lines[2002] == "true colour and bold"
    assert lines[2003:2006] == ["js link", "web link", "<script>window.__pwned=1</script>"]
    assert lines[2006].startswith("last")

    links = page.locator("#log a")
    expect(links).to_have_count(1)  # javascript: stayed text
    expect(links).to_have_attribute("href", "https://example.com/docs")
    expect(links).to_have_attribute("target", "_blank")
    expect(links).to_have_attribute("rel", "noopener noreferrer")
    true_colour = page.locator("#log .l").nth(2002).locator("span").first
    expect(true_colour).to_have_css("color", "rgb(10, 200, 30)")  # applied without a style attribute
    expect(page.locator("#log .ansi-bold")).to_have_text("bold")
    unharmed(page)  # and, by the ui fixture, no CSP violation (no style attribute came in as HTML)
