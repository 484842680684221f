"""Trusted proxies: X-Forwarded-For and X-Forwarded-Proto count only from `trusted_proxies`; a
trusted proxy is exempt from the per-address connection cap; the start-up warning off loopback."""

from __future__ import annotations

import ipaddress
import socket
import time

import httpx
import pytest

from server.auth.proxies import SECRET, TRUSTED, client_address, request_scheme
from server.connections import PER_CLIENT
from tests.helpers import TOKEN

JOBS = """
    [job:greet]
    command = echo hello
"""
NETS = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")]


@pytest.mark.parametrize(("peer", "forwarded", "client"), [
    ("203.0.113.9", "", "203.0.113.9"),                      # no proxy
    ("203.0.113.9", "1.2.3.4", "203.0.113.9"),               # not a trusted proxy: the header is anyone's
    ("10.0.0.2", "1.2.3.4", "1.2.3.4"),                      # nginx saw 1.2.3.4
    ("10.0.0.2", "6.6.6.6, 1.2.3.4", "1.2.3.4"),             # the client wrote 6.6.6.6 itself
    ("10.0.0.2", "6.6.6.6, 1.2.3.4, 10.0.0.7", "1.2.3.4"),   # two trusted proxies in a row
    ("10.0.0.2", "10.0.0.8, 10.0.0.7", "10.0.0.8"),          # all trusted: the farthest
    ("10.0.0.2", "6.6.6.6, garbage, 10.0.0.7", "10.0.0.7"),  # a malformed hop ends the chain
    ("10.0.0.2", "", "10.0.0.2"),                            # a trusted peer that forwarded nothing
    ("10.0.0.2", "[2001:db8::1]:4711", "2001:db8::1"),
    ("::1", "1.2.3.4:5678", "1.2.3.4"),
    ("::ffff:10.0.0.2", "1.2.3.4", "1.2.3.4"),               # IPv4 on a dual-stack socket
])
def test_the_client_address_is_the_right_most_hop_no_trusted_proxy_wrote(peer, forwarded, client):
    environ = {"REMOTE_ADDR": peer, "HTTP_X_FORWARDED_FOR": forwarded, TRUSTED: NETS}
    assert client_address(environ) == client
    assert client_address({"REMOTE_ADDR": peer, "HTTP_X_FORWARDED_FOR": forwarded}) == peer  # nobody trusted


@pytest.mark.parametrize(("peer", "own", "proto", "scheme"), [
    ("10.0.0.2", "http", "https", "https"),
    ("10.0.0.2", "http", "HTTPS, http", "https"),
    ("10.0.0.2", "https", "", "https"),
    ("10.0.0.2", "http", "gopher", "http"),
    ("203.0.113.9", "http", "https", "http"),  # not a trusted proxy
    ("203.0.113.9", "https", "http", "https"),
])
def test_the_scheme_is_forwarded_only_by_a_trusted_proxy(peer, own, proto, scheme):
    environ = {"REMOTE_ADDR": peer, "wsgi.url_scheme": own, "HTTP_X_FORWARDED_PROTO": proto, TRUSTED: NETS}
    assert request_scheme(environ) == scheme


@pytest.mark.parametrize(("sent", "believed"), [(None, False), ("", False), ("wrong", False), ("s3cret", True)])
def test_with_a_proxy_secret_forwarded_headers_count_only_from_a_request_that_carries_it(sent, believed):
    environ = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "1.2.3.4", "HTTP_X_FORWARDED_PROTO": "https",
               "wsgi.url_scheme": "http", TRUSTED: NETS, SECRET: "s3cret"}
    if sent is not None:
        environ["HTTP_X_PUSHBUTTON_PROXY_SECRET"] = sent
    assert (client_address(environ), request_scheme(environ)) == (("1.2.3.4", "https") if believed else
                                                                   ("10.0.0.2", "http"))


def client_from(pb, source: str, **kwargs) -> httpx.Client:
    """A client whose connections come from `source` (any 127.x.y.z is this machine)."""
    return httpx.Client(base_url=pb.url, transport=httpx.HTTPTransport(local_address=source), timeout=30, **kwargs)


def test_cookies_are_secure_behind_a_trusted_proxy_that_says_https(pushbutton, write_jobs):
    pb = pushbutton(write_jobs("[pushbutton]\ntrusted_proxies = 127.0.0.1\n" + JOBS))
    https = {"X-Forwarded-Proto": "https"}
    proxy, stranger = client_from(pb, "127.0.0.1"), client_from(pb, "127.0.0.2")
    assert "Secure" in proxy.get(f"/?token={TOKEN}", headers=https).headers["set-cookie"]
    assert "Secure" not in proxy.get(f"/?token={TOKEN}").headers["set-cookie"]
    assert "Secure" not in stranger.get(f"/?token={TOKEN}", headers=https).headers["set-cookie"]


def test_the_audit_log_records_the_forwarded_client_only_from_a_trusted_proxy(pushbutton, write_jobs):
    pb = pushbutton(write_jobs("[pushbutton]\ntrusted_proxies = 127.0.0.1\n" + JOBS))
    auth = {"Authorization": f"Bearer {TOKEN}", "X-Forwarded-For": "6.6.6.6, 198.51.100.7"}
    for source in ("127.0.0.1", "127.0.0.2"):
        res = client_from(pb, source, headers=auth).post("/api/jobs/greet/runs", json={"params": {}})
        assert res.status_code == 202
        pb.wait(res.json()["run"]["id"])
    started = [e for e in pb.client.get("/api/audit").json()["entries"] if e["action"] == "run.start"]
    assert sorted(e["address"] for e in started) == ["127.0.0.2", "198.51.100.7"]


def test_a_trusted_proxy_is_exempt_from_the_cap_per_address(pushbutton, write_jobs):
    """All of a proxy's clients arrive from its address: capping it would cap them all together."""
    pb = pushbutton(write_jobs("[pushbutton]\ntrusted_proxies = 127.0.0.5\n" + JOBS))
    host, port = pb.url.removeprefix("http://").split(":")
    request = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    open_sockets: list[socket.socket] = []  # every connection stays open
    answers = {source: status_lines(host, port, source, request, open_sockets) for source in ("127.0.0.5", "127.0.0.6")}
    assert set(answers["127.0.0.5"]) == {b"HTTP/1.1 200 OK"}
    assert answers["127.0.0.6"] == [b"HTTP/1.1 200 OK"] * PER_CLIENT + [b"HTTP/1.1 503 Service Unavailable"] * 8
    for sock in open_sockets:
        sock.close()


def status_lines(host: str, port: str, source: str, request: bytes, open_sockets: list) -> list[bytes]:
    """PER_CLIENT + 8 connections from `source`, each left open: the status line each was answered."""
    lines = []
    for _ in range(PER_CLIENT + 8):
        sock = socket.create_connection((host, int(port)), timeout=10, source_address=(source, 0))
        sock.sendall(request)
        lines.append(sock.recv(65536).split(b"\r\n")[0])
        open_sockets.append(sock)
    return lines


def test_with_a_proxy_secret_a_request_without_it_from_the_proxy_address_is_capped(pushbutton, write_jobs,
                                                                                   tmp_path):
    """Another local process shares a loopback proxy's address, but not its secret: capped like anyone."""
    (tmp_path / "secret").write_text("s3cret\n")
    pb = pushbutton(write_jobs(f"[pushbutton]\ntrusted_proxies = 127.0.0.5\nproxy_secret_file = {tmp_path}/secret\n"
                               + JOBS))
    host, port = pb.url.removeprefix("http://").split(":")
    open_sockets: list[socket.socket] = []
    answers = {secret: status_lines(host, port, "127.0.0.5", (
        f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nX-Pushbutton-Proxy-Secret: {secret}\r\n\r\n").encode(),
        open_sockets) for secret in ("s3cret", "wrong")}
    assert set(answers["s3cret"]) == {b"HTTP/1.1 200 OK"}
    assert answers["wrong"] == [b"HTTP/1.1 200 OK"] * PER_CLIENT + [b"HTTP/1.1 503 Service Unavailable"] * 8
    for sock in open_sockets:
        sock.close()
    assert "s3cret" not in pb.log.read_text()


def test_off_loopback_token_auth_warns_that_the_address_grants_every_right(pushbutton, write_jobs, tmp_path):
    jobs = write_jobs(JOBS)
    pushbutton(jobs, data_dir=tmp_path / "d1").stop()
    assert "grants every right" not in (tmp_path / "server.log").read_text()
    pb = pushbutton(jobs, "--host", "0.0.0.0", data_dir=tmp_path / "d2")
    deadline = time.monotonic() + 5
    while "grants every right" not in pb.log.read_text():
        assert time.monotonic() < deadline, pb.log.read_text()
        time.sleep(0.05)


def test_on_loopback_allowed_hosts_admits_the_name_a_proxy_forwards(pushbutton, write_jobs):
    """nginx passes the browser's Host (ops.example.com) to a server that listens on loopback."""
    pb = pushbutton(write_jobs("[pushbutton]\nallowed_hosts = ops.example.com\n" + JOBS))
    assert pb.client.get("/api/jobs", headers={"Host": "ops.example.com"}).status_code == 200
    assert pb.client.get("/api/jobs", headers={"Host": "evil.example"}).status_code == 403
    assert pb.client.get("/api/jobs").status_code == 200  # loopback names still work
