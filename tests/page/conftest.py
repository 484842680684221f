"""Browser tests of the page: a real `pushbutton --headless` process, Debian's Chromium, Playwright.

`site` is the server a test's page talks to: the sample jobs.ini by default; a module that needs
the lab jobs (tests/page/lab-jobs.ini) overrides it with `lab`. Without Chromium the tests skip,
except under CI=true, where they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:
    if IN_CI:
        raise  # CI must run the browser tests: an import error fails the run
    collect_ignore_glob = ["test_*.py"]


def pytest_report_header(config):
    if "collect_ignore_glob" in globals():
        return "tests/page: skipped, playwright is not installed (pip install -e '.[dev]')"
    return None


ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "jobs.ini"
LAB = Path(__file__).with_name("lab-jobs.ini")
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("PUSHBUTTON_CHROMIUM", "/usr/bin/chromium")  # Debian's; override elsewhere
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
TOKEN = "page-test-token"
WAIT_MS = 30_000  # generous: a loaded 2-core machine; assertions stay exact


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser tests must run)")
    pytest.skip(reason)


@dataclass
class Site:
    """One running `pushbutton --headless`."""

    base: str  # http://127.0.0.1:PORT
    proc: subprocess.Popen
    data_dir: Path

    def login(self, base: str | None = None) -> str:
        return f"{base or self.base}/?token={TOKEN}"

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, self.base + path, headers={"Authorization": f"Bearer {TOKEN}"},
                             timeout=30, **kwargs)

    def runs(self, **query) -> list[dict]:
        return self.api("GET", "/api/runs", params=query).json()["runs"]


def start_site(jobs: Path, tmp: Path) -> Site:
    data = tmp / "data"
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("pushbutton")), "--headless", "--jobs", str(jobs), "--port", "0",
         "--token", TOKEN, "--data-dir", str(data)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=open(tmp / "server.log", "w"), text=True,  # noqa: SIM115
        start_new_session=True,  # as a served server runs: not in the browser's session (its CPU share)
    )
    line = proc.stdout.readline()
    match = re.search(r"(http://[^/\s]+)/\?token=", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}; see {tmp / 'server.log'}")
    return Site(match.group(1), proc, data)


def stop_site(site: Site) -> None:
    site.proc.send_signal(signal.SIGTERM)
    try:
        site.proc.wait(15)
    except subprocess.TimeoutExpired:
        site.proc.kill()
        site.proc.wait()


@pytest.fixture
def sample(tmp_path) -> Iterator[Site]:
    site = start_site(SAMPLE, tmp_path)
    yield site
    stop_site(site)


@pytest.fixture
def lab(tmp_path) -> Iterator[Site]:
    site = start_site(LAB, tmp_path)
    yield site
    stop_site(site)


@pytest.fixture
def site(sample) -> Site:
    return sample


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Ui:
    """Opens logged-in pages and reads them the way a user would: by role and name."""

    def __init__(self, browser):
        self.browser = browser
        self.pages = []

    def blank(self, viewport=(1024, 700), **context):
        """A fresh browser context's page, watched for errors, not yet anywhere."""
        ctx = self.browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, **context)
        page = ctx.new_page()
        page.set_default_timeout(WAIT_MS)
        page.errors = []
        page.expected_console_errors = []  # regexes a test that provokes one (a cut connection) adds
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.on("console", lambda msg: self._console(page, msg))
        self.pages.append(page)
        return page

    def open(self, site: Site, viewport=(1024, 700), base: str | None = None, **context):
        """A fresh browser context, logged in through `/?token=`, showing the job list."""
        page = self.blank(viewport, **context)
        page.goto(site.login(base))
        page.locator("#job-list .job").first.wait_for()
        return page

    @staticmethod
    def _console(page, msg) -> None:
        """A console error (a CSP violation is one) fails the test, unless the test expects it. An
        API's 4xx answer (a field error, a confirmation asked for) is the page's to handle: not one."""
        if msg.type != "error" or any(re.search(p, msg.text) for p in page.expected_console_errors):
            return
        url = msg.location.get("url", "")
        if "/api/" in url and re.match(r"Failed to load resource: .* status of 4\d\d", msg.text):
            return
        page.errors.append(f"console: {msg.text} ({url})")

    @staticmethod
    def job_link(page, title: str):
        """A job in the job list (its name holds title, description and live state)."""
        return page.get_by_role("complementary", name="Jobs").get_by_role("link", name=re.compile(re.escape(title)))

    def open_job(self, page, title: str) -> None:
        self.job_link(page, title).click()
        expect(page.get_by_role("heading", name=title, level=2)).to_be_visible()

    @staticmethod
    def run(page) -> None:
        page.get_by_role("button", name="Run", exact=True).click()

    @staticmethod
    def status(page):
        return page.get_by_role("status", name="Status")

    @staticmethod
    def lines(page, stream: str | None = None) -> list[str]:
        """The output lines in the DOM, in order (only one stream's if given)."""
        selector = {"stdout": "#log .l:not(.e)", "stderr": "#log .l.e"}.get(stream, "#log .l")
        return page.locator(selector).evaluate_all("els => els.map(e => e.textContent)")

    @contextlib.contextmanager
    def main_thread_cpu(self) -> Iterator[list[float]]:
        """The CPU time, in ms, of each task the pages' main threads ran meanwhile (filled in at the
        end), from Chromium's own trace. A long task's duration (PerformanceObserver) is wall-clock
        time, and holds the time the task waited for a CPU: on a busy 2-core CI machine, tasks of a few
        ms of work took 209 and 639 ms, which says more about the machine than about the page."""
        tasks: list[float] = []
        self.browser.start_tracing(categories=["toplevel"])
        try:
            yield tasks
        finally:
            trace = json.loads(self.browser.stop_tracing())
            events = trace["traceEvents"] if isinstance(trace, dict) else trace
            main = {(e["pid"], e["tid"]) for e in events
                    if e.get("ph") == "M" and e.get("name") == "thread_name" and e["args"]["name"] == "CrRendererMain"}
            # thread time, the CPU the task itself used (Chromium leaves it out of a task of a µs or so)
            tasks += [e.get("tdur", e["dur"]) / 1000 for e in events
                      if e.get("ph") == "X" and e["name"] == "ThreadControllerImpl::RunTask"
                      and (e["pid"], e["tid"]) in main]

    def close(self) -> list[str]:
        errors = [e for page in self.pages for e in page.errors]
        for page in self.pages:
            page.context.close()
        return errors


@pytest.fixture
def ui(browser) -> Iterator[Ui]:
    ui = Ui(browser)
    yield ui
    errors = ui.close()
    assert errors == [], f"JavaScript or console errors on the page: {errors}"


@pytest.fixture
def page(ui, site):
    return ui.open(site)


@pytest.fixture
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
