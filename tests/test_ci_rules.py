"""Under CI=true a test that does not run is a failure (tests/conftest.py): a skip hides a missing
part, an expected failure passes whatever it tests. Checked on a probe suite in its own process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

from tests.conftest import ROOT

PROBE = '''
import pytest

@pytest.fixture
def missing_part():
    pytest.skip("no such program")

def test_skipped_inside():
    pytest.skip("not here")

@pytest.mark.skipif(True, reason="never")
def test_skipped_by_mark():
    pass

def test_skipped_in_a_fixture(missing_part):
    pass

def test_expected_to_fail():
    pytest.xfail("known")

@pytest.mark.xfail(reason="known")
def test_marked_to_fail():
    assert False

def test_that_runs():
    pass
'''


def run_probe(tmp_path, ci: bool) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_runtest_makereport, pytest_sessionfinish  "
                                          "# noqa: F401\n")
    (tmp_path / "test_probe.py").write_text(textwrap.dedent(PROBE))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CI": "true" if ci else "false"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_under_ci_every_skip_and_expected_failure_fails_the_run(tmp_path):
    out = run_probe(tmp_path, ci=True)
    assert out.returncode == 1, out.stdout
    summary = dict((kind, int(n)) for n, kind in re.findall(r"(\d+) (failed|passed|errors?|skipped|xfailed)",
                                                             out.stdout.splitlines()[-1]))
    # a skip in setup (a mark, a fixture) is reported as an error, one in the test as a failure
    assert summary.get("failed", 0) + summary.get("errors", 0) + summary.get("error", 0) == 5, out.stdout
    assert summary["passed"] == 1 and "skipped" not in summary and "xfailed" not in summary, out.stdout


def test_outside_ci_a_skip_is_only_a_skip(tmp_path):
    out = run_probe(tmp_path, ci=False)
    assert out.returncode == 0, out.stdout
    assert "1 passed, 3 skipped, 2 xfailed" in out.stdout, out.stdout
