"""Helpers for the sign-in tests: the `pushbutton users` command, and clients from chosen addresses."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.helpers import BIN


def local_jobs(idle: str = "8h", max_age: str = "7d") -> str:
    """A jobs.ini with `auth = local`: alice an admin, bob in analysts who may run `report`;
    `deploy` names nobody, so it is for admins only."""
    return f"""
    [pushbutton]
    auth = local
    admins = alice
    session_idle = {idle}
    session_max = {max_age}

    [team:analysts]
    members = bob

    [job:report]
    command = echo report
    run_by = team:analysts

    [job:deploy]
    command = echo deploy
"""


PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22", "carol": "carol-password-333"}


def users(pb, *args: str, stdin: str | None = "") -> subprocess.CompletedProcess:
    """`pushbutton users ARGS` on the server's jobs.ini and data dir (stdin is not a terminal)."""
    return subprocess.run([BIN, "users", *args, "--jobs", str(pb.jobs), "--data-dir", str(pb.data_dir)],
                          input=stdin, capture_output=True, text=True, timeout=60)


def add_user(pb, name: str, password: str | None = None) -> None:
    done = users(pb, "add", name, stdin=(password or PASSWORDS[name]) + "\n")
    assert done.returncode == 0, done.stderr


def session_name(pb) -> str:
    """The session cookie's name on this server: `pushbutton_session_<port>`, the port the client
    reached (proxies.cookie_name)."""
    return f"pushbutton_session_{urlsplit(pb.url).port}"


def client(pb, source: str = "127.0.0.1", **kwargs) -> httpx.Client:
    """A client of the server without the access token, connecting from `source` (any 127.x.y.z
    is this machine on Linux, a distinct client address)."""
    return httpx.Client(base_url=pb.url, transport=httpx.HTTPTransport(local_address=source), timeout=60,
                        **kwargs)


def sign_in(pb, name: str, password: str | None = None, source: str = "127.0.0.1") -> httpx.Client:
    """A client signed in as `name` (its cookie jar holds the session)."""
    c = client(pb, source)
    res = c.post("/api/session", json={"user": name, "password": password or PASSWORDS[name]})
    assert res.status_code == 200, res.text
    return c


def bearer(pb, token: str, source: str = "127.0.0.1") -> httpx.Client:
    return client(pb, source, headers={"Authorization": f"Bearer {token}"})


def data_files(pb) -> list[Path]:
    return [p for p in Path(pb.data_dir).iterdir() if p.is_file()]
