"""Request header fields (server/http_headers.py) and how an answer goes out (server/connections.py).

The parser replaces the email package under gevent's pywsgi: for every well-formed header block
it must give what `http.client.parse_headers` gave, and it must refuse what that one guessed at.
"""

from __future__ import annotations

import io
import socket
import time
from http import client

import gevent
import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server import http_headers
from server.connections import ONE_SEND, Server
from tests.test_http_limits import address, read_response, request

TCHAR = "!#$%&'*+.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-"
names = st.text(TCHAR, min_size=1, max_size=20)
values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                 max_size=60).map(str.strip)
fields = st.lists(st.tuples(names, values), max_size=30)


def block(pairs, newline="\r\n", pad=" ") -> bytes:
    return ("".join(f"{n}:{pad}{v}{newline}" for n, v in pairs) + newline).encode("latin-1")


@settings(max_examples=300, deadline=None)
@given(fields, st.sampled_from(["\r\n", "\n"]), st.sampled_from(["", " ", "\t ", "  "]))
def test_well_formed_headers_read_as_the_email_parser_read_them(pairs, newline, pad):
    raw = block(pairs, newline, pad) + b"body bytes stay unread"
    ours, theirs = io.BytesIO(raw), io.BytesIO(raw)
    mine = http_headers.parse(ours)
    reference = client.parse_headers(theirs)
    assert mine.status == ""
    assert [(n, v.strip()) for n, v in mine.items()] == [(n, v.strip()) for n, v in reference.items()]
    for name, _ in pairs:
        assert mine.get(name.lower()) == reference.get(name.lower()).strip()
        assert mine.get_all(name) == [v.strip() for v in reference.get_all(name)]
    assert ours.read() == theirs.read() == b"body bytes stay unread"


@pytest.mark.parametrize("raw, why", [
    (b"Host: x\r\n folded: continuation\r\n\r\n", "Malformed"),
    (b"Host: x\r\nNo colon here\r\n\r\n", "Malformed"),
    (b"Bad Name: x\r\n\r\n", "Malformed"),
    (b": no name\r\n\r\n", "Malformed"),
    (b"Host: x\rSmuggled: y\r\n\r\n", "Malformed"),
    (b"Host: a\x00b\r\n\r\n", "Malformed"),
    (b"X-Long: " + b"a" * http_headers.MAX_LINE + b"\r\n\r\n", "Line too long"),
    (b"".join(b"X-%d: v\r\n" % i for i in range(http_headers.MAX_FIELDS + 1)) + b"\r\n", "More than"),
])
def test_a_header_block_the_email_parser_guessed_at_is_refused(raw, why):
    assert http_headers.parse(io.BytesIO(raw)).status.startswith(why)


@pytest.mark.parametrize("line", [b"X-Pad: " + b" " * 30000 + b"x\r\n", b"X-Pad:" + b" \t" * 15000 + b"\x01\r\n",
                                  b"X-Pad: a" + b" " * 30000 + b"\r\n"])
def test_a_long_run_of_spaces_in_a_field_is_read_in_linear_time(line):
    """The hub parses headers itself: a regex that backtracks over spaces froze every request for
    seconds on one unauthenticated header (30 KB: ~4 s). Counted in CPU time, this thread's: what a
    busy machine adds to the wall clock is not the parser's."""
    started = time.thread_time()
    message = http_headers.parse(io.BytesIO(line + b"\r\n"))
    assert time.thread_time() - started < 0.1
    assert message.status == ("Malformed header field" if b"\x01" in line else "")
    if not message.status:
        assert message.get("x-pad") in ("x", "a")


@pytest.mark.parametrize("header, value", [
    ("pushbutton_session=abc", "abc"), ("a=1; pushbutton_session=abc; b=2", "abc"),
    ('pushbutton_session="abc"', "abc"), ("pushbutton_session=first; pushbutton_session=second", "first"),
    ("xpushbutton_session=no; pushbutton_sessionx=no", None), ("pushbutton_session", None), ("", None),
    ("pushbutton_session=a=b", "a=b"), ('junk\\"; pushbutton_session=abc', "abc"),
])
def test_a_cookie_is_read_by_its_exact_name_the_first_one_winning(header, value):
    assert http_headers.cookie({"HTTP_COOKIE": header}, "pushbutton_session") == value


def test_a_hostile_cookie_header_is_read_in_linear_time(pushbutton, write_jobs):
    """http.cookies is quadratic on backslashes in a quoted value (CVE-2024-7592): a 60 KB header
    held the hub ~11 s while every other request waited. Every request reads its cookies. Counted
    in CPU time (this thread's, then the server's): what a busy machine adds to the wall clock is
    not the parser's."""
    started = time.thread_time()
    assert http_headers.cookie({"HTTP_COOKIE": 'a="' + "\\" * 60000 + '"; pushbutton_session=x'},
                               "pushbutton_session") == "x"
    assert time.thread_time() - started < 0.05
    pb = pushbutton(write_jobs(JOBS))
    server = psutil.Process(pb.proc.pid)
    with socket.create_connection(address(pb)) as sock:
        sock.sendall(request(pb))
        assert read_response(sock).startswith(b"HTTP/1.1 ")  # served once: what comes next is this request's
        cpu = sum(server.cpu_times()[:2])
        host, port = address(pb)  # no token: the guard reads the cookies for one
        sock.sendall(f"GET /api/jobs HTTP/1.1\r\nHost: {host}:{port}\r\n".encode()
                     + b'Cookie: a="' + b"\\" * 60000 + b'"\r\n\r\n')
        assert read_response(sock, timeout=60).startswith(b"HTTP/1.1 401")
        assert sum(server.cpu_times()[:2]) - cpu < 1.0  # http.cookies: 6 s


def test_the_most_fields_allowed_are_read():
    raw = b"".join(b"X-%d: v\r\n" % i for i in range(http_headers.MAX_FIELDS)) + b"\r\n"
    message = http_headers.parse(io.BytesIO(raw))
    assert message.status == "" and len(message) == http_headers.MAX_FIELDS


JOBS = """
    [job:greet]
    command = echo hello
"""


@pytest.mark.parametrize("bad", ["X-Folded: a\r\n b\r\n", "Bad Name: x\r\n", "NoColon\r\n"])
def test_a_request_with_a_malformed_header_is_answered_400_and_closed(pushbutton, write_jobs, bad):
    pb = pushbutton(write_jobs(JOBS))
    with socket.create_connection(address(pb)) as sock:
        sock.sendall(request(pb, headers=bad))
        answer = read_response(sock)
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert sock.recv(65536) == b""  # closed: nothing after it is read as another request
    with socket.create_connection(address(pb)) as sock:  # and the server goes on
        sock.sendall(request(pb, headers="X-Fine: yes\r\n"))
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")


def _sends(app, head: bytes = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") -> tuple[list[bytes], bytes]:
    """The writes the server's handler makes answering one request (`head`), and what the client got."""
    writes: list[bytes] = []
    server = Server(("127.0.0.1", 0), app, log=None)
    original = server.handler_class._sendall

    class Counting(server.handler_class):
        def _sendall(self, data):
            writes.append(bytes(data))
            return original(self, data)

    server.handler_class = Counting
    server.start()
    try:
        sock = gevent.socket.create_connection(("127.0.0.1", server.server_port))
        sock.sendall(head)
        got = b""
        while chunk := sock.recv(1 << 20):
            got += chunk
        sock.close()
    finally:
        server.stop()
    return writes, got


def test_a_small_answer_goes_out_in_one_send_with_its_headers():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"hello"]

    writes, got = _sends(app)
    assert len(writes) == 1
    assert got == writes[0] and got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b"\r\n\r\nhello")


def test_a_small_chunked_first_write_goes_with_the_headers_and_the_stream_reads_whole():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        yield b"retry: 1000\n\n"
        yield b"data: x\n\n"

    writes, got = _sends(app)
    assert writes[0].endswith(b"\r\n\r\nd\r\nretry: 1000\n\n\r\n")
    assert got.endswith(b"d\r\nretry: 1000\n\n\r\n9\r\ndata: x\n\n\r\n0\r\n\r\n")


def test_a_large_first_write_is_not_copied_behind_the_headers():
    body = b"x" * (ONE_SEND + 1)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    writes, got = _sends(app)
    assert len(writes) == 2 and writes[1] == body
    assert got.endswith(b"\r\n\r\n" + body)


def test_the_environ_gets_each_field_as_gevent_gave_it():
    def app(environ, start_response):
        body = "\n".join(f"{k}={v}" for k, v in sorted(environ.items()) if k.startswith(("HTTP_", "CONTENT_")))
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body.encode()]

    _, got = _sends(app, b"GET / HTTP/1.1\r\nHost: x\r\nX-Multi: a\r\nx-multi: b\r\nCookie: c=1\r\n"
                         b"Cookie: d=2\r\nX_Spoofed: yes\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
    assert got.partition(b"\r\n\r\n")[2].decode().split("\n") == [
        "CONTENT_LENGTH=0", "CONTENT_TYPE=text/plain", "HTTP_CONNECTION=close", "HTTP_COOKIE=c=1; d=2", "HTTP_HOST=x",
        "HTTP_X_MULTI=a,b"]
