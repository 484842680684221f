"""Cookies are not port-scoped: a browser sends a cookie of 127.0.0.1 to every port of 127.0.0.1,
and a cookie set by one port replaces the same-named one of another. So two Pushbuttons on one
host (a desktop window and a headless server, two team servers, two containers mapped to two
ports) would overwrite each other's session cookie, signing the user out of the other, if the
cookies had one name. They are named for the port the browser reached (the port of `Host`, which a
proxy passes on as the browser sent it: `proxy_set_header Host $http_host`), so each keeps its own."""

from __future__ import annotations

import httpx
import pytest

from tests.auth_helpers import PASSWORDS, add_user, local_jobs
from tests.helpers import TOKEN


@pytest.fixture
def two(pushbutton, write_jobs, tmp_path):
    """Two team servers on 127.0.0.1, each with its own accounts: alice on one, bob on the other."""
    servers = []
    for name in ("alice", "bob"):
        pb = pushbutton(write_jobs(local_jobs(), f"{name}.ini"), data_dir=tmp_path / f"data-{name}")
        add_user(pb, name)
        servers.append(pb)
    return servers


def test_two_servers_on_one_host_keep_their_own_sessions_in_one_cookie_jar(two):
    a, b = two
    browser = httpx.Client(timeout=60)  # one cookie jar, as one browser has
    assert browser.post(a.url + "/api/session", json={"user": "alice", "password": PASSWORDS["alice"]}).is_success
    assert browser.post(b.url + "/api/session", json={"user": "bob", "password": PASSWORDS["bob"]}).is_success
    assert browser.get(b.url + "/api/me").json()["user"] == "bob"
    assert browser.get(a.url + "/api/me").json()["user"] == "alice"  # still signed in on the first
    assert len(browser.cookies.jar) == 2
    assert browser.delete(a.url + "/api/session").status_code == 204  # signing out of one is not of the other
    assert browser.get(a.url + "/api/me").status_code == 401
    assert browser.get(b.url + "/api/me").json()["user"] == "bob"


def test_the_session_cookie_is_named_for_the_port_the_browser_reached(two):
    a, _ = two
    port = a.url.rsplit(":", 1)[1]
    res = httpx.post(a.url + "/api/session", json={"user": "alice", "password": PASSWORDS["alice"]})
    assert res.headers["set-cookie"].startswith(f"pushbutton_session_{port}=")
    # Behind a proxy the browser's address is the Host header (nginx: $http_host): its port, or the
    # scheme's default when it names none. The server's own port plays no part.
    proxied = httpx.post(a.url + "/api/session", json={"user": "alice", "password": PASSWORDS["alice"]},
                         headers={"Host": "127.0.0.1:8443"})
    assert proxied.headers["set-cookie"].startswith("pushbutton_session_8443=")
    default = httpx.post(a.url + "/api/session", json={"user": "alice", "password": PASSWORDS["alice"]},
                         headers={"Host": "localhost"})
    assert default.headers["set-cookie"].startswith("pushbutton_session_80=")
    cookie = default.cookies["pushbutton_session_80"]
    assert httpx.get(a.url + "/api/me", headers={"Host": "localhost"},
                     cookies={"pushbutton_session_80": cookie}).json()["user"] == "alice"
    assert httpx.get(a.url + "/api/me", cookies={"pushbutton_session_80": cookie}).status_code == 401


def test_the_access_token_cookie_is_named_for_the_port_the_browser_reached_too(two):
    a, _ = two
    res = httpx.get(a.url + f"/?token={TOKEN}", headers={"Host": "localhost:9000"})
    assert res.headers["set-cookie"].startswith("pushbutton_9000=")
