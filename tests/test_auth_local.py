"""`auth = local` against a real server: the users command, sign-in, the session cookie, expiry,
the failed sign-in limits, and hashing that never stalls the server."""

from __future__ import annotations

import statistics
import threading
import time

import httpx
import pytest

from server.auth.limits import PER_ADDRESS, PER_NAME, WINDOW
from tests.auth_helpers import PASSWORDS, add_user, client, local_jobs, session_name, sign_in, users
from tests.helpers import TOKEN


@pytest.fixture
def local(pushbutton, write_jobs):
    """Factory: a server with auth = local and users alice (admin) and bob (analysts)."""

    def start(idle: str = "8h", max_age: str = "7d"):
        pb = pushbutton(write_jobs(local_jobs(idle, max_age)))
        add_user(pb, "alice")
        add_user(pb, "bob")
        return pb

    return start


def session_cookie(res: httpx.Response) -> str:
    (header,) = [v for k, v in res.headers.multi_items() if k.lower() == "set-cookie"]
    return header


def test_users_command_adds_lists_changes_and_removes_users_while_the_server_runs(local):
    pb = local()
    listed = users(pb, "list")
    assert listed.returncode == 0 and [line.split("\t")[0] for line in listed.stdout.splitlines()] == ["alice", "bob"]
    assert users(pb, "add", "alice", stdin="another-password\n").returncode == 1  # exists already
    assert users(pb, "add", "dave", stdin="short\n").returncode == 1  # too short
    assert users(pb, "add", "-rf", stdin="long-enough-1\n").returncode != 0  # not a user name
    assert users(pb, "add", "bad,name", stdin="long-enough-1\n").returncode == 1

    bob = sign_in(pb, "bob")
    assert bob.get("/api/me").json()["user"] == "bob"
    changed = users(pb, "passwd", "bob", stdin="bob-new-password\n")
    assert changed.returncode == 0, changed.stderr
    assert bob.get("/api/me").status_code == 401  # the session of the old password is gone
    assert client(pb).post("/api/session", json={"user": "bob", "password": PASSWORDS["bob"]}).status_code == 401
    bob = sign_in(pb, "bob", "bob-new-password")
    assert users(pb, "remove", "bob").returncode == 0
    assert bob.get("/api/me").status_code == 401
    assert client(pb).post("/api/session", json={"user": "bob", "password": "bob-new-password"}).status_code == 401
    assert users(pb, "remove", "bob").returncode == 1
    assert users(pb, "passwd", "nobody", stdin="long-enough-1\n").returncode == 1


def test_sign_in_answers_the_user_and_sets_an_httponly_lax_session_cookie(local):
    pb = local()
    c = client(pb)
    res = c.post("/api/session", json={"user": "bob", "password": PASSWORDS["bob"]})
    assert res.status_code == 200
    assert res.json() == {"user": "bob", "teams": ["analysts"], "admin": False, "method": "local", "auth": "local"}
    flags = [part.strip() for part in session_cookie(res).split(";")]
    assert flags[0].startswith(f"{session_name(pb)}=") and len(flags[0]) > 40
    assert {"HttpOnly", "SameSite=Lax", "Path=/"} <= set(flags)
    assert "Secure" not in flags  # plain HTTP: a Secure cookie would never come back
    assert c.get("/api/me").json() == {"user": "bob", "teams": ["analysts"], "admin": False, "method": "local",
                                       "auth": "local"}
    assert [j["id"] for j in c.get("/api/jobs").json()["jobs"]] == ["report"]
    assert sign_in(pb, "alice").get("/api/me").json()["admin"] is True


def test_the_cookie_is_secure_under_https_from_a_trusted_proxy_and_scoped_to_the_base_path(pushbutton, write_jobs):
    jobs = local_jobs().replace("auth = local", "auth = local\n    trusted_proxies = 127.0.0.2")
    pb = pushbutton(write_jobs(jobs), "--base-path", "/ops")
    add_user(pb, "bob")
    assert pb.url.endswith("/ops")

    def flags(source: str) -> set[str]:
        res = client(pb, source).post("/api/session", json={"user": "bob", "password": PASSWORDS["bob"]},
                                      headers={"X-Forwarded-Proto": "https"})
        assert res.status_code == 200
        return {part.strip() for part in session_cookie(res).split(";")}

    assert {"Secure", "Path=/ops/"} <= flags("127.0.0.2")
    untrusted = flags("127.0.0.1")  # anyone can send X-Forwarded-Proto: only the proxy is believed
    assert "Secure" not in untrusted and "Path=/ops/" in untrusted


def test_without_a_session_every_api_route_but_sign_in_answers_401(local):
    pb = local()
    anonymous = client(pb)
    for path in ("/api/me", "/api/jobs", "/api/tokens", "/api/runs"):
        assert anonymous.get(path).status_code == 401, path
    assert client(pb, headers={"Authorization": f"Bearer {TOKEN}"}).get("/api/me").status_code == 401  # not token mode
    assert "token" not in pb.login_url  # the serving line does not hand out what grants nothing here
    assert anonymous.post("/api/session", json={"user": "bob"}).status_code == 400
    assert anonymous.post("/api/session", json={"user": "bob", "password": 5}).status_code == 400


def test_a_cross_origin_sign_in_is_refused(local):
    pb = local()
    res = client(pb).post("/api/session", json={"user": "bob", "password": PASSWORDS["bob"]},
                          headers={"Origin": "http://evil.example"})
    assert res.status_code == 403 and "set-cookie" not in res.headers


def test_sign_out_kills_the_session_at_once_even_for_a_copied_cookie(local):
    pb = local()
    bob = sign_in(pb, "bob")
    copied = client(pb, cookies={session_name(pb): bob.cookies[session_name(pb)]})
    assert copied.get("/api/me").status_code == 200
    res = bob.delete("/api/session")
    assert res.status_code == 204
    assert "Max-Age=0" in session_cookie(res)
    assert copied.get("/api/me").status_code == 401
    assert bob.get("/api/me").status_code == 401


def test_signing_in_again_replaces_the_old_session(local):
    pb = local()
    bob = sign_in(pb, "bob")
    old = bob.cookies[session_name(pb)]
    assert bob.post("/api/session", json={"user": "bob", "password": PASSWORDS["bob"]}).status_code == 200
    assert bob.cookies[session_name(pb)] != old
    assert client(pb, cookies={session_name(pb): old}).get("/api/me").status_code == 401


def test_a_session_ends_after_the_idle_time_without_requests(local):
    pb = local(idle="2s")
    bob = sign_in(pb, "bob")
    for _ in range(4):  # used every second: stays alive past the idle time
        time.sleep(1)
        assert bob.get("/api/me").status_code == 200
    time.sleep(2.5)
    assert bob.get("/api/me").status_code == 401
    assert bob.get("/api/me").status_code == 401


def test_a_session_ends_at_its_maximum_age_however_busy(local):
    pb = local(idle="1h", max_age="3s")
    before = time.monotonic()
    bob = sign_in(pb, "bob")
    signed_in = time.monotonic()
    while time.monotonic() - before < 2.0:  # the session is younger than this: at most 2 s + one request
        assert bob.get("/api/me").status_code == 200
        time.sleep(0.5)
    time.sleep(max(0.0, signed_in + 3.2 - time.monotonic()))  # and older than this: over 3 s
    assert bob.get("/api/me").status_code == 401


def test_failed_sign_ins_for_one_name_from_many_addresses_get_429_with_retry_after(local):
    pb = local()
    for i in range(PER_NAME):
        res = client(pb, f"127.0.0.{10 + i}").post("/api/session", json={"user": "bob", "password": f"guess-{i}"})
        assert res.status_code == 401
    res = client(pb, "127.0.0.30").post("/api/session", json={"user": "bob", "password": PASSWORDS["bob"]})
    assert res.status_code == 429  # even the right password: the name is locked for now
    assert 0 < int(res.headers["Retry-After"]) <= WINDOW
    assert "set-cookie" not in res.headers
    assert client(pb, "127.0.0.30").post(  # the same address may still sign in another name
        "/api/session", json={"user": "alice", "password": PASSWORDS["alice"]}).status_code == 200


def test_failed_sign_ins_from_one_address_for_many_names_get_429_with_retry_after(local):
    pb = local()
    guesser = client(pb, "127.0.0.40")
    for i in range(PER_ADDRESS):
        res = guesser.post("/api/session", json={"user": f"user{i}", "password": "guess-password"})
        assert res.status_code == 401
    res = guesser.post("/api/session", json={"user": "bob", "password": PASSWORDS["bob"]})
    assert res.status_code == 429
    assert 0 < int(res.headers["Retry-After"]) <= WINDOW
    assert sign_in(pb, "bob", source="127.0.0.41").get("/api/me").status_code == 200  # others are not held


def test_a_wrong_password_and_an_unknown_user_look_and_take_the_same(local):
    pb = local()

    def attempt(name: str, source: str) -> tuple[httpx.Response, float]:
        c = client(pb, source)
        started = time.perf_counter()
        res = c.post("/api/session", json={"user": name, "password": "not-the-password"})
        return res, time.perf_counter() - started

    wrong, unknown = [], []
    for i in range(PER_NAME - 1):
        wrong.append(attempt("bob", f"127.0.0.{50 + i}"))
        unknown.append(attempt(f"nobody{i}", f"127.0.0.{60 + i}"))
    for res, _ in wrong + unknown:
        assert res.status_code == 401
        assert res.json() == wrong[0][0].json()
        assert sorted(k for k in res.headers if k != "date") == sorted(k for k in wrong[0][0].headers if k != "date")
    wrong_s = statistics.median(t for _, t in wrong)
    unknown_s = statistics.median(t for _, t in unknown)
    assert wrong_s > 0.02  # a real hash was checked...
    assert unknown_s > wrong_s / 2  # ...and for a user who does not exist too (no early return)


def test_health_checks_stay_fast_while_20_sign_ins_hash(local):
    pb = local()
    results: list[int] = []

    def one(i: int) -> None:
        res = client(pb, f"127.0.1.{i + 1}").post("/api/session", json={"user": "alice",
                                                                       "password": PASSWORDS["alice"]})
        results.append(res.status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    probe = client(pb)
    for t in threads:
        t.start()
    lags = []
    while any(t.is_alive() for t in threads):
        started = time.perf_counter()
        assert probe.get("/healthz").status_code == 200
        lags.append(time.perf_counter() - started)
        time.sleep(0.01)
    for t in threads:
        t.join()
    assert results == [200] * 20
    assert len(lags) >= 10
    assert max(lags) < 0.5, f"/healthz took up to {max(lags):.3f}s while hashing"


def test_the_desktop_window_serves_its_os_user_as_admin_even_when_jobs_ini_says_local(write_jobs, tmp_path):
    from server import catalog as C
    from server.auth.identity import os_user
    from server.auth.methods import for_the_window
    from server.runtime import Server

    catalog = C.load(write_jobs(local_jobs()))
    server = Server(for_the_window(catalog), tmp_path / "window-data")  # as desktop/app.py starts it
    server.start()
    try:
        window = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"})
        assert window.get("/api/me").json() == {"user": os_user(), "teams": [], "admin": True, "method": "token",
                                                "auth": "token"}
        assert {j["id"] for j in window.get("/api/jobs").json()["jobs"]} == {"report", "deploy"}
    finally:
        server.stop(30)
    assert catalog.settings.auth == "local"  # the headless server on the same jobs.ini still signs in


def test_the_desktop_window_serves_plain_http_at_the_root_whatever_jobs_ini_says(write_jobs, tmp_path):
    """The webview would not trust the team server's certificate, and its page lives at the root."""
    from server import catalog as C
    from server.auth.methods import for_the_window

    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    catalog = C.load(write_jobs("[pushbutton]\nauth = local\nadmins = ann\ncertfile = cert.pem\nkeyfile = key.pem\n"
                                "base_path = /ops\n[job:a]\ncommand = x\n"))
    window = for_the_window(catalog).settings
    assert (window.auth, window.certfile, window.keyfile, window.base_path) == ("token", None, None, "")
    assert catalog.settings.base_path == "/ops"
