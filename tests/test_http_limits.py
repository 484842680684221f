"""HTTP limits against a real server process: slow, idle and greedy clients, bounded numbers, bodies."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from server.api import MAX_BODY
from server.connections import HEADER_TIMEOUT, PER_CLIENT
from tests.conftest import ROOT
from tests.helpers import TOKEN
from tests.test_api import answer, app_routes, fill

JOBS = """
    [job:greet]
    title = Greet
    command = echo hello {name}
    param.name.type = text
    param.name.default = world
"""


@pytest.fixture
def server(pushbutton, write_jobs):
    return pushbutton(write_jobs(JOBS))


@pytest.fixture
def short_timeouts(monkeypatch):
    """Headers in 2 s, 3 s idle (so SSE keepalives every 1.5 s): read by the server at start-up."""
    monkeypatch.setenv("PUSHBUTTON_HEADER_TIMEOUT", "2")
    monkeypatch.setenv("PUSHBUTTON_IDLE_TIMEOUT", "3")


def address(pb) -> tuple[str, int]:
    url = urlsplit(pb.url)
    return url.hostname, url.port


def connect(pb, source: str = "127.0.0.1") -> socket.socket:
    """A raw connection from `source` (any 127.x.y.z is this machine on Linux, a distinct client address)."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(address(pb))
    return sock


def request(pb, method: str = "GET", path: str = "/healthz", headers: str = "") -> bytes:
    host, port = address(pb)
    return (f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"{headers}\r\n").encode()


def read_response(sock: socket.socket, timeout: float = 10) -> bytes:
    """Head and body of one response with Content-Length (enough for these small answers)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def closed_by_server(sock: socket.socket, timeout: float) -> bytes | None:
    """What the server sent before closing the connection, or None if it is still open after `timeout`."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return None
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def served_quickly(pb) -> None:
    for path in ("/healthz", "/api/jobs"):
        took = time.monotonic()
        assert pb.client.get(path).status_code == 200
        assert time.monotonic() - took < 1, f"{path} took {time.monotonic() - took:.2f} s"


# -- slow, idle and greedy clients ----------------------------------------------------------------


def test_hundreds_of_slow_clients_neither_block_others_nor_stay_open(server):
    """Slowloris with the default limits: 300 clients that never finish their headers (some send
    nothing, some half a request, some trickle a byte a second) from 10 addresses."""
    half = request(server, path="/api/jobs")[:40]
    slow: list[tuple[str, socket.socket, float]] = []
    for i in range(300):
        sock = connect(server, f"127.0.0.{2 + i % 10}")
        kind = ("silent", "half", "trickle")[i % 3]
        if kind != "silent":
            sock.sendall(half)
        slow.append((kind, sock, time.monotonic()))
    stop = threading.Event()

    def trickle():
        while not stop.wait(1):
            for kind, sock, _ in slow:
                if kind == "trickle":
                    with contextlib.suppress(OSError):
                        sock.send(b"X")

    threading.Thread(target=trickle, daemon=True).start()
    try:
        for _ in range(3):
            served_quickly(server)
            time.sleep(1)
        outcomes = {}
        for kind, sock, opened in slow:
            sent = closed_by_server(sock, opened + HEADER_TIMEOUT + 10 - time.monotonic())
            assert sent is not None, f"a {kind} client is still connected after {time.monotonic() - opened:.0f} s"
            outcomes.setdefault(kind, set()).add(sent.split(b"\r\n")[0])
            assert time.monotonic() - opened < 60
    finally:
        stop.set()
        for _, sock, _ in slow:
            sock.close()
    # Who sent part of a request is told why; who sent nothing is just closed.
    assert outcomes == {"silent": {b""}, "half": {b"HTTP/1.1 408 Request Timeout"},
                        "trickle": {b"HTTP/1.1 408 Request Timeout"}}
    served_quickly(server)


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(short_timeouts, server):
    sock = connect(server)
    sock.sendall(request(server))
    assert read_response(sock).startswith(b"HTTP/1.1 200")
    time.sleep(2)  # idle, but within the 3 s: the next request is served on the same connection
    sock.sendall(request(server))
    assert read_response(sock).startswith(b"HTTP/1.1 200")
    quiet_since = time.monotonic()
    assert closed_by_server(sock, 10) == b""
    assert 2.5 < time.monotonic() - quiet_since < 5


def test_an_event_stream_outlives_both_timeouts_on_its_keepalives(short_timeouts, server):
    sock = connect(server)
    sock.sendall(request(server, path="/api/events"))
    sock.settimeout(4)
    received, started, gaps, last = b"", time.monotonic(), [], time.monotonic()
    while time.monotonic() - started < 8:  # past the 2 s header and the 3 s idle timeouts, twice
        chunk = sock.recv(65536)
        assert chunk, f"the stream was closed after {time.monotonic() - started:.1f} s"
        received += chunk
        gaps.append(time.monotonic() - last)
        last = time.monotonic()
    assert received.startswith(b"HTTP/1.1 200") and b"event: ready" in received
    assert received.count(b": keepalive") >= 4 and max(gaps) < 3.5  # every 1.5 s


def test_a_body_that_trickles_is_answered_408(short_timeouts, server):
    sock = connect(server)
    sock.sendall(request(server, "POST", "/api/jobs/greet/runs",
                         "Content-Type: application/json\r\nContent-Length: 100\r\n") + b'{"params":')
    took = time.monotonic()
    answer_ = closed_by_server(sock, 10)
    assert answer_ is not None and answer_.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - took < 4
    assert server.client.get("/api/runs").json()["runs"] == []


def test_one_address_gets_at_most_the_cap_of_connections(server):
    mine = []
    for _ in range(PER_CLIENT):  # each served once, so the server surely counts it
        sock = connect(server, "127.0.0.7")
        sock.sendall(request(server))
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        mine.append(sock)
    took = time.monotonic()
    extra = connect(server, "127.0.0.7")
    refused = closed_by_server(extra, 5)
    assert refused is not None and refused.startswith(b"HTTP/1.1 503"), refused
    assert time.monotonic() - took < 1
    served_quickly(server)  # other addresses are not affected
    mine.pop().close()

    def one_more_is_served() -> bool:
        sock = connect(server, "127.0.0.7")
        sock.sendall(request(server))
        ok = read_response(sock).startswith(b"HTTP/1.1 200")
        mine.append(sock) if ok else sock.close()
        return ok

    deadline = time.monotonic() + 5
    while not one_more_is_served():
        assert time.monotonic() < deadline, "a freed slot was never given back"
        time.sleep(0.1)
    for sock in mine:
        sock.close()


def test_a_stream_whose_client_hung_up_frees_its_connection_at_once(server):
    """Else each would count against its address until its next keepalive, 15 s later."""
    for _ in range(3):
        streams = [connect(server, "127.0.0.8") for _ in range(PER_CLIENT)]
        for sock in streams:
            sock.sendall(request(server, path="/api/events"))
        for sock in streams:
            sock.settimeout(5)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            sock.close()
        time.sleep(0.5)


# -- numbers out of range -------------------------------------------------------------------------

BIG = [str(10**30), str(2**63), str(2**63 - 1), str(-(2**63) - 1)]
BAD = ["-1", "abc", "1e3", "0x10", " 7", "\u0663", "1.5", "9" * 5000]


def numeric_names() -> set[str]:
    """Every query parameter and header the API reads: each is probed with every value below."""
    source = (ROOT / "server" / "api.py").read_text()
    return set(re.findall(r'(?:query\.get|_int_query|get_header)\(\s*"([^"]+)"', source))


def test_out_of_range_or_malformed_numbers_are_4xx_on_every_route(server):
    """Enumerates the app's routes and the names it reads, so new ones are covered."""
    run_id = server.start_run("greet")["id"]
    server.wait(run_id)
    names = numeric_names()
    assert {"limit", "before", "after", "Last-Event-ID"} <= names
    seen = {}
    for method, rule in app_routes():
        values = {"job_id": "greet", "path": "app.js", "run_id": run_id, "token_id": 1, "param_name": "name"}
        if "<" in rule:
            for probe in BIG + BAD:
                url = fill(rule, {**values, **{k: probe for k in re.findall(r"<(\w+):int>", rule)}})
                if url != fill(rule, values):
                    seen[f"{method} {url}"] = answer(server.client, method, url).status_code
        if method == "GET":
            url = fill(rule, values)
            for name in names:
                for probe in BIG + BAD:
                    seen[f"{method} {url}?{name}={probe[:20]}"] = answer(
                        server.client, method, url, params={name: probe}).status_code
                    if probe.isascii() and probe == probe.strip():
                        seen[f"{method} {url} with {name}: {probe[:20]}"] = answer(
                            server.client, method, url, headers={name: probe}).status_code
    assert len(seen) > 500
    assert {case: status for case, status in seen.items() if status >= 500} == {}
    for probe in BIG[:2]:  # the two examples of the issue, and more
        assert 400 <= seen[f"GET /api/runs/{probe}"] < 500
        assert 400 <= seen[f"POST /api/runs/{probe}/cancel"] < 500
        assert seen[f"GET /api/runs/{run_id}/events?after={probe[:20]}"] == 400
        assert seen[f"GET /api/runs/{run_id}/events with Last-Event-ID: {probe[:20]}"] == 400
        assert seen[f"GET /api/runs?before={probe[:20]}"] == 400
    assert seen[f"GET /api/runs/{run_id}/events?after={2**63 - 1}"] == 200
    assert seen["GET /api/runs?limit=-1"] == 200  # within range: limited to 1..500
    assert "Traceback" not in Path(server.log).read_text()


# -- request bodies -------------------------------------------------------------------------------


def test_a_chunked_json_body_starts_the_run(server):
    def body():
        yield b'{"params": '
        yield b'{"name": "chunked"}}'

    res = server.client.post("/api/jobs/greet/runs", content=body(), headers={"Content-Type": "application/json"})
    assert res.request.headers["transfer-encoding"] == "chunked"
    assert res.status_code == 202, res.text
    assert res.json()["run"]["params"] == {"name": "chunked"}
    assert server.output(res.json()["run"]["id"]) == ["hello chunked"]


def peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))


def test_a_chunked_body_over_the_limit_is_413_and_never_read_whole(server):
    """256 MiB offered in chunks: the server answers after MAX_BODY + 1 bytes and stops reading."""
    before = peak_rss_kib(server.proc.pid)
    sock = connect(server)
    sock.sendall(request(server, "POST", "/api/jobs/greet/runs",
                         "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"))
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    sent = []

    def offer():
        try:
            for _ in range(4096):
                sock.sendall(chunk)
                sent.append(1)
        except OSError:
            pass

    sender = threading.Thread(target=offer, daemon=True)
    sender.start()
    answer_ = closed_by_server(sock, 30)
    sender.join(30)
    assert answer_ is not None and answer_.startswith(b"HTTP/1.1 413"), (answer_ or b"")[:200]
    assert len(sent) < 4096, "the server read the whole endless body"
    assert peak_rss_kib(server.proc.pid) - before < 32 * 1024
    assert MAX_BODY == 1024 * 1024
    served_quickly(server)
    assert server.client.get("/api/runs").json()["runs"] == []


def test_a_body_over_the_limit_with_a_length_is_413_without_reading_it(server):
    sock = connect(server)
    sock.sendall(request(server, "POST", "/api/jobs/greet/runs",
                         f"Content-Type: application/json\r\nContent-Length: {10**12}\r\n") + b"{" * 65536)
    answer_ = closed_by_server(sock, 10)
    assert answer_ is not None and answer_.startswith(b"HTTP/1.1 413")


def test_a_body_of_exactly_the_limit_is_read_chunked_or_not(server):
    padded = b'{"params": {"name": "full"}, "padding": "%s"}'
    body = padded % (b" " * (MAX_BODY - len(padded % b"")))
    assert len(body) == MAX_BODY
    for content in (body, iter([body[:1000], body[1000:]])):
        res = server.client.post("/api/jobs/greet/runs", content=content)
        assert res.status_code == 202, res.text
        assert res.json()["run"]["params"] == {"name": "full"}


def test_json_nested_deeper_than_the_parser_goes_is_a_400_not_a_crash(server):
    """Python's parser raises RecursionError, not ValueError, for it: it was a 500 and a traceback
    in the log, from anyone, even not signed in."""
    deep = b"[" * 200_000 + b"]" * 200_000  # 400 KB: under the body limit
    assert len(deep) < MAX_BODY
    for path in ("/api/session", "/api/jobs/greet/runs", "/api/jobs/greet/preview"):
        res = server.client.post(path, content=deep, headers={"Content-Type": "application/json"})
        assert res.status_code == 400, (path, res.status_code, res.text)
        assert res.json() == {"error": "body must be JSON"}
    assert "Traceback" not in server.log.read_text()
