"""File parameters in the page (assets/js/upload.js, form.js) in Chromium: the chooser with the
job's accept, a quick size check before anything is sent, the multipart start, the file's name and
size in the run view and history, and Run again asking for the file again."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.page.conftest import Site, start_site, stop_site

JOBS = """
[job:import]
title = Import accounts
command = sh -c 'printf "%s|%s|%s\\n" "$PB_ACCOUNTS_FILENAME" "$(wc -c < "$1")" "$PB_NOTE"' sh {accounts}
param.accounts.type = file
param.accounts.required = yes
param.accounts.max_size = 1KB
param.accounts.accept = .csv
param.note.type = text
"""


@pytest.fixture
def files_site(tmp_path) -> Iterator[Site]:
    jobs = tmp_path / "jobs.ini"
    jobs.write_text(textwrap.dedent(JOBS))
    site = start_site(jobs, tmp_path)
    yield site
    stop_site(site)


def test_a_chosen_file_is_uploaded_and_its_name_and_size_shown(ui, files_site, tmp_path):
    page = ui.open(files_site)
    ui.open_job(page, "Import accounts")
    chooser = page.get_by_label("Accounts")
    expect(chooser).to_have_attribute("accept", ".csv")
    expect(page.locator("#h-accounts")).to_have_text("Up to 1KB; .csv.")
    source = tmp_path / "accounts é.csv"
    source.write_bytes(b"id,name\n1,alpha\n")
    chooser.set_input_files(str(source))
    page.get_by_label("Note").fill("from the page")
    expect(page.locator("#form-preview")).to_contain_text("<accounts upload>")  # described, not sent, to preview
    ui.run(page)
    expect(ui.status(page)).to_have_text(re.compile("Succeeded"))
    assert ui.lines(page) == ["accounts é.csv|16|from the page"]
    expect(page.locator("#run-params")).to_contain_text("Accounts: accounts é.csv (16 bytes)")
    run = files_site.runs()[0]
    assert run["params"]["accounts"]["name"] == "accounts é.csv" and run["params"]["accounts"]["size"] == 16


def test_a_file_too_large_is_refused_in_the_page_before_sending(ui, files_site, tmp_path):
    page = ui.open(files_site)
    ui.open_job(page, "Import accounts")
    big, wrong = tmp_path / "big.csv", tmp_path / "notes.txt"
    big.write_bytes(b"x" * 2000)
    wrong.write_bytes(b"1")
    page.get_by_label("Accounts").set_input_files(str(big))
    field = page.locator('.field[data-name="accounts"] .error')
    expect(field).to_have_text("Larger than the 1KB allowed.")
    page.get_by_label("Accounts").set_input_files(str(wrong))  # a chooser's "all files" lets any through
    expect(field).to_have_text("Must be one of: .csv.")
    ui.run(page)
    expect(page.locator("#form-error")).to_have_text("Please correct the marked fields.")
    assert files_site.runs() == []


def test_run_again_opens_the_form_asking_for_the_file(ui, files_site, tmp_path):
    page = ui.open(files_site)
    ui.open_job(page, "Import accounts")
    source = tmp_path / "a.csv"
    source.write_bytes(b"1\n")
    page.get_by_label("Accounts").set_input_files(str(source))
    ui.run(page)
    expect(ui.status(page)).to_have_text(re.compile("Succeeded"))
    page.get_by_role("button", name="Run again").click()
    expect(page.get_by_role("heading", name="Import accounts", level=2)).to_be_visible()
    expect(page.locator('.field[data-name="accounts"] .error')).to_have_text(
        "Choose the file again: files are not kept after a run")
    page.get_by_label("Accounts").set_input_files(str(source))
    ui.run(page)
    expect(ui.status(page)).to_have_text(re.compile("Succeeded"))
    assert len(files_site.runs()) == 2
