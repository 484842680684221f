"""Approvals and the command preview in the page, with two people in two browsers: alice asks for a
guarded run and sees whom it waits for; olga (team ops) sees the header's count go up live, opens
the run, reads exactly what it will run, and approves or rejects it with a comment; alice's view
follows. The server is a real `pushbutton --headless` with `auth = local` accounts."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.page.conftest import ROOT, Site, stop_site
from tests.page.test_teams import PASSWORDS, PUSHBUTTON, signed_in

JOBS = Path(__file__).with_name("approvals-jobs.ini")


@pytest.fixture
def team(tmp_path) -> Iterator[Site]:
    data = tmp_path / "data"
    for name in ("alice", "olga"):
        subprocess.run([PUSHBUTTON, "users", "add", name, "--jobs", str(JOBS), "--data-dir", str(data)],
                       input=PASSWORDS[name] + "\n", text=True, check=True, capture_output=True, cwd=ROOT)
    proc = subprocess.Popen(
        [PUSHBUTTON, "--headless", "--jobs", str(JOBS), "--port", "0", "--data-dir", str(data)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=open(tmp_path / "server.log", "w"), text=True,  # noqa: SIM115
    )
    match = re.search(r"serving on (http://[^/\s?]+)", proc.stdout.readline())
    if not match:
        proc.kill()
        raise RuntimeError(f"server did not start; see {tmp_path / 'server.log'}")
    site = Site(match.group(1), proc, data)
    yield site
    stop_site(site)


def count(page):
    return page.get_by_role("navigation", name="Main").locator("#approvals-count")


def ask_for_deploy(ui, page, target: str) -> int:
    """alice fills the form (its live preview follows the field), confirms (the question repeats the
    preview) and asks; the run id."""
    ui.open_job(page, "Deploy production")
    preview = page.locator("#form-preview .preview-argv")
    expect(preview).to_have_text("This will run: echo deploying north")
    page.get_by_label("Target").fill(target)
    argv = f"This will run: echo deploying '{target}'" if " " in target else f"This will run: echo deploying {target}"
    expect(preview).to_have_text(argv)
    ui.run(page)
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Deploy to {target}?")
    expect(dialog.locator(".preview-argv")).to_have_text(argv)  # the confirmation repeats the preview
    dialog.get_by_role("button", name="Yes, run it").click()
    expect(ui.status(page)).to_have_text("Awaiting approval")
    expect(page.locator("#approval-status")).to_have_text("Waiting for approval by team:ops")
    expect(page.get_by_role("button", name="Approve")).to_be_hidden()  # never one's own run
    return int(re.search(r"#/runs/(\d+)", page.url).group(1))


def test_the_form_previews_what_will_run_and_hides_it_while_invalid(ui, team):
    page = signed_in(ui, team, "alice")
    ui.open_job(page, "Deploy production")
    preview = page.locator("#form-preview .preview-argv")
    expect(preview).to_have_text("This will run: echo deploying north")
    page.get_by_label("Target").fill("NOT-VALID")
    expect(page.locator("#form-preview")).to_be_hidden()
    expect(page.locator("#e-target")).not_to_be_empty()
    page.get_by_label("Target").fill("south")
    expect(preview).to_have_text("This will run: echo deploying south")


def test_approver_sees_the_count_live_and_approves_with_a_comment(ui, team):
    olga = signed_in(ui, team, "olga")
    expect(count(olga)).to_be_hidden()
    alice = signed_in(ui, team, "alice")
    run_id = ask_for_deploy(ui, alice, "south east")

    expect(count(olga)).to_have_text("1")  # live, through /api/events
    olga.get_by_role("navigation", name="Main").get_by_role("link", name=re.compile("^Approvals")).click()
    item = olga.locator("#approval-list li")
    expect(item).to_have_count(1)
    expect(item).to_contain_text("Requested by alice")
    expect(item.locator(".preview-argv")).to_have_text("This will run: echo deploying 'south east'")
    item.get_by_role("link", name=f"Deploy production — run {run_id}").click()
    expect(olga.locator("#approval-preview .preview-argv")).to_have_text("This will run: echo deploying 'south east'")
    expect(olga.locator("#run-user")).to_have_text("alice")
    olga.get_by_label("Comment (optional)").fill("looks fine")
    olga.get_by_role("button", name="Approve").click()

    expect(ui.status(alice)).to_have_text("Succeeded")
    expect(alice.locator("#approval-status")).to_have_text(re.compile(r"^Approved by olga"))
    expect(alice.locator("#approval-comment-text")).to_have_text("“looks fine”")
    assert ui.lines(alice) == ["deploying south east"]
    expect(count(olga)).to_be_hidden()
    expect(olga.get_by_role("button", name="Approve")).to_be_hidden()
    run = team_run(team, run_id)
    assert run["approval"]["by"] == "olga" and run["approval"]["comment"] == "looks fine"


def test_approver_rejects_and_the_requester_sees_who_and_why(ui, team):
    olga = signed_in(ui, team, "olga")
    alice = signed_in(ui, team, "alice")
    run_id = ask_for_deploy(ui, alice, "west")
    expect(count(olga)).to_have_text("1")
    olga.goto(f"{team.base}/#/runs/{run_id}")
    olga.get_by_label("Comment (optional)").fill("not on a Friday")
    olga.get_by_role("button", name="Reject").click()

    expect(ui.status(alice)).to_have_text("Rejected")
    expect(alice.locator("#approval-status")).to_have_text(re.compile(r"^Rejected by olga"))
    expect(alice.locator("#approval-comment-text")).to_have_text("“not on a Friday”")
    assert ui.lines(alice) == []
    expect(count(olga)).to_be_hidden()


def team_run(site: Site, run_id: int) -> dict:
    with httpx.Client(base_url=site.base, timeout=30) as client:
        assert client.post("/api/session", json={"user": "olga", "password": PASSWORDS["olga"]}).status_code == 200
        return client.get(f"/api/runs/{run_id}").json()
