"""`auth = header`: a user name (and groups) believed only from a socket peer in trusted_proxies.

Real clients from chosen loopback addresses (127.0.0.X); the real nginx in front is
tests/test_proxy_nginx.py's."""

from __future__ import annotations

import subprocess

import pytest

from tests.auth_helpers import bearer, client, users
from tests.helpers import BIN, TOKEN

JOBS = """
    [pushbutton]
    auth = header
    trusted_proxies = {proxies}
    groups_header = X-Forwarded-Groups
    admins = team:ops

    [team:ops]
    header_groups = sre

    [team:analysts]
    members = bob

    [job:report]
    command = echo report
    run_by = team:analysts
"""


@pytest.fixture
def header_server(pushbutton, write_jobs):
    def start(proxies: str = "127.0.0.2"):
        return pushbutton(write_jobs(JOBS.format(proxies=proxies)))

    return start


def me(pb, source: str, **headers) -> tuple[int, dict]:
    res = client(pb, source, headers=headers).get("/api/me")
    return res.status_code, res.json()


def test_the_user_header_from_a_trusted_proxy_signs_the_user_in_with_teams_from_groups(header_server):
    pb = header_server()
    status, body = me(pb, "127.0.0.2", **{"X-Forwarded-User": "bob"})
    assert status == 200
    assert body == {"user": "bob", "teams": ["analysts"], "admin": False, "method": "header", "auth": "header"}
    status, body = me(pb, "127.0.0.2", **{"X-Forwarded-User": "erin", "X-Forwarded-Groups": "staff, sre"})
    assert body["teams"] == ["ops"] and body["admin"] is True


def test_the_user_header_from_any_other_address_is_ignored(header_server):
    pb = header_server()
    for source in ("127.0.0.1", "127.0.0.3"):
        status, _ = me(pb, source, **{"X-Forwarded-User": "bob", "X-Forwarded-Groups": "sre"})
        assert status == 401, source
        # nor do forwarded headers make an address trusted
        status, _ = me(pb, source, **{"X-Forwarded-User": "bob", "X-Forwarded-For": "127.0.0.2"})
        assert status == 401, source


def test_a_trusted_network_covers_its_addresses_only(header_server):
    pb = header_server("127.0.0.0/30")
    assert me(pb, "127.0.0.3", **{"X-Forwarded-User": "bob"})[0] == 200
    assert me(pb, "127.0.0.4", **{"X-Forwarded-User": "bob"})[0] == 401


def test_a_missing_empty_or_doubled_user_header_is_anonymous_never_a_fallback(header_server):
    pb = header_server()
    assert me(pb, "127.0.0.2") == (401, {"error": "sign in", "auth": "header"})  # the page offers no password form
    assert me(pb, "127.0.0.2", **{"X-Forwarded-User": ""})[0] == 401
    assert me(pb, "127.0.0.2", **{"X-Forwarded-User": "bob,alice"})[0] == 401
    doubled = client(pb, "127.0.0.2", headers=[("X-Forwarded-User", "bob"), ("X-Forwarded-User", "alice")])
    assert doubled.get("/api/me").status_code == 401


def test_the_access_token_grants_nothing_with_auth_header(header_server):
    pb = header_server()
    assert client(pb, headers={"Authorization": f"Bearer {TOKEN}"}).get("/api/me").status_code == 401


def test_passwords_are_not_taken_with_auth_header(header_server):
    pb = header_server()
    res = client(pb, "127.0.0.2").post("/api/session", json={"user": "bob", "password": "any-password"})
    assert res.status_code == 400 and "set-cookie" not in res.headers


def test_a_personal_token_works_for_a_proxy_user_from_any_address(header_server):
    pb = header_server()
    done = users(pb, "token", "bob")
    assert done.returncode == 0, done.stderr
    res = bearer(pb, done.stdout.splitlines()[-1], source="127.0.0.9").get("/api/me")
    assert res.json()["user"] == "bob" and res.json()["method"] == "api-token"
    made = client(pb, "127.0.0.2", headers={"X-Forwarded-User": "bob"}).post("/api/tokens", json={"name": "ci"})
    assert made.status_code == 201
    assert bearer(pb, made.json()["token"], source="127.0.0.9").get("/api/me").json()["user"] == "bob"


def test_auth_header_without_trusted_proxies_does_not_start(write_jobs, tmp_path):
    jobs = write_jobs("""
        [pushbutton]
        auth = header
        admins = bob

        [job:report]
        command = echo report
    """)
    done = subprocess.run([BIN, "--headless", "--jobs", str(jobs), "--port", "0", "--data-dir", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "trusted_proxies" in done.stderr


def test_a_session_from_an_earlier_auth_method_is_not_honoured_after_the_switch(pushbutton, write_jobs, tmp_path):
    """bob signed in with a local password; once the server trusts a proxy's header instead, his old
    cookie must not keep him in for the rest of its week: the proxy's bob may be someone else."""
    from tests.auth_helpers import add_user, local_jobs, sign_in

    data = tmp_path / "data"
    local = pushbutton(write_jobs(local_jobs(), name="local.ini"), data_dir=data)
    add_user(local, "bob")
    signed_in = sign_in(local, "bob")
    cookies = dict(signed_in.cookies)
    assert signed_in.get("/api/me").json()["method"] == "local"
    local.stop()
    proxied = pushbutton(write_jobs(JOBS.format(proxies="127.0.0.2"), name="header.ini"), data_dir=data)
    old = client(proxied, "127.0.0.1", cookies=cookies)
    assert old.get("/api/me").status_code == 401
    assert old.post("/api/jobs/report/runs", json={"params": {}}).status_code == 401
    status, body = me(proxied, "127.0.0.2", **{"X-Forwarded-User": "bob"})  # the proxy's bob is let in
    assert status == 200 and body["method"] == "header"
