"""Desktop and build benchmark: size of each executable and time from start to first page.

    .venv/bin/python bench/desktop.py     (after `make dist`, and optionally `make dist ONEDIR=1` and
                                           `make dist UNCOMPRESSED=1`)

For each build found (and the unfrozen venv for comparison), copied alone into a temp folder with a
jobs.ini beside it, started from another working directory, N times:
- headless: process start -> the login URL answered with the job page (HTTP 200, after the
  token-for-cookie redirect), as a browser would see it;
- window: process start -> its stdout line `Pushbutton window showing http://...` (printed once the
  page has loaded; under Xvfb if no DISPLAY), and process start -> the first window on the screen
  (the splash or the window itself, polled with xwininfo every 20 ms).
One-file builds unpack into TMPDIR on every start: each is measured with TMPDIR on disk (what an
analyst has) and in RAM (/dev/shm, the floor). Prints one line per build and a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
JOBS = "[pushbutton]\ntitle = Bench\n\n[job:hi]\ncommand = echo hi\n"


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def place(exe: Path, tmp: Path) -> Path:
    """Copy the build alone into an empty folder with a jobs.ini; return what to start."""
    folder = tmp / "app"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / "jobs.ini").write_text(JOBS)
    if exe.parent.name == exe.name:  # onedir: ops hand out the folder; jobs.ini goes beside the executable in it
        shutil.copytree(exe.parent, folder / exe.name)
        (folder / "jobs.ini").rename(folder / exe.name / "jobs.ini")
        return folder / exe.name / exe.name
    shutil.copy2(exe, folder / exe.name)
    return folder / exe.name


def headless_first_page(argv: list[str], env: dict, cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen([*argv, "--headless", "--port", "0"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("Pushbutton serving on "):
            raise RuntimeError(f"{argv[0]}: no URL line ({line!r})")
        url = line.split(" on ", 1)[1].strip()
        with httpx.Client(follow_redirects=True, timeout=30) as client:
            page = client.get(url)
        took = time.perf_counter() - t0
        if page.status_code != 200:
            raise RuntimeError(f"{argv[0]}: first page answered {page.status_code}")
        return took
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def any_window(display: str) -> bool:
    """Whether a named top-level window is on the screen (mapped, not one of a toolkit's hidden ones)."""
    tree = subprocess.run(["xwininfo", "-root", "-children", "-display", display], capture_output=True,
                          text=True, timeout=30).stdout
    for line in tree.splitlines():
        if line.strip().startswith("0x") and '"' in line:
            info = subprocess.run(["xwininfo", "-id", line.split()[0], "-display", display], capture_output=True,
                                  text=True, timeout=30).stdout
            if "IsViewable" in info:
                return True
    return False


def window_first_page(argv: list[str], env: dict, cwd: Path) -> tuple[float, float | None]:
    """(seconds to the page, seconds to the first window on screen)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first_window = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if first_window is None and any_window(env["DISPLAY"]):
                first_window = time.perf_counter() - t0
            ready, _, _ = select.select([proc.stdout], [], [], 0.02)
            if ready and proc.stdout.readline().startswith("Pushbutton window showing "):
                return time.perf_counter() - t0, first_window
        raise RuntimeError(f"{argv[0]}: the window never reported its first page")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def bare_start(argv: list[str], env: dict, cwd: Path) -> tuple[float, float]:
    """`--help`: what a start costs before any Pushbutton code runs (for a one-file build: the
    unpacking). Returns (wall seconds, CPU seconds of the process and its children): CPU time
    hardly depends on what else the machine is doing, wall time does."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([*argv, "--help"], cwd=cwd, env=env, stdout=subprocess.DEVNULL, check=True, timeout=120)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def start_xvfb() -> tuple[subprocess.Popen, str]:
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as pipe:
        return proc, ":" + pipe.readline().strip()


def span(triple) -> str:
    return "-" if triple is None else f"{triple[0]:.2f} s ({triple[1]:.2f}-{triple[2]:.2f})"


def describe(row: dict) -> str:
    size = "-" if row["size"] is None else f"{row['size'] / MiB:.1f} MiB"
    return (f"{size:>10}  first page on disk {span(row.get('disk'))}, in RAM {span(row.get('RAM'))}; "
            f"first window {span(row.get('window'))}; bare start {row['bare'][0]:.2f} s, {row['bare'][1]:.2f} s CPU")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dist", type=Path, default=ROOT / "dist")
    ap.add_argument("--only", default="", help="measure only the builds whose label contains this")
    opts = ap.parse_args()

    builds = []  # (label, kind, path to the executable or None for the venv)
    for sub, mode in (("", "onefile"), ("uncompressed", "onefile uncompressed"), ("onedir", "onedir")):
        for name, kind in (("pushbutton-server", "headless"), ("pushbutton", "window"), ("pushbutton", "headless")):
            exe = opts.dist / sub / name / name if mode == "onedir" else opts.dist / sub / name
            if exe.is_file():
                what = "window" if kind == "window" else ("headless" if name == "pushbutton-server"
                                                          else "window build, --headless")
                builds.append((f"{name} {mode} ({what})", kind, exe))
    venv = Path(sys.executable).with_name("pushbutton")
    builds.append(("unfrozen venv (headless)", "headless", venv))
    builds.append(("unfrozen venv (window)", "window", venv))
    builds = [b for b in builds if opts.only in b[0]]
    if not any(b[2] != venv for b in builds):
        print(f"no builds in {opts.dist}: run `make dist` (and `make dist ONEDIR=1`) first", file=sys.stderr)

    xvfb = None
    env = dict(os.environ)
    if not env.get("DISPLAY"):
        xvfb, env["DISPLAY"] = start_xvfb()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="pb-bench-") as tmp_name:
            tmp = Path(tmp_name)
            env.update(XDG_DATA_HOME=str(tmp / "share"), XDG_CONFIG_HOME=str(tmp / "config"))
            elsewhere = tmp / "elsewhere"
            elsewhere.mkdir()
            unpack = {"disk": tmp / "unpack", "RAM": Path(tempfile.mkdtemp(prefix="pb-bench-", dir="/dev/shm"))}
            unpack["disk"].mkdir()
            for label, kind, exe in builds:
                if exe.parent == venv.parent:
                    (elsewhere / "jobs.ini").write_text(JOBS)  # the venv finds it in the cwd
                    argv, size = [str(exe)], None
                else:
                    argv = [str(place(exe, tmp))]
                    size = size_of(exe.parent if exe.parent.name == exe.name else exe)
                onefile = size is not None and exe.parent.name != exe.name
                row = {"label": label, "size": size}
                for where in ("disk", "RAM") if onefile else ("disk",):
                    run_env = dict(env, TMPDIR=str(unpack[where]))
                    if kind == "window":
                        both = [window_first_page(argv, run_env, elsewhere) for _ in range(opts.runs)]
                        times = [b[0] for b in both]
                        shown = [b[1] for b in both if b[1] is not None]
                        if where == "disk" and shown:
                            row["window"] = statistics.median(shown), min(shown), max(shown)
                    else:
                        times = [headless_first_page(argv, run_env, elsewhere) for _ in range(opts.runs)]
                    row[where] = statistics.median(times), min(times), max(times)
                bare = [bare_start(argv, env, elsewhere) for _ in range(opts.runs)]
                row["bare"] = statistics.median(b[0] for b in bare), statistics.median(b[1] for b in bare)
                (elsewhere / "jobs.ini").unlink(missing_ok=True)
                rows.append(row)
                print(f"{label:45} {describe(row)}", flush=True)
            shutil.rmtree(unpack["RAM"], ignore_errors=True)
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)
    print(f"\n{opts.runs} starts each; median (min-max).\n\n"
          "| build | size | first page, temp on disk | first page, temp in RAM | first window or splash "
          "| bare start (`--help`): wall / CPU |\n|---|---|---|---|---|---|")
    for row in rows:
        size = "-" if row["size"] is None else f"{row['size'] / MiB:.1f} MiB"
        print(f"| {row['label']} | {size} | {span(row.get('disk'))} | {span(row.get('RAM'))} | "
              f"{span(row.get('window'))} | {row['bare'][0]:.2f} s / {row['bare'][1]:.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
