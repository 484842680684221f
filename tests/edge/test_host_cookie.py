"""Where it can (HTTPS, directly or from a trusted proxy that says so, at the root path), the session
cookie and the access-token cookie are `__Host-` cookies: Secure, Path=/, no Domain, so a sibling
subdomain (`evil.example.com` next to `ops.example.com`) can neither plant one nor shadow one. Such
a request reads only the `__Host-` name: a plain-named cookie planted beside it counts for nothing.
Under a base path or over plain HTTP a `__Host-` cookie cannot exist: the plain names stay. Both
names end in the port the browser reached (tests/edge/test_cookie_port.py)."""

from __future__ import annotations

import pytest

from tests.auth_helpers import PASSWORDS, add_user, client, local_jobs, session_name
from tests.helpers import TOKEN

HTTPS = {"X-Forwarded-Proto": "https"}
PROXY = "127.0.0.2"  # the trusted proxy's address; 127.0.0.1 is anyone else on this machine


@pytest.fixture
def start(pushbutton, write_jobs, tmp_path):
    def start(*extra: str):
        jobs = local_jobs().replace("auth = local", "auth = local\n    trusted_proxies = 127.0.0.2")
        pb = pushbutton(write_jobs(jobs), *extra, data_dir=tmp_path / f"data{len(extra)}")
        add_user(pb, "bob")
        return pb

    return start


def set_cookie(res) -> tuple[str, set[str]]:
    (header,) = [v for k, v in res.headers.multi_items() if k.lower() == "set-cookie"]
    first, *flags = [part.strip() for part in header.split(";")]
    return first.split("=", 1)[0], set(flags)


def sign_in(pb, source: str, headers: dict):
    res = client(pb, source).post("/api/session", json={"user": "bob", "password": PASSWORDS["bob"]},
                                  headers=headers)
    assert res.status_code == 200, res.text
    return res


def test_over_https_at_the_root_the_session_cookie_is_a_host_cookie_and_only_it_counts(start):
    pb = start()
    res = sign_in(pb, PROXY, HTTPS)
    name, flags = set_cookie(res)
    assert name == f"__Host-{session_name(pb)}"
    assert {"Secure", "Path=/", "HttpOnly", "SameSite=Lax"} <= flags and not any(f.startswith("Domain") for f in flags)
    value = res.cookies[name]
    me = lambda source, headers, cookies: client(pb, source, headers=headers, cookies=cookies).get("/api/me")  # noqa: E731
    assert me(PROXY, HTTPS, {name: value}).status_code == 200
    # The same id under the plain name, as a sibling subdomain could set it: not read over HTTPS.
    assert me(PROXY, HTTPS, {session_name(pb): value}).status_code == 401
    out = client(pb, PROXY, headers=HTTPS, cookies={name: value}).delete("/api/session")
    assert out.status_code == 204 and set_cookie(out)[0] == name and "Max-Age=0" in set_cookie(out)[1]
    assert me(PROXY, HTTPS, {name: value}).status_code == 401


def test_over_plain_http_or_under_a_base_path_the_plain_names_stay(start):
    pb = start()
    assert set_cookie(sign_in(pb, PROXY, {}))[0] == session_name(pb)
    assert set_cookie(sign_in(pb, "127.0.0.1", HTTPS))[0] == session_name(pb)  # not the proxy: not https
    based = start("--base-path", "/ops")
    name, flags = set_cookie(sign_in(based, PROXY, HTTPS))
    assert name == session_name(based) and {"Secure", "Path=/ops/"} <= flags


def test_the_access_token_cookie_is_a_host_cookie_over_https_at_the_root(pushbutton, write_jobs):
    pb = pushbutton(write_jobs("[pushbutton]\ntrusted_proxies = 127.0.0.2\n[job:a]\ncommand = true\n"))
    port = pb.url.rsplit(":", 1)[1]
    res = client(pb, PROXY, headers=HTTPS).get(f"/?token={TOKEN}")
    name, flags = set_cookie(res)
    assert name == f"__Host-pushbutton_{port}" and {"Secure", "Path=/", "HttpOnly", "SameSite=Strict"} <= flags
    assert client(pb, PROXY, headers=HTTPS, cookies={name: TOKEN}).get("/api/jobs").status_code == 200
    assert client(pb, PROXY, headers=HTTPS, cookies={f"pushbutton_{port}": TOKEN}).get("/api/jobs").status_code == 401
    assert set_cookie(client(pb).get(f"/?token={TOKEN}"))[0] == f"pushbutton_{port}"  # plain HTTP
    assert client(pb, cookies={f"pushbutton_{port}": TOKEN}).get("/api/jobs").status_code == 200
