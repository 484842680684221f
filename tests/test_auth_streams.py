"""An open event stream lives no longer than the credential it was opened with.

Streams are checked once, when they connect; without more, a signed-out session, a revoked token
or a removed user would go on receiving every run they could see (`/api/events` lives until the
next jobs.ini reload, a run stream until the run ends). Ended in this server (sign-out, a token
revoked from the page): every stream checks at once. Ended by another process (`pushbutton users
revoke`, `passwd`, `remove`): within one keepalive (here 1 s, PUSHBUTTON_IDLE_TIMEOUT = 2).
"""

from __future__ import annotations

import textwrap
import threading
import time

import httpx
import pytest

from tests.auth_helpers import PASSWORDS, add_user, bearer, sign_in, users
from tests.helpers import wait_for

JOBS = """
    [pushbutton]
    auth = local
    admins = alice
    [team:analysts]
    members = bob
    [job:ticks]
    command = sh -c 'while :; do echo tick; sleep 0.05; done'
    run_by = team:analysts
"""


class Stream:
    """One SSE stream read in a thread: when each line came, and when the stream closed."""

    def __init__(self, c: httpx.Client, path: str):
        self.lines: list[tuple[float, str]] = []
        self.closed: float | None = None
        self.opened = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(c, path), daemon=True)
        self.thread.start()
        assert self.opened.wait(10), path

    def _read(self, c: httpx.Client, path: str) -> None:
        try:
            with c.stream("GET", path, timeout=30) as res:
                assert res.status_code == 200
                for line in res.iter_lines():
                    self.opened.set()
                    self.lines.append((time.monotonic(), line))
        except httpx.RemoteProtocolError:  # the server stopped at the end of a test, the stream open
            return
        self.closed = time.monotonic()

    def data_after(self, moment: float) -> list[str]:
        return [line for when, line in self.lines if when > moment and line.startswith("data:")]

    def wait_closed(self, within: float) -> float:
        self.thread.join(within)
        assert self.closed is not None, f"still open after {within} s, {len(self.lines)} lines"
        return self.closed


@pytest.fixture
def pb(pushbutton, write_jobs, monkeypatch):
    monkeypatch.setenv("PUSHBUTTON_IDLE_TIMEOUT", "2")  # keepalive 1 s: the check for other processes' ends
    pb = pushbutton(write_jobs(textwrap.dedent(JOBS)))
    add_user(pb, "alice")
    add_user(pb, "bob")
    return pb


def streams_of(pb, c: httpx.Client) -> tuple[Stream, Stream, int]:
    """bob's `/api/events` and the stream of a run that prints 20 lines a second, until stopped."""
    run_id = sign_in(pb, "alice").post("/api/jobs/ticks/runs", json={"params": {}}).json()["run"]["id"]
    every, run = Stream(c, "/api/events"), Stream(c, f"/api/runs/{run_id}/events")
    wait_for(lambda: run.data_after(0), timeout=10)  # the run stream carries the run's output
    return every, run, run_id


def stop(pb, run_id: int) -> None:
    sign_in(pb, "alice").post(f"/api/runs/{run_id}/stop")


def test_signing_out_ends_the_sessions_open_streams_at_once(pb):
    bob = sign_in(pb, "bob")
    every, run, run_id = streams_of(pb, bob)
    try:
        assert bob.delete("/api/session").status_code == 204
        out = time.monotonic()
        assert every.wait_closed(3) - out < 1.0 and run.wait_closed(3) - out < 1.0
        assert bob.get(f"/api/runs/{run_id}/events").status_code == 401  # the browser's reconnect
    finally:
        stop(pb, run_id)


def test_another_users_sign_out_leaves_a_stream_open(pb):
    bob, other = sign_in(pb, "bob"), sign_in(pb, "bob")  # two browsers, two sessions
    every, run, run_id = streams_of(pb, bob)
    try:
        assert other.delete("/api/session").status_code == 204
        out = time.monotonic()
        time.sleep(2.5)  # past the keepalive check too
        assert every.closed is None and run.closed is None and run.data_after(out + 2)
    finally:
        stop(pb, run_id)


def test_a_token_revoked_from_the_page_ends_its_streams_at_once(pb):
    page = sign_in(pb, "bob")
    made = page.post("/api/tokens", json={"name": "ci"}).json()
    every, run, run_id = streams_of(pb, bearer(pb, made["token"]))
    try:
        assert page.delete(f"/api/tokens/{made['id']}").status_code == 204
        out = time.monotonic()
        assert every.wait_closed(3) - out < 1.0 and run.wait_closed(3) - out < 1.0
    finally:
        stop(pb, run_id)


@pytest.mark.parametrize("how", ["revoke", "remove", "passwd"])
def test_a_credential_ended_by_the_users_command_ends_its_streams_within_a_keepalive(pb, how):
    page = sign_in(pb, "bob")
    made = page.post("/api/tokens", json={"name": "ci"}).json()
    token = bearer(pb, made["token"])
    every, run, run_id = streams_of(pb, page if how == "passwd" else token)
    try:
        args = {"revoke": ("revoke", "bob", str(made["id"])), "remove": ("remove", "bob"),
                "passwd": ("passwd", "bob")}[how]
        done = users(pb, *args, stdin=PASSWORDS["carol"] + "\n")
        assert done.returncode == 0, done.stderr
        out = time.monotonic()
        assert every.wait_closed(5) - out < 2.5 and run.wait_closed(5) - out < 2.5
        assert not run.data_after(out + 2.5)
    finally:
        stop(pb, run_id)
