"""Every control has an accessible name, and the page works from the keyboard alone."""

from __future__ import annotations

import re

from playwright.sync_api import expect

CONTROLS = {"button", "link", "textbox", "searchbox", "checkbox", "combobox", "listbox", "spinbutton",
            "radio", "slider", "switch", "menuitem", "tab", "progressbar", "dialog", "log", "group"}


def unnamed_controls(page) -> list[str]:
    """Controls in the accessibility tree (what a screen reader gets) without a name."""
    cdp = page.context.new_cdp_session(page)
    try:
        nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
    finally:
        cdp.detach()
    bad = []
    for node in nodes:
        role = node.get("role", {}).get("value")
        if node.get("ignored") or role not in CONTROLS:
            continue
        if not (node.get("name", {}).get("value") or "").strip():
            bad.append(f"{role} (backend node {node.get('backendDOMNodeId')})")
    return bad


def test_every_control_is_named(ui, page, site):
    views = []
    assert unnamed_controls(page) == []
    views.append("job list")
    for job in ("Sales report", "Deploy web app", "Nightly backup (slow)"):
        ui.open_job(page, job)
        assert unnamed_controls(page) == [], job
        views.append(job)
    ui.run(page)  # the backup: a running run, with Stop
    expect(ui.status(page)).to_have_text("Running")
    expect(page.get_by_label("Progress")).to_be_visible()
    assert unnamed_controls(page) == []
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.get_by_role("dialog")).to_be_visible()
    assert unnamed_controls(page) == []
    page.get_by_role("button", name="Stop the run").click()
    expect(ui.status(page)).to_have_text("Cancelled")
    assert unnamed_controls(page) == []
    page.get_by_role("link", name="History").click()
    expect(page.locator("#history-rows tr")).to_have_count(1)
    assert unnamed_controls(page) == []


def test_a_redrawn_job_list_gives_the_keyboard_its_link_back(ui, page, site):
    """The list is redrawn whenever a run changes state, the schedules arrive or half a minute
    passes: a keyboard user on a job link kept losing their place to the page's body."""
    ui.job_link(page, "Greeting (shell)").focus()
    page.evaluate("$('#search').trigger('input')")  # one redraw, as any of those makes
    expect(ui.job_link(page, "Greeting (shell)")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Greeting (shell)", level=2)).to_be_focused()


def test_keyboard_only(ui, page, site):
    page.get_by_role("searchbox", name="Search jobs").focus()
    page.keyboard.type("greet")
    page.keyboard.press("Tab")
    expect(ui.job_link(page, "Greeting (shell)")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Greeting (shell)", level=2)).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Your name")).to_be_focused()
    page.keyboard.press("Control+a")
    page.keyboard.type("Keys")
    page.keyboard.press("Enter")  # submits the form
    expect(page).to_have_url(re.compile(r"#/runs/1$"))
    expect(ui.status(page)).to_have_text("Succeeded")
    expect(page.locator("#log .l").first).to_contain_text("Hello, Keys!")  # drawn a frame after the status

    page.goto(site.base + "/#/jobs/deploy")
    page.get_by_label("Release tag").focus()
    page.keyboard.type("v0.0.1")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Dry run")).to_be_focused()
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Run", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Yes, run it")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#/runs/2$"))
    expect(ui.status(page)).to_have_text("Succeeded")
    expect(page.locator("#log .l").first).to_contain_text("dry run true")
