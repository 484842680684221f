"""The base path: the whole app under one prefix (so a reverse proxy can mount it at /ops/), and
nothing outside it. Enumerates the app's routes, so a route added later is covered."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.helpers import BIN, TOKEN
from tests.test_api import ROUTE_VALUES, answer, app_routes, fill, security_header_problems

JOBS = """
    [job:greet]
    command = echo hello {name}
    param.name.type = text
    param.name.default = world
"""
ASSETS = Path(__file__).resolve().parents[2] / "assets"


@pytest.fixture
def ops(pushbutton, write_jobs):
    return pushbutton(write_jobs(JOBS), "--base-path", "/ops/")


def root_of(pb) -> str:
    return pb.url.rsplit("/ops", 1)[0]


def test_the_serving_line_names_the_base_path(ops):
    assert re.fullmatch(rf"http://127\.0\.0\.1:\d+/ops/\?token={TOKEN}", ops.login_url)


def test_every_route_answers_under_the_base_path_and_none_outside_it(ops):
    run_id = ops.start_run("greet")["id"]
    ops.wait(run_id)
    outside = httpx.Client(base_url=root_of(ops), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    for method, rule in app_routes():
        url = fill(rule, {**ROUTE_VALUES, "run_id": run_id, "token_id": 1})
        inside = answer(ops.client, method, url)  # the client's base URL ends in /ops
        assert inside.status_code != 405 and inside.status_code < 500, (method, url, inside.status_code)
        if inside.status_code == 404:  # the app's own (no such token), not a path it does not serve
            error = ops.client.request(method, url, json={}).json()["error"]
            assert not error.startswith("Not found"), (method, url, error)
        for elsewhere in (url, f"/opsx{url}", f"/op{url}", f"/ops/ops{url}" if url != "/" else "/x/ops/"):
            res = answer(outside, method, elsewhere)
            assert res.status_code == 404, (method, elsewhere, res.status_code)
            assert security_header_problems(res) == [], (method, elsewhere)


def test_the_prefix_without_its_slash_redirects_and_the_login_stays_under_it(ops):
    bare = httpx.Client(base_url=root_of(ops), timeout=30)
    res = bare.get(f"/ops?token={TOKEN}")
    assert res.status_code == 301 and res.headers["location"] == f"/ops/?token={TOKEN}"
    login = bare.get(f"/ops/?token={TOKEN}")
    assert login.status_code == 303 and login.headers["location"] == "/ops/"
    assert "Path=/ops/;" in login.headers["set-cookie"] and "Secure" not in login.headers["set-cookie"]
    assert bare.get("/ops/api/jobs").status_code == 200  # the cookie goes back under the prefix
    assert bare.get("/api/jobs").status_code == 404


def test_the_page_asks_only_for_relative_urls(ops):
    """An absolute `/assets/...` or `/api/...` would miss the prefix. Every URL the page, its
    modules and its worker name resolves under the base path (and exists there)."""
    page = ops.client.get("/")
    assert page.status_code == 200
    refs = re.findall(r'(?:href|src)="([^"#]+)"', page.text)
    assert refs and all(not ref.startswith("/") for ref in refs), refs
    for ref in refs:
        assert ops.client.get(f"/{ref}").status_code == 200, ref
    for script in sorted((ASSETS / "js").glob("*.js")):
        text = script.read_text()
        absolute = re.findall(r"""(?:fetch|EventSource|Worker|URL|href'?,?)\s*\(?\s*[`'"](/[^`'"]*)""", text)
        absolute += re.findall(r"""[`'"](/(?:api|assets)/[^`'"]*)""", text)
        assert absolute == [], f"{script.name} names absolute URLs: {absolute}"


def test_the_jobs_ini_base_path_serves_and_the_command_line_wins(pushbutton, write_jobs, tmp_path):
    jobs = write_jobs("[pushbutton]\nbase_path = /a\n" + JOBS.replace("\n    ", "\n"))
    pb = pushbutton(jobs, data_dir=tmp_path / "d1")
    assert pb.login_url.endswith(f"/a/?token={TOKEN}") and pb.client.get("/api/jobs").status_code == 200
    pb.stop()
    pb = pushbutton(jobs, "--base-path", "/b/c", data_dir=tmp_path / "d2")
    assert pb.login_url.endswith(f"/b/c/?token={TOKEN}") and pb.client.get("/api/jobs").status_code == 200
    root = pb.url.rsplit("/b/c", 1)[0]
    assert httpx.get(f"{root}/a/healthz").status_code == 404
    pb.stop()
    pb = pushbutton(jobs, "--base-path", "/", data_dir=tmp_path / "d3")  # the root again
    assert re.search(rf":\d+/\?token={TOKEN}$", pb.login_url) and pb.client.get("/api/jobs").status_code == 200


@pytest.mark.parametrize("bad", ["ops path", "/a?b", "/a%20b"])
def test_a_bad_base_path_on_the_command_line_exits_2(write_jobs, tmp_path, bad):
    done = subprocess.run([BIN, "--headless", "--jobs", str(write_jobs(JOBS)), "--port", "0", "--base-path", bad,
                           "--data-dir", str(tmp_path / "d")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "is not a path like /ops" in done.stderr, done.stderr


def test_the_access_log_names_the_path_the_client_asked_for_base_path_included(pushbutton, write_jobs):
    """The logged path was the one left after the prefix was taken off (`/api/jobs` for
    `/ops/api/jobs`), which matched nothing in the proxy's log. It is the request line's path as
    sent: prefix included, escapes kept (a `%0A` cannot begin a line of its own), never the query."""
    pb = pushbutton(write_jobs(JOBS), "--base-path", "/ops")
    assert pb.client.get("/api/jobs").status_code == 200
    assert pb.client.get("/no%0Apushbutton: GET /forged 200", params={"token": TOKEN}).status_code == 404
    pb.stop()
    lines = pb.log.read_text().splitlines()
    assert any(line.startswith("pushbutton: GET /ops/api/jobs 200 ") for line in lines), lines
    forged = "pushbutton: GET /ops/no%0Apushbutton:%20GET%20/forged%20200 404 "
    assert any(line.startswith(forged) for line in lines), lines
    assert not any("GET /forged" in line and "%0A" not in line for line in lines) and TOKEN not in "\n".join(lines)
