"""History: filters, secrets masked, open a run's output, run again; the job list's search."""

from __future__ import annotations

import re

from playwright.sync_api import expect


def rows(page) -> list[str]:
    return page.locator("#history-rows tr td:first-child").all_inner_texts()


def test_history_filter_open_and_rerun(ui, page, site):
    for name in ("Ada", "Bob"):
        assert site.api("POST", "/api/jobs/greet/runs", json={"params": {"name": name}}).status_code == 202
    assert site.api("POST", "/api/jobs/disk-check/runs", json={"params": {}}).status_code == 202
    assert site.api("POST", "/api/jobs/report/runs",
                    json={"params": {"rows": 1, "api_key": "hunter2-secret"}}).status_code == 202

    page.get_by_role("navigation", name="Main").get_by_role("link", name="History").click()
    expect(page.get_by_role("heading", name="History")).to_be_visible()
    expect(page.locator("#history-rows tr")).to_have_count(4)
    assert rows(page) == ["Run 4", "Run 3", "Run 2", "Run 1"]
    # every run ends while the page watches: the rows follow through /api/events
    for run_id in (1, 2, 3, 4):
        badge = page.locator(f'#history-rows tr[data-run="{run_id}"] .badge')
        expect(badge).not_to_have_text(re.compile("Running|Queued"))
    report = page.locator('#history-rows tr[data-run="4"]')
    expect(report).to_contain_text("Warehouse API key: ********")
    assert "hunter2-secret" not in page.content()

    page.get_by_label("Job", exact=True).select_option("greet")
    expect(page).to_have_url(re.compile(r"#/history\?job=greet$"))
    expect(page.locator("#history-rows tr")).to_have_count(2)
    assert rows(page) == ["Run 2", "Run 1"]
    expect(page.locator('#history-rows tr[data-run="1"]')).to_contain_text("name: Ada")

    page.get_by_label("Job", exact=True).select_option("")
    page.get_by_label("Result").select_option("failed")
    expect(page.locator("#history-rows tr")).to_have_count(1)
    row = page.locator("#history-rows tr").first
    expect(row).to_contain_text("Check disk space (fails)")
    expect(row).to_contain_text("Failed exit 3")

    page.reload()  # the filter lives in the address
    expect(page.get_by_label("Result")).to_have_value("failed")
    expect(page.locator("#history-rows tr")).to_have_count(1)

    page.get_by_label("Result").select_option("")
    expect(page.locator("#history-rows tr")).to_have_count(4)
    page.get_by_role("link", name="Run 1", exact=True).click()
    expect(page).to_have_url(re.compile(r"#/runs/1$"))
    expect(page.locator("#log .l").first).to_contain_text("Hello, Ada!")

    page.go_back()
    page.get_by_role("button", name="Run again (run 1)").click()
    expect(page).to_have_url(re.compile(r"#/runs/5$"))
    expect(ui.status(page)).to_have_text("Succeeded")
    expect(page.locator("#run-params")).to_have_text("Your name: Ada")
    expect(page.locator("#log .l").first).to_contain_text("Hello, Ada!")

    # the same button on the run view
    page.get_by_role("button", name="Run again", exact=True).click()
    expect(page).to_have_url(re.compile(r"#/runs/6$"))
    expect(ui.status(page)).to_have_text("Succeeded")

    # a secret is never stored: running again asks for it, with the rest filled in
    page.goto(site.base + "/#/history?job=report")
    page.get_by_role("button", name="Run again (run 4)").click()
    expect(page).to_have_url(re.compile(r"#/jobs/report$"))
    expect(page.get_by_label("Rows per region")).to_have_value("1")
    expect(page.locator("#e-api_key")).to_have_text("Enter the secret again")
    page.get_by_label("Warehouse API key").fill("another-secret")
    ui.run(page)
    expect(page).to_have_url(re.compile(r"#/runs/7$"))
    expect(ui.status(page)).to_have_text("Succeeded")
    assert site.api("GET", "/api/runs/7").json()["params"]["api_key"] == "********"


def test_job_list_search(ui, page):
    search = page.get_by_role("searchbox", name="Search jobs")
    search.fill("sales")
    expect(page.locator("#job-list .job")).to_have_count(1)
    expect(page.locator("#job-list .job")).to_contain_text("Sales report")
    search.fill("STATUS 3")  # descriptions count, case does not
    expect(page.locator("#job-list .job")).to_have_count(1)
    expect(page.locator("#job-list .job")).to_contain_text("Check disk space")
    search.fill("nothing like this")
    expect(page.locator("#job-list .job")).to_have_count(0)
    expect(page.get_by_text("No job matches “nothing like this”.")).to_be_visible()
    search.fill("")
    expect(page.locator("#job-list .job")).to_have_count(6)

    assert page.title() == "Acme Ops (sample)"
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme Ops (sample)")


def test_job_list_shows_live_state(ui, lab, tmp_path):
    page = ui.open(lab)
    gated = ui.job_link(page, "Gated counter")
    expect(gated).to_contain_text("never run")
    gate = tmp_path / "gate"
    for _ in range(2):  # concurrency = 1: the second waits
        assert lab.api("POST", "/api/jobs/gate/runs", json={"params": {"gate": str(gate)}}).status_code == 202
    expect(gated).to_contain_text("1 running · 1 queued · never run")
    gate.touch()
    expect(gated).to_have_text(re.compile(r"last run succeeded just now$"))
    expect(gated).not_to_contain_text("running")
    assert [r["state"] for r in lab.runs()] == ["succeeded", "succeeded"]
