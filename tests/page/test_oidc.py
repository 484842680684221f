"""The page with `auth = oidc`: through a real OpenID provider's login and consent pages and back.

The provider is npm's oidc-provider (tests/sso/oidc); its dev pages are filled as a user would.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.page.conftest import ROOT, Site, stop_site
from tests.sso.oidc.fixture import OidcProvider

JOBS = """[pushbutton]
{keys}admins = team:ops
[team:ops]
oidc_groups = ops
[team:analysts]
oidc_groups = analysts
[job:report]
title = Weekly report
command = echo report
run_by = team:analysts
[job:deploy]
title = Deploy
command = echo deploy
"""


@pytest.fixture
def oidc_site(tmp_path, monkeypatch):
    provider = OidcProvider(tmp_path)
    monkeypatch.setenv("PUSHBUTTON_OIDC_CLIENT_SECRET", provider.secret)
    jobs = tmp_path / "jobs.ini"
    jobs.write_text(JOBS.format(keys=provider.jobs_keys()))
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("pushbutton")), "--headless", "--jobs", str(jobs), "--port", "0",
         "--data-dir", str(tmp_path / "data")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=open(tmp_path / "server.log", "w"), text=True,  # noqa: SIM115
    )
    line = proc.stdout.readline()
    match = re.search(r"serving on (http://[^/\s?]+)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}; see {tmp_path / 'server.log'}")
    site = Site(match.group(1), proc, tmp_path / "data")
    provider.start(site.base)
    yield site, provider
    stop_site(site)
    provider.stop()


def offline_fonts(page) -> None:
    """The provider's dev pages @import a web font; this machine is offline: an empty stylesheet."""
    page.context.route(re.compile(r"https://fonts\.googleapis\.com/.*"),
                       lambda route: route.fulfill(status=200, body="", content_type="text/css"))


def provider_sign_in(page, user: str) -> None:
    page.locator("input[name=login]").fill(user)
    page.locator("input[name=password]").fill("any password")
    page.locator("button[type=submit]").click()
    page.get_by_role("button", name=re.compile("Continue", re.I)).click()  # the consent page


def test_the_page_goes_to_the_provider_and_comes_back_signed_in_to_the_view_it_asked_for(ui, oidc_site):
    site, provider = oidc_site
    page = ui.blank()
    offline_fonts(page)
    page.goto(f"{site.base}/#/jobs/report")
    page.wait_for_url(re.compile(re.escape(provider.issuer)))  # straight there: the only way to sign in
    provider_sign_in(page, "alice")
    expect(page.get_by_role("heading", name="Weekly report", level=2)).to_be_visible()
    assert page.url == f"{site.base}/#/jobs/report"
    expect(page.locator("#me-name")).to_have_text("alice")
    titles = page.locator("#job-list .job").evaluate_all("els => els.map(e => e.textContent)")
    assert len(titles) == 1 and "Weekly report" in titles[0]  # analysts' job only


def test_signing_out_ends_the_providers_session_and_offers_to_sign_in_again(ui, oidc_site):
    site, provider = oidc_site
    page = ui.blank()
    offline_fonts(page)
    page.goto(site.base + "/")
    provider_sign_in(page, "olga")
    expect(page.locator("#job-list .job")).to_have_count(2)  # an admin (team ops) sees every job
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Yes, sign me out").click()  # the provider's own page
    expect(page.get_by_text("You have signed out.")).to_be_visible()
    assert page.url.startswith(site.base)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("input[name=login]")).to_be_visible()  # the provider asks again: its session ended too


def test_a_refused_sign_in_comes_back_with_a_message_and_a_way_to_try_again(ui, oidc_site):
    site, provider = oidc_site
    page = ui.blank()
    offline_fonts(page)
    provider.tamper("expired")
    page.goto(site.base + "/")
    provider_sign_in(page, "alice")
    expect(page.get_by_role("alert")).to_have_text(re.compile("could not be verified"))
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#me-name")).to_have_text("alice")  # the provider still knows alice: straight back
