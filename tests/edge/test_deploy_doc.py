"""docs/deploy.md cannot rot: its nginx config is the one tests/edge/test_nginx.py runs (see
tests/edge/nginx.py), its jobs.ini settings pass `pushbutton check`, and systemd accepts its unit
without an unknown option."""

from __future__ import annotations

import re
import shutil
import subprocess
import textwrap

import pytest

from tests.edge import nginx as N
from tests.helpers import BIN, in_ci


def ini_blocks() -> list[str]:
    return [textwrap.dedent(block) for block in re.findall(r"```ini\n(.*?)```", N.DOC.read_text(), re.S)]


def test_the_jobs_ini_settings_of_the_doc_pass_check(tmp_path):
    settings = next(block for block in ini_blocks() if block.startswith("[pushbutton]"))
    (tmp_path / "proxy-secret").write_text("s3cret\n")
    assert settings.count("/etc/pushbutton/proxy-secret") == 1  # without it, check warns: anyone local is anyone
    settings = settings.replace("/etc/pushbutton/proxy-secret", str(tmp_path / "proxy-secret"))
    jobs = tmp_path / "jobs.ini"
    jobs.write_text(settings + "\n[job:hello]\ncommand = echo hello\n")
    done = subprocess.run([BIN, "check", "--jobs", str(jobs)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_systemd_accepts_the_unit_of_the_doc(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        (pytest.fail if in_ci() else pytest.skip)("systemd-analyze is missing (Debian package systemd)")
    unit = next(block for block in ini_blocks() if block.startswith("[Unit]"))
    assert "ExecStart=/opt/pushbutton/pushbutton-server --headless " in unit
    (tmp_path / "pushbutton.service").write_text(unit.replace("/opt/pushbutton/pushbutton-server", BIN))
    done = subprocess.run([analyze, "verify", "./pushbutton.service"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "pushbutton.service" not in done.stderr, done.stderr
