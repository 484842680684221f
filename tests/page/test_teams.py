"""Teams in the page: sign in with a local account, see only your jobs, run one, sign out (and the
old session is dead); a viewer sees a run without Run or Stop; an admin reads the audit; personal
API tokens are made and revoked from the page. The server is a real `pushbutton --headless` with
`auth = local` (tests/page/teams-jobs.ini) and accounts made with `pushbutton users add`."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from server.auth.audit import ACTIONS as AUDIT_ACTIONS
from tests.page.conftest import ROOT, Site, stop_site
from tests.page.test_access import unnamed_controls

JOBS = Path(__file__).with_name("teams-jobs.ini")
PUSHBUTTON = str(Path(sys.executable).with_name("pushbutton"))
PASSWORDS = {"alice": "alice-pass-1", "vera": "vera-pass-1", "olga": "olga-pass-1"}
SIZES = {"window": (1024, 700), "phone": (390, 844)}


@pytest.fixture
def team(tmp_path) -> Iterator[Site]:
    """The team's server; alice runs reports, vera (an analyst too) only views, olga (ops) is an admin."""
    data = tmp_path / "data"
    for name, password in PASSWORDS.items():
        subprocess.run([PUSHBUTTON, "users", "add", name, "--jobs", str(JOBS), "--data-dir", str(data)],
                       input=password + "\n", text=True, check=True, capture_output=True, cwd=ROOT)
    proc = subprocess.Popen(
        [PUSHBUTTON, "--headless", "--jobs", str(JOBS), "--port", "0", "--data-dir", str(data)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=open(tmp_path / "server.log", "w"), text=True,  # noqa: SIM115
    )
    line = proc.stdout.readline()
    match = re.search(r"serving on (http://[^/\s?]+)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}; see {tmp_path / 'server.log'}")
    site = Site(match.group(1), proc, data)
    yield site
    stop_site(site)


def session(site: Site, name: str) -> httpx.Client:
    """An API client signed in as `name` (its session cookie kept), as a script would be."""
    client = httpx.Client(base_url=site.base, timeout=30)
    assert client.post("/api/session", json={"user": name, "password": PASSWORDS[name]}).status_code == 200
    return client


def sign_in_form(ui, site: Site, size=SIZES["window"]):
    page = ui.blank(size)
    page.goto(site.base + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    return page


def sign_in(page, name: str, password: str | None = None) -> None:
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password", exact=True).fill(password or PASSWORDS[name])
    page.get_by_role("button", name="Sign in").click()


def signed_in(ui, site: Site, name: str, size=SIZES["window"]):
    page = sign_in_form(ui, site, size)
    sign_in(page, name)
    expect(page.locator("#job-list .job").first).to_be_visible()
    return page


def job_titles(page) -> list[str]:
    return page.locator("#job-list .job-title").all_inner_texts()


def test_sign_in_see_only_your_jobs_run_one_and_sign_out(ui, team):
    page = sign_in_form(ui, team)
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    assert page.locator("#job-list .job").count() == 0

    sign_in(page, "alice", "not-her-password")
    expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    expect(page.get_by_label("Password", exact=True)).to_be_focused()
    for _ in range(5):  # someone guessing another name: the server locks it
        guess = httpx.post(team.base + "/api/session", json={"user": "mallory", "password": "guess"})
        assert guess.status_code == 401
    sign_in(page, "mallory", "guess")
    expect(page.get_by_role("alert")).to_have_text(re.compile(r"^Too many attempts: try again in \d+ s\.$"))
    expect(page.get_by_role("button", name="Sign in")).to_be_disabled()

    page.reload()  # a fresh form; the lock is on mallory, not on alice
    sign_in(page, "alice")
    expect(page.locator("#job-list .job")).to_have_count(2)
    assert job_titles(page) == ["Sales report", "Slow export"]  # not Deploy production: ops only
    header = page.get_by_role("banner")
    expect(header).to_contain_text("alice")
    expect(header.get_by_role("button", name="Sign out")).to_be_visible()
    expect(header.get_by_role("link", name="Audit")).to_be_hidden()  # not an admin

    page.goto(team.base + "/#/jobs/deploy")  # a job she may not see does not exist for her
    expect(page.locator("#page-error")).to_have_text("There is no job “deploy”.")

    ui.open_job(page, "Sales report")
    ui.run(page)
    expect(ui.status(page)).to_have_text("Succeeded")
    expect(page.locator("#run-user")).to_have_text("alice")
    assert ui.lines(page) == ["report for north"]
    expect(page.get_by_role("button", name="Run again")).to_be_visible()

    old = page.context.cookies()
    cookie = {c["name"]: c["value"] for c in old}
    assert f"pushbutton_session_{team.base.rsplit(':', 1)[1]}" in cookie
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#signin-note")).to_have_text("You have signed out.")
    assert page.locator("#job-list .job").count() == 0
    # the old session is dead at once, wherever its cookie went: in this browser and in a script
    page.context.add_cookies(old)
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    for path in ("/api/jobs", "/api/runs", "/api/runs/1", "/api/me"):
        assert httpx.get(team.base + path, cookies=cookie).status_code == 401, path


def test_a_session_ended_elsewhere_sends_the_page_back_to_sign_in_and_then_where_it_was(ui, team):
    page = signed_in(ui, team, "alice")
    cookie = {c["name"]: c["value"] for c in page.context.cookies()}
    assert httpx.delete(team.base + "/api/session", cookies=cookie).status_code == 204  # signed out in a script
    ui.job_link(page, "Sales report").click()  # its recent runs are asked for, refused: sign in again
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.locator("#job-list .job").count() == 0
    page.goto(team.base + "/#/history")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    sign_in(page, "alice")
    expect(page.get_by_role("heading", name="History")).to_be_visible()  # back where she was going


def end_session(team: Site, page) -> None:
    """The page's session ends under it (idle too long, signed out in another tab)."""
    cookie = {c["name"]: c["value"] for c in page.context.cookies()}
    assert httpx.delete(team.base + "/api/session", cookies=cookie).status_code == 204


def test_what_was_typed_survives_the_session_ending_while_typing_for_its_own_user_only(ui, team):
    page = signed_in(ui, team, "olga")
    page.goto(team.base + "/#/jobs/deploy")
    note = page.get_by_label("Change note")
    note.fill("Roll back the cache change first, then deploy")
    page.wait_for_timeout(800)  # its preview has come back
    end_session(team, page)
    note.press("End")
    note.type(".")  # the live preview is refused: the page reloads to sign in
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    sign_in(page, "olga")
    expect(page.get_by_role("heading", name="Deploy production", level=2)).to_be_visible()
    expect(page.get_by_label("Change note")).to_have_value("Roll back the cache change first, then deploy.")

    page = signed_in(ui, team, "alice")  # another browser: alice picks south, her session ends
    ui.open_job(page, "Sales report")
    page.get_by_label("Region").select_option("south")
    end_session(team, page)
    ui.run(page)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    sign_in(page, "olga")  # someone else signs in at that browser: alice's choice is not theirs
    expect(page.get_by_role("heading", name="Sales report", level=2)).to_be_visible()
    expect(page.get_by_label("Region")).to_have_value("north")


def test_a_viewer_sees_a_run_but_has_no_run_or_stop(ui, team):
    alice = signed_in(ui, team, "alice")
    ui.open_job(alice, "Slow export")
    ui.run(alice)
    expect(ui.status(alice)).to_have_text("Running")
    expect(alice.get_by_role("button", name="Stop", exact=True)).to_be_visible()  # her own run

    vera = signed_in(ui, team, "vera")
    assert job_titles(vera) == ["Sales report", "Slow export"]
    ui.open_job(vera, "Sales report")  # she sees the form, read-only
    expect(vera.get_by_role("button", name="Run", exact=True)).to_be_hidden()
    expect(vera.locator("#run-denied")).to_be_visible()
    expect(vera.get_by_label("Region")).to_be_disabled()

    ui.open_job(vera, "Slow export")
    vera.get_by_role("link", name="Run 1", exact=True).click()
    expect(ui.status(vera)).to_have_text("Running")
    expect(vera.locator("#log .l").first).to_have_text("started")
    expect(vera.locator("#run-user")).to_have_text("alice")
    expect(vera.get_by_role("button", name="Stop", exact=True)).to_be_hidden()
    expect(vera.get_by_role("button", name="Run again")).to_be_hidden()

    alice.get_by_role("button", name="Stop", exact=True).click()
    alice.get_by_role("button", name="Stop the run").click()
    expect(ui.status(vera)).to_have_text("Cancelled")  # live, in the viewer's page
    expect(vera.locator("#run-stopped-by")).to_have_text("alice")
    expect(vera.get_by_role("button", name="Run again")).to_be_hidden()
    expect(vera.get_by_role("button", name="Stop", exact=True)).to_be_hidden()

    vera.get_by_role("navigation", name="Main").get_by_role("link", name="History").click()
    row = vera.locator('#history-rows tr[data-run="1"]')
    expect(row).to_contain_text("alice")
    expect(row.get_by_role("button")).to_have_count(0)  # no Run again for a viewer
    vera.get_by_label("Started by").fill("olga")
    vera.get_by_label("Started by").press("Enter")
    expect(vera).to_have_url(re.compile(r"#/history\?user=olga$"))
    expect(vera.locator("#history-rows tr")).to_have_count(0)
    expect(vera.locator("#history-empty")).to_be_visible()
    vera.get_by_label("Started by").fill("alice")
    vera.get_by_label("Started by").press("Enter")
    expect(vera.locator("#history-rows tr")).to_have_count(1)


def test_an_admin_reads_the_audit(ui, team):
    assert httpx.post(team.base + "/api/session", json={"user": "alice", "password": "wrong"}).status_code == 401
    vera = session(team, "vera")
    for _ in range(105):  # refused: she may only view; enough entries for a second page
        assert vera.post("/api/jobs/report/runs", json={"params": {}}).status_code == 403

    alice = signed_in(ui, team, "alice")
    alice.goto(team.base + "/#/audit")
    expect(alice.locator("#page-error")).to_have_text("Only admins can read the audit log.")
    expect(alice.locator("#audit-rows tr")).to_have_count(0)

    olga = signed_in(ui, team, "olga")
    assert job_titles(olga) == ["Sales report", "Slow export", "Deploy production"]  # an admin sees all
    olga.get_by_role("banner").get_by_role("link", name="Audit").click()
    expect(olga.get_by_role("heading", name="Audit", level=2)).to_be_visible()
    rows = olga.locator("#audit-rows tr")
    expect(rows).to_have_count(100)  # one page
    expect(rows.first).to_contain_text("Signed in")
    expect(rows.first).to_contain_text("olga")
    olga.get_by_role("button", name="Show older entries").click()
    # the rest: 3 users added, alice's failed sign-in, vera's sign-in and 105 refusals, alice's sign-in
    # and her refused audit
    expect(rows).to_have_count(113)
    expect(rows.filter(has_text="Added a user")).to_have_count(3)
    failed = rows.filter(has_text="Sign-in failed")
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text("alice")
    expect(failed.locator("td.failed")).to_have_text("failed")
    expect(failed).to_contain_text("127.0.0.1")
    expect(rows.filter(has_text="Refused")).to_have_count(106)
    expect(rows.filter(has_text="Refused").first).to_contain_text("alice")  # the audit itself, refused
    refused = rows.filter(has_text="job:report").first
    expect(refused).to_contain_text("vera")
    expect(refused).to_contain_text("job:report")
    expect(refused).to_contain_text("rule: job.run")
    assert "wrong" not in olga.locator("#audit-rows").inner_text()  # never a password

    olga.get_by_label("Action").select_option("signin")
    expect(olga).to_have_url(re.compile(r"#/audit\?action=signin$"))
    expect(rows).to_have_count(3)
    assert sorted(rows.locator("td:nth-child(2)").all_inner_texts()) == ["alice", "olga", "vera"]
    olga.get_by_label("User", exact=True).fill("vera")
    olga.get_by_label("User", exact=True).press("Enter")
    expect(rows).to_have_count(1)
    olga.get_by_label("Action").select_option("")
    expect(rows).to_have_count(100)
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    olga.get_by_label("Since").fill(tomorrow)
    expect(olga.locator("#audit-empty")).to_be_visible()
    expect(rows).to_have_count(0)


def test_the_audit_filter_offers_every_action_the_server_records_by_name(ui, team):
    olga = signed_in(ui, team, "olga")
    olga.goto(team.base + "/#/audit")
    options = olga.locator("#a-action option")
    expect(options).to_have_count(len(AUDIT_ACTIONS) + 1)
    offered = dict(zip(options.evaluate_all("os => os.map(o => o.value)"), options.all_inner_texts(), strict=True))
    assert set(offered) == {"", *AUDIT_ACTIONS}
    assert all(label and label != action for action, label in offered.items() if action)  # a name, not the code


def test_an_audit_entrys_values_read_as_name_equals_value(ui, team):
    alice = session(team, "alice")
    assert alice.post("/api/jobs/report/runs", json={"params": {"region": "south"}}).status_code == 202
    page = signed_in(ui, team, "olga")
    page.goto(team.base + "/#/audit?action=run.start")
    row = page.locator("#audit-rows tr").first
    expect(row).to_contain_text("Started a run")
    expect(row.locator("td.detail")).to_contain_text("params: region=south")


def test_a_token_is_created_and_revoked_from_the_page(ui, team):
    page = signed_in(ui, team, "alice")
    page.get_by_role("link", name="API tokens").click()
    expect(page.locator("#tokens-empty")).to_be_visible()
    page.get_by_label("Name of a new token").fill("nightly CI")
    page.get_by_role("button", name="Create token").click()
    value = page.get_by_label("The new token")
    expect(value).to_have_value(re.compile(r"^pb_\S{40,}$"))
    token = value.input_value()
    page.get_by_role("button", name="Copy", exact=True).click()
    expect(page.locator("#token-note")).to_have_text("Copied.")
    row = page.locator("#token-rows tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("nightly CI")
    expect(row).to_contain_text("never")
    assert token not in page.locator("#token-rows").inner_text()  # listed without its value

    bearer = {"Authorization": f"Bearer {token}"}
    me = httpx.get(team.base + "/api/me", headers=bearer)
    assert me.status_code == 200 and me.json()["user"] == "alice"
    assert [j["id"] for j in httpx.get(team.base + "/api/jobs", headers=bearer).json()["jobs"]] == ["report", "slow"]

    page.reload()  # the value is shown once only
    expect(row).to_have_count(1)
    expect(page.get_by_label("The new token")).to_be_hidden()
    assert token not in page.content()
    page.get_by_role("button", name="Revoke nightly CI").click()
    page.get_by_role("button", name="Revoke the token").click()
    expect(row).to_have_count(0)
    expect(page.locator("#tokens-empty")).to_be_visible()
    assert httpx.get(team.base + "/api/me", headers=bearer).status_code == 401


def test_with_the_launch_token_the_header_names_the_os_user_without_sign_out(ui, site):
    page = ui.open(site)
    me = page.locator("#me-name")
    expect(me).not_to_be_empty()
    assert httpx.get(site.base + "/api/me", headers={"Authorization": "Bearer page-test-token"}).json()["user"] \
        == me.inner_text()
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    expect(page.get_by_role("link", name="Audit")).to_be_visible()  # the one user is an admin
    expect(page.get_by_role("link", name="API tokens")).to_be_hidden()  # the launch token is the credential


def test_the_tokens_view_under_the_launch_token_says_there_are_none_instead_of_offering_a_form(ui, site):
    page = ui.open(site)
    expect(page.locator("#me-name")).not_to_be_empty()
    page.evaluate("location.hash = '#/tokens'")
    expect(page.locator("#token-error")).to_have_text(
        "This server has no personal API tokens: everyone uses its one access token.")
    expect(page.get_by_role("button", name="Create token")).to_be_hidden()
    expect(page.get_by_role("table", name="Your API tokens")).to_be_hidden()


def test_every_control_of_sign_in_audit_and_tokens_is_named(ui, team):
    page = sign_in_form(ui, team)
    assert unnamed_controls(page) == []
    sign_in(page, "olga")
    expect(page.locator("#job-list .job")).to_have_count(3)
    assert unnamed_controls(page) == []  # the header: name, Sign out, Audit
    page.get_by_role("link", name="Audit").click()
    expect(page.locator("#audit-rows tr").first).to_be_visible()
    assert unnamed_controls(page) == []
    page.get_by_role("link", name="API tokens").click()
    page.get_by_label("Name of a new token").fill("deploy bot")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#token-rows tr")).to_have_count(1)
    assert unnamed_controls(page) == []


@pytest.mark.parametrize("device", ["window", "phone"])
def test_screenshots_of_sign_in_and_audit(ui, team, screenshots, device):
    size = SIZES[device]
    page = sign_in_form(ui, team, size)
    shots = []

    def shot(name: str) -> None:
        path = screenshots / f"{device}-{name}.png"
        page.screenshot(path=path)
        shots.append(path)
        assert page.evaluate("document.documentElement.scrollWidth") <= size[0]  # nothing pushes sideways

    shot("6-sign-in")
    sign_in(page, "alice", "wrong")
    expect(page.get_by_role("alert")).to_be_visible()
    sign_in(page, "olga")
    expect(page.locator("#job-list .job")).to_have_count(3)
    session(team, "alice").post("/api/jobs/deploy/runs", json={"params": {}})  # refused: ops only
    page.goto(team.base + "/#/audit")
    expect(page.locator("#audit-rows tr")).to_have_count(7)  # 3 users added, 2 sign-ins, 1 failed, 1 refused
    shot("7-audit")
    assert all(p.stat().st_size > 5000 for p in shots)
