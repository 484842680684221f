"""An analyst's first launch on a desktop without WebKitGTK 4.1: the window says what to install, on
the terminal and in a message box, instead of a traceback or nothing.

The missing library is real: the command runs in a private mount namespace where the system's
typelib folder is replaced by a copy without WebKit2-4.1 (what a desktop without
gir1.2-webkit2-4.1 looks like to PyGObject).
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.desktop.conftest import need

pytestmark = pytest.mark.timeout(180)
PUSHBUTTON = str(Path(sys.executable).with_name("pushbutton"))


def typelib_dir() -> Path | None:
    found = subprocess.run([sys.executable, "-c", "import gi; gi.require_version('GIRepository', '2.0');"
                            "from gi.repository import GIRepository as G;"
                            "print(G.Repository.get_default().get_typelib_path('GLib') or '')"],
                           capture_output=True, text=True, timeout=60).stdout.strip()
    return Path(found).parent if found else None


def without_webkit(tmp_path: Path, argv: list[str]) -> list[str]:
    """`argv` run where the system has no WebKit2-4.1 typelib (private mount namespace, as root)."""
    need(hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("unshare") is not None,
         "hiding a system library needs root and unshare (CI runs as root)")
    system = typelib_dir()
    need(system is not None and (system / "WebKit2-4.1.typelib").exists(), "WebKitGTK 4.1's typelib is not installed")
    copy = tmp_path / "girepository"
    shutil.copytree(system, copy)
    for name in ("WebKit2-4.1.typelib", "WebKit2WebExtension-4.1.typelib"):
        (copy / name).unlink(missing_ok=True)
    inner = " ".join(f"'{a}'" for a in argv)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f"mount --bind '{copy}' '{system}' && exec {inner}"]


def launch_until(argv, env, marker: str, timeout: float = 60) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = ""
    deadline = time.monotonic() + timeout
    while marker not in err and time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stderr], [], [], 1)
        if ready:
            err += proc.stderr.readline()
    return proc, err


def window_titles(display: str) -> str:
    return subprocess.run(["xwininfo", "-root", "-tree", "-display", display], capture_output=True, text=True,
                          timeout=30).stdout


def assert_says_what_to_install(argv: list[str], env: dict, display: str) -> None:
    proc, err = launch_until(argv, env, "message box shown")
    try:
        assert "Pushbutton needs WebKitGTK 4.1 to show its window" in err, err[-3000:]
        assert "Namespace WebKit2 not available" in err
        assert "sudo apt install libwebkit2gtk-4.1-0 gir1.2-webkit2-4.1" in err
        assert "sudo dnf install webkit2gtk4.1" in err and "pushbutton --headless" in err
        assert "Traceback" not in err
        deadline = time.monotonic() + 10
        while '"Pushbutton"' not in window_titles(display) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert '"Pushbutton"' in window_titles(display)  # the message box, for a double-click
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert "Pushbutton window showing" not in out


def test_without_webkitgtk_the_window_says_what_to_install(desktop_env, tmp_path):
    jobs = tmp_path / "jobs.ini"
    jobs.write_text("[job:hi]\ncommand = true\n")
    argv = without_webkit(tmp_path, [PUSHBUTTON, "--jobs", str(jobs), "--data-dir", str(tmp_path / "data")])
    assert_says_what_to_install(argv, desktop_env, desktop_env["DISPLAY"])


def test_without_webkitgtk_headless_still_serves(tmp_path):
    jobs = tmp_path / "jobs.ini"
    jobs.write_text("[job:hi]\ncommand = true\n")
    argv = without_webkit(tmp_path, [PUSHBUTTON, "--headless", "--port", "0", "--jobs", str(jobs),
                                     "--data-dir", str(tmp_path / "data")])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready and proc.stdout.readline().startswith("Pushbutton serving on http://127.0.0.1:")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
