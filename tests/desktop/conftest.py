"""Fixtures for the desktop window and the frozen builds.

The window tests need a real X server (Xvfb), pywebview, PyGObject and the system's WebKitGTK 4.1;
outside CI they are skipped with the reason when those are missing, under CI=true they fail instead.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "desktop"  # CI keeps this folder (screenshots)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Skip with the reason, except under CI where a missing prerequisite is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must be able to run this test: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def xvfb():
    """A private X display for the session: `:N`."""
    need(shutil.which("Xvfb") is not None, "Xvfb is not installed (apt-get install xvfb xauth)")
    need(importlib.util.find_spec("webview") is not None and importlib.util.find_spec("gi") is not None,
         "pywebview and PyGObject are not installed (pip install -e '.[desktop]')")
    need(webkit_missing() is None, f"WebKitGTK 4.1 is not installed ({webkit_missing()}): "
                                   "apt-get install gir1.2-webkit2-4.1 libwebkit2gtk-4.1-0")
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp",
                             "-noreset"], pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()
    assert number.isdigit(), "Xvfb did not report its display number"
    yield f":{number}"
    proc.terminate()
    proc.wait(10)


def webkit_missing() -> str | None:
    """Why the system's WebKitGTK 4.1 cannot be loaded, or None."""
    proc = subprocess.run([sys.executable, "-c", "import gi; gi.require_version('WebKit2', '4.1')"],
                          capture_output=True, text=True, timeout=60)
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]


@pytest.fixture
def desktop_env(xvfb, tmp_path):
    """Environment for a window process: the Xvfb display, private config/data dirs."""
    env = dict(os.environ)
    for name in ("WAYLAND_DISPLAY", "GDK_BACKEND"):
        env.pop(name, None)
    env.update(DISPLAY=xvfb, NO_AT_BRIDGE="1", XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_DATA_HOME=str(tmp_path / "share"), XDG_RUNTIME_DIR=str(tmp_path / "runtime"), PYTHONUNBUFFERED="1")
    (tmp_path / "runtime").mkdir(mode=0o700)
    return env


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


# -- frozen builds ---------------------------------------------------------------------------------

def _pyinstaller(target: str, mode: str, out: Path) -> Path:
    need(importlib.util.find_spec("PyInstaller") is not None,
         "PyInstaller is not installed (pip install -e '.[build]')")
    work = out / "work"  # removed with `out` after the session
    log = out / f"pyinstaller-{target}-{mode}.log"
    with open(log, "w") as sink:
        proc = subprocess.run(
            [sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
             "--distpath", str(out), "--workpath", str(work), str(ROOT / "build" / "pushbutton.spec"),
             "--", "--only", target, "--mode", mode],
            cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, timeout=900)
    assert proc.returncode == 0, f"PyInstaller failed:\n{log.read_text()[-4000:]}"
    name = "pushbutton-server" if target == "server" else "pushbutton"
    exe = out / name / name if mode == "onedir" else out / name
    assert exe.is_file(), f"no {exe} after the build"
    return exe


@pytest.fixture(scope="session")
def server_onefile():
    """`pushbutton-server` (headless only) built once per session as a one-file executable."""
    out = Path(tempfile.mkdtemp(prefix="pb-dist-server-"))
    yield _pyinstaller("server", "onefile", out)
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="session")
def window_build():
    """`pushbutton` (window + headless) built once per session; see docs/desktop.md for the mode."""
    mode = os.environ.get("PUSHBUTTON_TEST_WINDOW_BUILD", "onefile")
    out = Path(tempfile.mkdtemp(prefix="pb-dist-window-"))
    yield _pyinstaller("window", mode, out)
    shutil.rmtree(out, ignore_errors=True)
