"""No other page may frame Pushbutton: a page on another port of 127.0.0.1 is the same site to the
browser (the login cookie goes along), so it could otherwise show the logged-in page in a frame
and trick the user into clicking Run."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from tests.page.conftest import Site, start_site, stop_site


@pytest.fixture
def other_site(site) -> Iterator[str]:
    """A page on another port of this machine that frames Pushbutton's page."""
    html = f'<!doctype html><title>other</title><iframe id="victim" src="{site.base}/"></iframe>'.encode()

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server calls
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(html)))
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_a_page_on_another_port_cannot_frame_the_logged_in_page(ui, page, site, other_site):
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.expected_console_errors.append(r"frame-ancestors 'none'")  # the refusal this test is about
    with page.expect_response(f"{site.base}/") as framed:
        page.goto(other_site)
    assert framed.value.status == 200  # the cookie went along: without the headers it would show
    page.locator("#victim").wait_for(state="attached")
    page.wait_for_load_state("load")
    frame = page.frame_locator("#victim")
    assert frame.locator("#job-list").count() == 0
    child = next(f for f in page.frames if f != page.main_frame)
    assert not child.url.startswith(site.base), child.url
    assert any("frame-ancestors 'none'" in text for text in console), console


POLICY_JOBS = r"""
[job:colours]
title = Colours
description = Bold, colours, true colour and enough lines for several blocks.
confirm = Paint {times} times?
shell = yes
command = printf '\033[1mbold\033[0m \033[31mred\033[0m \033[38;2;10;200;30mtrue\033[0m\n'; seq 1 "$PB_TIMES" >&2
param.times.type = int
param.times.label = Times
param.times.default = 700
"""


@pytest.fixture
def policy_site(tmp_path) -> Iterator[Site]:
    jobs = tmp_path / "jobs.ini"
    jobs.write_text(POLICY_JOBS.lstrip())
    site = start_site(jobs, tmp_path)
    yield site
    stop_site(site)


def test_the_page_does_everything_within_its_policy(ui, policy_site):
    """Nothing the page does (form, confirm dialog, coloured output in several blocks, history)
    needs inline script or style: a refusal is a console error, which fails the test (`ui`)."""
    page = ui.open(policy_site)
    ui.open_job(page, "Colours")
    ui.run(page)
    page.get_by_role("dialog").get_by_role("button", name=re.compile("run", re.I)).first.click()
    expect(ui.status(page)).to_have_text("Succeeded")
    expect(page.locator("#log .l.e").last).to_have_text("700")
    assert page.locator("#log .l:not(.e)").first.text_content() == "bold red true"
    page.get_by_role("link", name="History").click()
    expect(page.locator("#view-history")).to_be_visible()
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 200)))")
