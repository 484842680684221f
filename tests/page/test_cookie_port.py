"""Two team servers on one host, in one real browser: Chromium keeps cookies per host, not per
port, so with one cookie name signing in to the second server signed the user out of the first.
Each server's session cookie is named for the port the browser reached (tests/edge/test_cookie_port.py
has the rest)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.page.conftest import ROOT, Site, stop_site
from tests.page.test_teams import JOBS, PASSWORDS, PUSHBUTTON, sign_in


def start(tmp, user: str) -> Site:
    data = tmp / f"data-{user}"
    subprocess.run([PUSHBUTTON, "users", "add", user, "--jobs", str(JOBS), "--data-dir", str(data)],
                   input=PASSWORDS[user] + "\n", text=True, check=True, capture_output=True, cwd=ROOT)
    proc = subprocess.Popen(
        [PUSHBUTTON, "--headless", "--jobs", str(JOBS), "--port", "0", "--data-dir", str(data)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=open(tmp / f"server-{user}.log", "w"), text=True,  # noqa: SIM115
    )
    match = re.search(r"serving on (http://[^/\s?]+)", proc.stdout.readline())
    if not match:
        proc.kill()
        raise RuntimeError(f"server did not start; see {tmp / f'server-{user}.log'}")
    return Site(match.group(1), proc, data)


@pytest.fixture
def two(tmp_path) -> Iterator[tuple[Site, Site]]:
    sites = (start(tmp_path, "alice"), start(tmp_path, "olga"))
    yield sites
    for site in sites:
        stop_site(site)


def test_signing_in_to_a_second_server_on_another_port_keeps_the_first_signed_in(ui, two):
    a, b = two
    first = ui.blank()
    first.goto(a.base + "/")
    sign_in(first, "alice")
    expect(first.get_by_role("banner")).to_contain_text("alice")
    second = first.context.new_page()  # another tab of the same browser: the same cookies
    second.goto(b.base + "/")
    sign_in(second, "olga")
    expect(second.get_by_role("banner")).to_contain_text("olga")
    first.reload()
    expect(first.locator("#job-list .job").first).to_be_visible()
    expect(first.get_by_role("banner")).to_contain_text("alice")
    expect(first.get_by_role("heading", name="Sign in")).to_be_hidden()
