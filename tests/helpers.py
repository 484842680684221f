"""Test helpers: a real `pushbutton --headless` process, and a Server-Sent Events reader."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

TOKEN = "test-token-123"
BIN = shutil.which("pushbutton", path=str(Path(sys.executable).parent)) or "pushbutton"
FINAL = {"succeeded", "failed", "cancelled", "timed_out", "interrupted"}


@dataclass
class Event:
    id: int | None
    type: str
    data: dict


def parse_sse(lines) -> iter:
    """Yield Events from an iterable of text lines (without newlines)."""
    fields: dict[str, str] = {}
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield Event(int(fields["id"]) if "id" in fields else None, fields.get("event", "message"),
                            json.loads("\n".join(data)))
            fields, data = {}, []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            else:
                fields[name] = value


def sse_lines(res: httpx.Response):
    """The text lines of a streamed response, split on LF only, as EventSource does (httpx's
    iter_lines also splits on U+0085, U+2028 and friends, which output and values may hold)."""
    buf = ""
    for chunk in res.iter_text():
        *lines, buf = (buf + chunk).split("\n")
        yield from (line[:-1] if line.endswith("\r") else line for line in lines)
    if buf:
        yield buf


class Pushbutton:
    """One server process on a jobs.ini and a data dir; restartable on the same data."""

    def __init__(self, jobs: Path, data_dir: Path, log: Path):
        self.jobs, self.data_dir, self.log = jobs, data_dir, log
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, *extra: str, timeout: float = 30) -> Pushbutton:
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [BIN, "--headless", "--jobs", str(self.jobs), "--port", "0", "--token", TOKEN,
                 "--data-dir", str(self.data_dir), *extra],
                stdout=subprocess.PIPE, stderr=log, text=True,
            )
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        assert line.startswith(("Pushbutton serving on http://", "Pushbutton serving on https://")), \
            f"no URL line: {line!r}\n{self.log.read_text()}"
        self.login_url = line.split(" on ", 1)[1].strip()
        self.url = self.login_url.split("?", 1)[0].rstrip("/")
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.client.close()
        return code

    # -- API shortcuts --------------------------------------------------------------------

    def start_run(self, job: str, **params) -> dict:
        res = self.client.post(f"/api/jobs/{job}/runs", json={"params": params})
        assert res.status_code == 202, res.text
        return res.json()["run"]

    def run(self, run_id: int) -> dict:
        return self.client.get(f"/api/runs/{run_id}").json()

    def wait(self, run_id: int, states=FINAL, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run["state"] in states:
                return run
            assert time.monotonic() < deadline, f"run {run_id} still {run['state']}"
            time.sleep(0.02)

    def events(self, run_id: int, after: int | None = None, limit: int | None = None,
               header: bool = True) -> list[Event]:
        """Read the run's SSE stream until `end` (or `limit` events), then disconnect."""
        headers = {"Last-Event-ID": str(after)} if after is not None and header else {}
        url = f"/api/runs/{run_id}/events" + (f"?after={after}" if after is not None and not header else "")
        out: list[Event] = []
        with self.client.stream("GET", url, headers=headers, timeout=60) as res:
            assert res.status_code == 200, res.read()
            for event in parse_sse(sse_lines(res)):
                out.append(event)
                if event.type == "end" or (limit is not None and len(out) >= limit):
                    break
        return out

    def output(self, run_id: int) -> list[str]:
        return [line for e in self.events(run_id) if e.type == "output" for line in e.data["lines"]]


def lines_of(events: list[Event], stream: str | None = None) -> list[str]:
    return [line for e in events if e.type == "output" and (stream is None or e.data["stream"] == stream)
            for line in e.data["lines"]]


def alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def scheduling(pid: int) -> dict:
    """Where Linux schedules a process: its process group, session, terminal (0: none), nice value,
    and its autogroup's name and nice value: None on a kernel without autogroups, and for a process
    in the boot session's default group (one no ancestor left by `setsid`), which Linux shows as empty."""
    fields = Path("/proc", str(pid), "stat").read_text().rsplit(")", 1)[1].split()
    try:
        group = Path("/proc", str(pid), "autogroup").read_text().split() or None  # ['/autogroup-42', 'nice', '0']
    except OSError:
        group = None
    return {"pgid": int(fields[2]), "sid": int(fields[3]), "tty": int(fields[4]), "nice": int(fields[16]),
            "group": group and group[0], "group_nice": group and int(group[2])}


@contextlib.contextmanager
def small_disk(path: Path, size: str):
    """A real tmpfs of `size` (`2m`) mounted at `path` (made here): a disk that fills up, as a
    data dir's does (needs root, like the tests that use it)."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def wait_for(predicate, timeout: float = 10, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(interval)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def in_own_thread(fn, *args, timeout: float = 300):
    """`fn(*args)` on a fresh thread, its result or its exception here. For asyncio code and
    Playwright's sync API outside tests/page: the page tests' session-wide browser keeps an event
    loop running on the main thread for the rest of the session, and a loop cannot run in another's."""
    import threading

    box: list = []

    def go():
        try:
            box.append((fn(*args), None))
        except BaseException as exc:  # handed to the caller
            box.append((None, exc))

    worker = threading.Thread(target=go, daemon=True)
    worker.start()
    worker.join(timeout)
    assert box, f"{fn!r} did not finish within {timeout} s"
    result, error = box[0]
    if error is not None:
        raise error
    return result
