"""A real window under Xvfb: the app is started as `pushbutton` starts it, and driven from inside
through the page (tests/desktop/driver.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.desktop.conftest import ROOT, need

pytestmark = pytest.mark.timeout(240)
PUSHBUTTON = str(Path(sys.executable).with_name("pushbutton"))

JOBS = """
[pushbutton]
title = Test Ops Desk

[job:greet]
title = Greeting
command = echo hello from the window

[job:fails]
title = Disk check
command = sh -c "echo no space; exit 3"

[job:slow]
title = Slow backup
command = sleep 120
grace = 2s
"""


@pytest.fixture
def jobs_ini(tmp_path) -> Path:
    path = tmp_path / "jobs" / "jobs.ini"
    path.parent.mkdir()
    path.write_text(textwrap.dedent(JOBS).lstrip())
    return path


def drive(scenario: str, env: dict, *args: str, cwd: Path = ROOT, timeout: float = 180,
          extra_env: dict | None = None) -> tuple[int, dict, str]:
    """Run the driver; return (exit code, merged DRIVER reports, stderr)."""
    env = {**env, "PYTHONPATH": str(ROOT), **(extra_env or {})}
    proc = subprocess.run([sys.executable, "-m", "tests.desktop.driver", scenario, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    reports: dict = {"stdout": []}  # the app's own lines on stdout
    for line in proc.stdout.splitlines():
        if line.startswith("DRIVER "):
            reports.update(json.loads(line[7:]))
        else:
            reports["stdout"].append(line)
    assert "error" not in reports, f"driver failed: {reports['error']}\n{proc.stderr[-3000:]}"
    return proc.returncode, reports, proc.stderr


def history(data_dir: Path) -> dict[int, dict]:
    with sqlite3.connect(data_dir / "history.sqlite3") as db:
        db.row_factory = sqlite3.Row
        return {r["id"]: dict(r) for r in db.execute("SELECT * FROM runs")}


def not_blank(png: Path) -> int:
    """Number of distinct colours in the screenshot (a blank or black window has 1-2)."""
    out = subprocess.run(["convert", str(png), "-format", "%k", "info:"], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_window_runs_a_job_on_the_sample_and_shows_it(desktop_env, artifacts, tmp_path):
    shot = artifacts / "window-sample.png"
    shot.unlink(missing_ok=True)
    code, seen, err = drive("run_job", desktop_env, "--jobs", str(ROOT / "jobs.ini"), "--data-dir",
                            str(tmp_path / "data"), extra_env={"DRIVER_SCREENSHOT": str(shot)})
    assert code == 0, err[-3000:]
    assert seen["title"] == "Acme Ops (sample)"  # from jobs.ini
    # The login URL was swapped for a cookie: the window shows `/` without the token, and the page
    # itself is authenticated.
    assert seen["url"].startswith("http://127.0.0.1:") and "token" not in seen["url"]
    assert seen["page_status"] == 200 and seen["jobs_status"] == 200
    # Once the page showed, one line for ops scripts and support: where, and no secret.
    origin = seen["url"].split("/")[2]
    assert seen["stdout"] == [f"Pushbutton window showing http://{origin}/"]
    # Under the page's security policy (no framing, only its own scripts) the window still works:
    # the job list below was rendered by the page's script, and the policy refused nothing it did.
    assert "frame-ancestors 'none'" in seen["page_headers"]["content-security-policy"]
    assert seen["page_headers"]["x-frame-options"] == "DENY"
    # The per-launch secret is in no command line or environment; other programs are refused.
    assert seen["token_seen_in"] == []
    assert seen["without_token"] == 401 and seen["wrong_token"] == 401
    assert {"deploy", "report", "greet"} <= set(seen["jobs"])
    # Driven through the job page: the job picked in the list, its form filled, Run pressed.
    assert seen["job_in_list"] is True
    assert seen["badge"] == "Succeeded" and seen["shown_output"] is True
    assert seen["state"] == "succeeded"
    assert "Hello, Xvfb!" in seen["log"]
    assert seen["csp_violations"] == ["style-src-attr inline"]  # the driver's canary, nothing of the page
    assert shot.is_file() and not_blank(shot) > 16, "the screenshot of the window is blank"
    assert "first page shown after" in err
    assert history(tmp_path / "data")[seen["run"]]["state"] == "succeeded"


def test_closing_with_an_active_run_asks_and_records_it_cancelled(desktop_env, jobs_ini, tmp_path):
    data = tmp_path / "data"
    t0 = time.monotonic()
    code, seen, err = drive("close_prompt", desktop_env, "--jobs", str(jobs_ini), "--data-dir", str(data))
    assert code == 0, err[-3000:]
    assert seen["state"] == "running"
    first = seen["first_dialog"]
    assert first["text"] == "1 job is still running. Stop it and quit, or keep the window open?"
    assert "Slow backup" in first["informative"]
    assert first["buttons"] == ["Keep the window open", "Stop it and quit"]
    # "Keep the window open": nothing happened.
    assert seen["visible"] is True and seen["state_after_keep"] == "running"
    assert seen["second_dialog"] is not None
    run = history(data)[seen["run"]]
    assert run["state"] == "cancelled" and run["finished"] is not None
    assert time.monotonic() - t0 < 60  # `sleep 120` was stopped, not waited for
    assert "recorded as cancelled" in err


def test_run_ends_are_notified_only_when_the_window_is_not_focused(desktop_env, jobs_ini, tmp_path):
    # No system tray under Xvfb: the freedesktop path (`notify-send`) is taken; a stand-in records it.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "notify-send.log"
    fake = bin_dir / "notify-send"
    fake.write_text(f'#!/bin/sh\nprintf "%s|" "$@" >> {record}\necho >> {record}\n')
    fake.chmod(0o755)
    env = {**desktop_env, "PATH": f"{bin_dir}:{desktop_env['PATH']}"}
    code, seen, err = drive("notify", env, "--jobs", str(jobs_ini), "--data-dir", str(tmp_path / "data"))
    assert code == 0, err[-3000:]
    assert seen["focused"] is True and seen["calls_while_focused"] == []
    assert seen["unfocused"] is True
    calls = seen["calls_while_unfocused"]
    assert [c["title"] for c in calls] == ["Greeting succeeded", "Disk check failed"]
    assert calls[1]["body"].endswith("exited with status 3.")
    assert all(c["channels"] == ["notify-send", "alert"] for c in calls)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (not record.exists() or record.read_text().count("\n") < 2):
        time.sleep(0.1)
    lines = record.read_text().splitlines()
    assert lines[0].split("|")[:4] == ["--app-name", "Test Ops Desk", "--urgency", "normal"]
    assert "Greeting succeeded" in lines[0] and "Disk check failed" in lines[1]


def test_a_run_waiting_for_the_users_approval_is_notified_but_not_their_own(desktop_env, tmp_path):
    from server.auth.identity import os_user

    jobs = tmp_path / "jobs.ini"
    jobs.write_text(f"[pushbutton]\ntitle = Test Ops Desk\n\n[job:guarded]\ntitle = Guarded restart\n"
                    f"command = true\napprove_by = {os_user()}\n")
    bin_dir = tmp_path / "bin"  # no tray under Xvfb: `notify-send` is used; a stand-in records it
    bin_dir.mkdir()
    record = tmp_path / "notify-send.log"
    fake = bin_dir / "notify-send"
    fake.write_text(f'#!/bin/sh\nprintf "%s|" "$@" >> {record}\necho >> {record}\n')
    fake.chmod(0o755)
    env = {**desktop_env, "PATH": f"{bin_dir}:{desktop_env['PATH']}"}
    code, seen, err = drive("approval_notice", env, "--jobs", str(jobs), "--data-dir", str(tmp_path / "data"))
    assert code == 0, err[-3000:]
    assert seen["unfocused"] is True and seen["own_state"] == "awaiting_approval"
    # Only alice's run: the window's user requested the other one and may not approve it.
    assert seen["calls"] == [{"title": "Guarded restart waits for your approval",
                              "body": f"Run {seen['others']} was requested by alice."}]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (record.exists() and record.read_text().endswith("\n")):
        time.sleep(0.1)
    sent = record.read_text()
    assert f"|Guarded restart waits for your approval|Run {seen['others']} was requested by alice.|" in sent
    assert history(tmp_path / "data")[seen["others"]]["user"] == "alice"


def test_a_second_launch_brings_the_window_forward_and_exits(desktop_env, jobs_ini, tmp_path):
    data = tmp_path / "data"
    args = ["--jobs", str(jobs_ini), "--data-dir", str(data)]
    code, seen, err = drive("single_instance", desktop_env, *args, extra_env={"DRIVER_PUSHBUTTON": PUSHBUTTON})
    assert code == 0, err[-3000:]
    assert seen["minimized"] is True and seen["unfocused"] is True
    assert seen["second_code"] == 0, seen["second_stderr"]
    assert "already open" in seen["second_stderr"] and "brought its window forward" in seen["second_stderr"]
    assert "serving" not in seen["second_stderr"].lower()
    assert seen["second_seconds"] < 10
    assert seen["forward"] is True  # un-minimised and focused again
    assert "a second launch asked for this window" in err
    assert not (data / "desktop.sock").exists()  # the first launch cleaned up on close


def test_window_size_and_position_are_remembered(desktop_env, jobs_ini, tmp_path):
    args = ["--jobs", str(jobs_ini), "--data-dir", str(tmp_path / "data")]
    code, seen, err = drive("geometry", desktop_env, *args, extra_env={"DRIVER_GEOMETRY": "900x640+50+60"})
    assert code == 0, err[-3000:]
    assert seen["geometry"] == [900, 640, 50, 60]
    saved = Path(desktop_env["XDG_CONFIG_HOME"]) / "pushbutton" / "window.json"
    assert json.loads(saved.read_text())["width"] == 900
    code, seen, err = drive("geometry", desktop_env, *args)
    assert code == 0, err[-3000:]
    assert seen["geometry"] == [900, 640, 50, 60]


def test_a_saved_position_off_every_screen_opens_the_window_centred(desktop_env, jobs_ini, tmp_path):
    # Saved on a second monitor that is gone now (Xvfb's one screen is 1280x800).
    saved = Path(desktop_env["XDG_CONFIG_HOME"]) / "pushbutton" / "window.json"
    saved.parent.mkdir(parents=True)
    saved.write_text(json.dumps({"width": 900, "height": 640, "x": 3000, "y": 200}))
    code, seen, err = drive("geometry", desktop_env, "--jobs", str(jobs_ini), "--data-dir", str(tmp_path / "data"))
    assert code == 0, err[-3000:]
    assert seen["geometry"] == [900, 640, (1280 - 900) // 2, (800 - 640) // 2]  # size kept, centred
    assert "on no screen now" in err


def test_a_broken_jobs_ini_opens_a_window_listing_the_problems(desktop_env, tmp_path):
    bad = tmp_path / "jobs.ini"
    bad.write_text("[job:x]\ncommand = echo {missing}\n\n[job:y]\ntimeout = soon\ncommand = true\n")
    code, seen, err = drive("page_text", desktop_env, "--jobs", str(bad), "--data-dir", str(tmp_path / "data"))
    assert code == 2
    assert seen["stdout"] == []  # no page of the app: no "showing" line
    assert "jobs.ini has problems" in seen["text"]
    assert f"{bad}:2:" in seen["text"] and f"{bad}:5:" in seen["text"]
    assert "Traceback" not in err


def test_no_jobs_ini_anywhere_shows_where_one_is_looked_for(desktop_env, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, seen, err = drive("page_text", desktop_env, "--data-dir", str(tmp_path / "data"), cwd=empty)
    assert code == 2
    assert "No jobs.ini found" in seen["text"]
    assert str(empty / "jobs.ini") in seen["text"]
    assert str(Path(desktop_env["XDG_CONFIG_HOME"]) / "pushbutton" / "jobs.ini") in seen["text"]


def test_without_a_display_the_window_says_to_use_headless(jobs_ini, tmp_path):
    need(importlib.util.find_spec("webview") is not None, "pywebview is not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run([PUSHBUTTON, "--jobs", str(jobs_ini), "--data-dir", str(tmp_path / "d")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "no display" in proc.stderr and "--headless" in proc.stderr
