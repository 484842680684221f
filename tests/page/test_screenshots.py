"""Screenshots for people (CI keeps artifacts/screenshots/): the job list, a form with an error, a
running job and a finished one, at the window's default size (1024x700) and on a phone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect


@pytest.mark.parametrize("device", ["window", "phone"])
def test_screenshots(ui, site, screenshots, device):
    size = (1024, 700) if device == "window" else (390, 844)
    page = ui.open(site, viewport=size)
    shots = []

    def shot(name: str) -> None:
        path = screenshots / f"{device}-{name}.png"
        page.screenshot(path=path)
        shots.append(path)
        # readable: nothing pushes the page sideways
        assert page.evaluate("document.documentElement.scrollWidth") <= size[0]

    shot("1-job-list")
    ui.job_link(page, "Deploy web app").click()
    page.get_by_label("Release tag").fill("1.4")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("#e-tag")).to_contain_text("Not in the expected form")
    shot("2-form-with-error")

    page.goto(site.base + "/#/jobs/backup")
    page.get_by_label("Duration in seconds").fill("20")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("#log .l")).to_have_count(3)
    expect(page.get_by_label("Progress")).to_have_attribute("aria-valuetext", re.compile("Copied 3 of 20"))
    shot("3-running")
    page.get_by_role("button", name="Stop", exact=True).click()
    page.get_by_role("button", name="Stop the run").click()
    expect(ui.status(page)).to_have_text("Cancelled")

    page.goto(site.base + "/#/jobs/report")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(ui.status(page)).to_have_text("Succeeded")
    shot("4-finished")
    page.get_by_role("link", name="History").click()
    expect(page.locator("#history-rows tr")).to_have_count(2)
    shot("5-history")
    assert all(p.stat().st_size > 5000 for p in shots)
