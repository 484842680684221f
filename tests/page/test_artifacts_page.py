"""The run view lists a run's artifacts once it ends, with links that download the exact files
(real server, Debian's Chromium)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.page.conftest import start_site, stop_site

NAMES = ["report.csv", "logs/app one.log", "ünï ✓ 100% #1?.txt"]
WRITER = """
import os, sys, time
root = os.environ["PB_ARTIFACTS"]
gate = sys.argv[1]
while gate and not os.path.exists(gate):
    time.sleep(0.05)
for name in NAMES:
    os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
    with open(os.path.join(root, name), "w") as f:
        f.write("content of " + name)
print("done")
""".replace("NAMES", repr(NAMES))


@pytest.fixture
def site(tmp_path):
    (tmp_path / "writer.py").write_text(WRITER)
    jobs = tmp_path / "jobs.ini"
    jobs.write_text(f"[job:export]\ntitle = Export\ncommand = python3 {tmp_path / 'writer.py'} {{gate}}\n"
                    "param.gate.type = text\nparam.gate.label = Gate\n\n"
                    "[job:quiet]\ntitle = Quiet\ncommand = true\n")
    site = start_site(jobs, tmp_path)
    yield site
    stop_site(site)


def test_an_ended_run_lists_its_artifacts_and_a_link_downloads_the_file(ui, site, tmp_path):
    gate = tmp_path / "gate"
    page = ui.open(site)
    ui.open_job(page, "Export")
    page.get_by_label("Gate").fill(str(gate))
    ui.run(page)
    expect(ui.status(page)).to_have_text("Running")
    artifacts = page.get_by_role("region", name="Artifacts")
    expect(artifacts).to_be_hidden()  # nothing until the run has ended
    gate.touch()
    expect(ui.status(page)).to_have_text("Succeeded")
    links = artifacts.get_by_role("link")
    expect(links).to_have_text(sorted(NAMES))
    expect(artifacts).to_contain_text("report.csv 21 bytes")
    for name in NAMES:
        with page.expect_download() as info:
            artifacts.get_by_role("link", name=name, exact=True).click()
        download = info.value
        assert download.suggested_filename == name.rsplit("/", 1)[-1].replace("?", "_")  # Chrome's rule for '?'

        assert Path(download.path()).read_text() == f"content of {name}"


def test_a_run_without_artifacts_shows_no_list_and_another_run_replaces_the_list(ui, site):
    page = ui.open(site)
    ui.open_job(page, "Export")
    ui.run(page)
    expect(ui.status(page)).to_have_text("Succeeded")
    expect(page.get_by_role("region", name="Artifacts").get_by_role("link")).to_have_count(len(NAMES))
    ui.open_job(page, "Quiet")
    ui.run(page)
    expect(ui.status(page)).to_have_text("Succeeded")
    expect(page.get_by_role("heading", level=2)).to_have_text(re.compile("Quiet"))
    expect(page.get_by_role("region", name="Artifacts")).to_be_hidden()
