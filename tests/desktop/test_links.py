"""Links in output, in the real window under Xvfb: an http(s) link opens in the system browser
(Python's `webbrowser`, pointed at a recorder by $BROWSER), and the window never leaves the app."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.desktop.conftest import ROOT
from tests.desktop.links_driver import LINK

pytestmark = pytest.mark.timeout(240)

JOBS = r"""
[pushbutton]
title = Links

[job:links]
title = Links
shell = yes
command = printf 'docs: \033]8;;https://example.com/pb-link-test\033\\the manual\033]8;;\033\\\n';
    printf '\033]8;;javascript:alert(1)\033\\not a link\033]8;;\033\\\n'
"""


def test_a_link_in_output_opens_in_the_system_browser_and_the_window_stays(desktop_env, tmp_path):
    jobs = tmp_path / "jobs.ini"
    jobs.write_text(JOBS.lstrip())
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    browser.chmod(0o755)
    env = {**desktop_env, "PYTHONPATH": str(ROOT), "BROWSER": f"{browser} %s"}
    proc = subprocess.run([sys.executable, "-m", "tests.desktop.links_driver", "links", "--jobs", str(jobs),
                           "--data-dir", str(tmp_path / "data")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)
    seen: dict = {}
    for line in proc.stdout.splitlines():
        if line.startswith("DRIVER "):
            seen.update(json.loads(line[7:]))
    assert "error" not in seen and proc.returncode == 0, proc.stderr[-3000:]
    assert seen["links"] == [LINK]  # the javascript: one stayed text
    assert opened.read_text().splitlines() == [LINK]  # once; not the script's URL, not file:
    assert seen["url"].startswith("http://127.0.0.1:") and "#/runs/" in seen["url"]
    assert seen["shows_run"] == "Succeeded" and seen["title"] == "Links"
    assert "the window did not leave the app for https://example.org/away" in proc.stderr
