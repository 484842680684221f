"""The generated form: every parameter type, checks as you type, the server's errors, confirm."""

from __future__ import annotations

import re

from playwright.sync_api import expect


def test_every_parameter_type_reaches_the_job(ui, page, site):
    ui.open_job(page, "Sales report")
    # defaults are filled in
    expect(page.get_by_label("From date")).to_have_value("2026-01-01")
    expect(page.get_by_label("Rows per region")).to_have_value("5")
    expect(page.get_by_label("Alert threshold")).to_have_value("0.5")
    regions = page.get_by_role("group", name="Regions")
    expect(regions.get_by_role("checkbox", name="north")).to_be_checked()
    expect(regions.get_by_role("checkbox", name="south")).not_to_be_checked()
    expect(page.get_by_label("Warehouse API key")).to_have_attribute("type", "password")
    expect(page.get_by_label("Rows per region")).to_have_attribute("max", "1000")
    expect(page.get_by_text("From 1 to 1000.")).to_be_visible()  # the range, said in words

    page.get_by_label("From date").fill("2026-02-03")
    page.get_by_label("Rows per region").fill("2")
    page.get_by_label("Alert threshold").fill("0.25")
    regions.get_by_role("checkbox", name="north").uncheck()
    regions.get_by_role("checkbox", name="west").check()
    page.get_by_label("Notes for the report header").fill("Quarterly\nfor the board")
    page.get_by_label("Warehouse API key").fill("s3cret-key")
    ui.run(page)

    expect(page).to_have_url(re.compile(r"#/runs/1$"))
    expect(ui.status(page)).to_have_text("Succeeded")
    expect(page.locator("#log .l:not(.e)")).to_have_count(8)
    stdout = ui.lines(page, "stdout")
    assert stdout == ["Notes:", "  Quarterly", "  for the board",
                      "Report from 2026-02-03, 2 rows per region, alert above 0.25",
                      "east row 1: 37", "east row 2: 74", "west row 1: 37", "west row 2: 74"]
    # stderr is kept apart; the secret reached the job (no "no API key" warning) and is masked
    assert ui.lines(page, "stderr") == ["warning: east has late data", "warning: west has late data"]
    expect(page.locator("#run-params")).to_contain_text("Warehouse API key: ********")
    assert "s3cret-key" not in page.content()
    expect(page.get_by_label("Progress")).to_have_attribute("aria-valuetext", "100%: Region west")

    # choice, required text, checkbox; the confirm text names the values
    ui.open_job(page, "Deploy web app")
    page.get_by_label("Environment").select_option("production")
    page.get_by_label("Release tag").fill("v2.0.0")
    page.get_by_label("Dry run").check()
    ui.run(page)
    dialog = page.get_by_role("dialog", name="Run “Deploy web app”?")
    expect(dialog).to_contain_text("Deploy v2.0.0 to production?")
    dialog.get_by_role("button", name="Yes, run it").click()
    expect(ui.status(page)).to_have_text("Succeeded")
    expect(page.locator("#log .l").first).to_have_text("Deploying v2.0.0 to production (colour blue, dry run true)")
    # ANSI colours rendered by ansi_up: bold and green, no escape codes left
    expect(page.locator("#log .l").first.locator(".ansi-bold")).to_have_text("Deploying v2.0.0 to production")
    expect(page.locator("#log .ansi-green-fg").first).to_have_text("✔")
    assert "\x1b" not in page.locator("#log").inner_text()

    ui.open_job(page, "Greeting (shell)")
    expect(page.get_by_label("Your name")).to_have_value("world")
    page.get_by_label("Your name").fill("Ada; rm -rf /")
    ui.run(page)
    expect(ui.status(page)).to_have_text("Succeeded")
    expect(page.locator("#log .l").first).to_have_text(re.compile(r"^Hello, Ada; rm -rf /! Today is "))
    assert [r["state"] for r in site.runs()] == ["succeeded"] * 3


def test_checks_as_you_type_and_blocks_a_bad_form(ui, page, site):
    ui.open_job(page, "Deploy web app")
    tag = page.get_by_label("Release tag")
    expect(tag).to_have_attribute("aria-required", "true")
    tag.press_sequentially("v1")
    expect(tag).to_have_attribute("aria-invalid", "true")
    expect(tag).to_have_accessible_description(re.compile("Not in the expected form"))
    tag.press_sequentially(".2.3")
    expect(tag).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("#e-tag")).to_have_text("")

    tag.fill("")
    ui.run(page)
    expect(page.locator("#e-tag")).to_have_text("Required.")
    expect(page.locator("#form-error")).to_have_text("Please correct the marked fields.")
    expect(tag).to_be_focused()

    ui.open_job(page, "Sales report")
    rows = page.get_by_label("Rows per region")
    rows.fill("5000")
    expect(page.locator("#e-rows")).to_have_text("Must be at most 1000.")
    rows.fill("2.5")
    expect(page.locator("#e-rows")).to_have_text("Enter a whole number.")
    page.get_by_label("From date").fill("2019-12-31")
    expect(page.locator("#e-start")).to_have_text("Must be 2020-01-01 or later.")
    ui.run(page)
    expect(page.locator("#form-error")).to_have_text("Please correct the marked fields.")
    expect(page.get_by_role("dialog")).to_have_count(0)
    page.get_by_label("From date").fill("2020-01-01")
    rows.fill("1")
    ui.run(page)
    expect(page).to_have_url(re.compile(r"#/runs/1$"))  # the first run: the bad form started none


def test_server_side_error_is_shown_by_its_field(ui, lab):
    page = ui.open(lab)
    ui.open_job(page, "Open a ticket")
    ticket = page.get_by_label("Ticket")
    ticket.fill("ops-1")  # the page cannot read this Python pattern: no error until the server says so
    expect(page.locator("#e-ticket")).to_have_text("")
    ui.run(page)
    expect(page.locator("#e-ticket")).to_have_text(r"Must match (?P<project>[A-Z]+)-\d+")
    expect(ticket).to_have_attribute("aria-invalid", "true")
    expect(ticket).to_have_accessible_description(re.compile(r"Like OPS-123 Must match"))
    expect(ticket).to_be_focused()
    assert lab.runs() == []
    ticket.fill("OPS-1")
    ui.run(page)
    expect(ui.status(page)).to_have_text("Succeeded")
    expect(page.locator("#log .l")).to_have_text(["OPS-1"])


def test_confirm_can_be_declined(ui, page, site):
    ui.open_job(page, "Deploy web app")
    page.get_by_label("Release tag").fill("v1.0.0")
    ui.run(page)
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Deploy v1.0.0 to staging?")
    dialog.get_by_role("button", name="Go back").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_label("Release tag")).to_have_value("v1.0.0")
    assert site.runs() == []
    ui.run(page)
    page.keyboard.press("Escape")  # Escape declines as well
    expect(dialog).to_be_hidden()
    ui.run(page)
    dialog.get_by_role("button", name="Yes, run it").click()
    expect(page).to_have_url(re.compile(r"#/runs/1$"))  # the first run: declining started none
    expect(ui.status(page)).to_have_text("Succeeded")
