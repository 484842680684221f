"""The Origin check compares the whole origin, scheme included: a page of `http://host` may not post
to `https://host` (a network attacker can write any page of plain `http://host`), nor the other way
round. The scheme the server is reached by is its own TLS, or `X-Forwarded-Proto` from a trusted
proxy only; the base path plays no part (an origin has no path)."""

from __future__ import annotations

import ipaddress

import pytest

from server.auth.guard import Guard
from server.auth.proxies import TRUSTED

NETS = [ipaddress.ip_network("10.0.0.0/8")]
PROXY = {"REMOTE_ADDR": "10.0.0.2", TRUSTED: NETS}
STRANGER = {"REMOTE_ADDR": "203.0.113.9", TRUSTED: NETS}


def refused(origin: str | None, host: str, scheme: str = "http", method: str = "POST", **environ) -> bool:
    guard = Guard("t", "0.0.0.0")
    env = {"REQUEST_METHOD": method, "HTTP_HOST": host, "wsgi.url_scheme": scheme, **environ}
    if origin is not None:
        env["HTTP_ORIGIN"] = origin
    refusal = guard.refuse(env, needs_token=False)
    assert refusal is None or refusal[0] == 403
    return refusal is not None


@pytest.mark.parametrize(("origin", "host", "scheme", "extra", "is_refused"), [
    # served directly over plain HTTP
    ("http://pb.example:8000", "pb.example:8000", "http", {}, False),
    ("https://pb.example:8000", "pb.example:8000", "http", {}, True),
    # served directly over TLS (--certfile)
    ("https://pb.example:8443", "pb.example:8443", "https", {}, False),
    ("http://pb.example:8443", "pb.example:8443", "https", {}, True),
    # default ports are the same origin whether or not Host or Origin spells them
    ("https://pb.example", "pb.example:443", "https", {}, False),
    ("http://pb.example:80", "pb.example", "http", {}, False),
    ("https://pb.example:443", "pb.example", "http", {}, True),
    # behind a trusted proxy that says https (with a base path: it plays no part)
    ("https://ops.example", "ops.example", "http", {**PROXY, "HTTP_X_FORWARDED_PROTO": "https",
                                                    "SCRIPT_NAME": "/ops"}, False),
    ("http://ops.example", "ops.example", "http", {**PROXY, "HTTP_X_FORWARDED_PROTO": "https"}, True),
    ("http://ops.example", "ops.example", "http", {**PROXY, "HTTP_X_FORWARDED_PROTO": "http"}, False),
    ("https://ops.example", "ops.example", "http", {**PROXY, "HTTP_X_FORWARDED_PROTO": "http"}, True),
    # anyone else's X-Forwarded-Proto is not believed: the server is plain HTTP to them
    ("https://ops.example", "ops.example", "http", {**STRANGER, "HTTP_X_FORWARDED_PROTO": "https"}, True),
    ("http://ops.example", "ops.example", "http", {**STRANGER, "HTTP_X_FORWARDED_PROTO": "https"}, False),
    # other hosts, ports, opaque and odd origins
    ("https://evil.example", "ops.example", "https", {}, True),
    ("https://ops.example:444", "ops.example", "https", {}, True),
    ("null", "ops.example", "https", {}, True),
    ("ops.example", "ops.example", "https", {}, True),
    ("https://user@ops.example", "ops.example", "https", {}, True),
    ("HTTPS://OPS.example", "ops.example", "https", {}, False),
])
def test_a_post_from_another_scheme_of_the_same_host_is_refused(origin, host, scheme, extra, is_refused):
    assert refused(origin, host, scheme, **extra) is is_refused


def test_safe_methods_and_requests_without_origin_are_not_origin_checked():
    assert not refused("http://pb.example:8443", "pb.example:8443", "https", method="GET")
    assert not refused(None, "pb.example:8443", "https")


def test_a_real_server_refuses_a_post_whose_origin_has_the_other_scheme(pushbutton, write_jobs):
    pb = pushbutton(write_jobs("[job:greet]\ncommand = echo hello\n"))
    host = pb.url.split("://", 1)[1]
    post = lambda origin: pb.client.post("/api/jobs/greet/runs", json={"params": {}},  # noqa: E731
                                         headers={"Origin": origin})
    assert post(f"http://{host}").status_code == 202
    res = post(f"https://{host}")
    assert res.status_code == 403 and res.json()["error"] == "cross-origin request refused"
