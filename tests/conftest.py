from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import gevent
import pytest

from tests.helpers import Pushbutton, in_ci

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def main_hub_kept_whole():
    """Tests that run greenlets do so on this thread's hub. If one leaves its loop counting fewer
    than no active watchers (a watcher of this loop touched from another thread, say), every later
    wait here ends in LoopExit ("would block forever"): fail the test that did it, not those after."""
    yield
    hub = gevent.get_hub()
    assert hub.loop.activecnt >= 0, f"this test left the main hub's loop with activecnt {hub.loop.activecnt}"


@pytest.fixture
def write_jobs(tmp_path):
    """Write a jobs.ini (dedented) into a fresh folder; returns its path."""

    def write(text: str, name: str = "jobs.ini") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


@pytest.fixture
def pushbutton(tmp_path):
    """Factory: start a real headless server process; every one is stopped afterwards."""
    started: list[Pushbutton] = []

    def start(jobs: Path, *extra: str, data_dir: Path | None = None) -> Pushbutton:
        pb = Pushbutton(jobs, data_dir or tmp_path / "data", tmp_path / "server.log")
        started.append(pb)
        return pb.start(*extra)

    yield start
    for pb in started:  # as a user would stop it, so a failed test leaves no run behind
        if pb.proc is not None and pb.proc.poll() is None:
            pb.proc.terminate()
            try:
                pb.proc.wait(30)
            except subprocess.TimeoutExpired:
                pb.proc.kill()
                pb.proc.wait()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a skipped test is a failure: a skip there hides a missing part. So is an
    expected failure (xfail), which passes whatever it tests."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci():
        kind = "expected to fail (xfail)" if hasattr(report, "wasxfail") else "skipped"
        report.outcome = "failed"
        report.longrepr = f"{kind} under CI=true, which is a failure: {report.longrepr}"


def pytest_sessionfinish(session, exitstatus):
    """Also for skips at collection time (a module that cannot import its browser, say)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if in_ci() and reporter is not None and reporter.stats.get("skipped") and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
