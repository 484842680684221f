"""HTTPS served by Pushbutton itself: real TLS clients that verify a self-signed certificate made
by the test, the cookie's `Secure`, and the connection limits over TLS (handshake, hang-ups, cap)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import textwrap
import time

import httpx
import pytest

from server.connections import PER_CLIENT
from tests.edge.conftest import make_cert, tls_client
from tests.helpers import BIN, TOKEN, parse_sse, sse_lines

JOBS = """
    [job:greet]
    command = echo hello {name}
    param.name.type = text
    param.name.default = world
"""


@pytest.fixture
def short_timeouts(monkeypatch):
    """Handshake and headers within 2 s (read by the server at start-up)."""
    monkeypatch.setenv("PUSHBUTTON_HEADER_TIMEOUT", "2")


@pytest.fixture
def https(pushbutton, write_jobs, cert):
    pb = pushbutton(write_jobs(JOBS), "--certfile", str(cert.cert), "--keyfile", str(cert.key))
    tls_client(pb, cert)
    return pb


def port_of(pb) -> int:
    return int(pb.url.rsplit(":", 1)[1].split("/")[0])


def tls_socket(pb, cert, source: str = "127.0.0.1") -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port_of(pb)), timeout=10, source_address=(source, 0))
    return cert.context().wrap_socket(raw, server_hostname="127.0.0.1")


def closed_within(sock: socket.socket, timeout: float) -> bool:
    """True if the server closed (or reset) the connection within `timeout`; data is read and dropped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False


def test_certfile_and_keyfile_serve_https_with_secure_cookies(https, cert):
    assert https.login_url.startswith(f"https://127.0.0.1:{port_of(https)}/?token=")
    assert https.client.get("/api/jobs").status_code == 200
    bare = httpx.Client(base_url=https.url, verify=cert.context())
    login = bare.get(f"/?token={TOKEN}")
    assert login.status_code == 303
    assert "; Secure" in login.headers["set-cookie"] and "HttpOnly" in login.headers["set-cookie"]
    assert bare.get("/api/jobs").status_code == 200  # the Secure cookie goes back over HTTPS
    # A live event stream over TLS.
    run_id = https.start_run("greet", name="tls")["id"]
    assert [line for e in https.events(run_id) if e.type == "output" for line in e.data["lines"]] == ["hello tls"]
    # A client that does not trust the certificate fails (plain HTTP: the test after this one).
    with pytest.raises(httpx.ConnectError):
        httpx.get(https.url + "/healthz", verify=make_cert(https.data_dir.parent / "other").context(), timeout=10)
    assert https.client.get("/healthz").status_code == 200
    assert "Traceback" not in https.log.read_text()


def test_plain_http_to_the_https_port_is_answered_400_saying_to_use_https(https):
    """It was closed without a word (the handshake failed on a request line): curl said "Empty reply
    from server", a browser "connection reset". As nginx does, the answer is a plain-HTTP 400 that
    says the port speaks HTTPS, with the https:// address to use (never the query: a token)."""
    port = port_of(https)
    res = httpx.get(f"http://127.0.0.1:{port}/api/jobs", params={"token": TOKEN}, timeout=10)
    assert res.status_code == 400 and res.headers["connection"] == "close"
    assert res.headers["content-type"] == "text/plain; charset=utf-8"
    assert res.text == (f"This port speaks HTTPS, not plain HTTP: use https://127.0.0.1:{port}/api/jobs\n")
    for host in (b"evil\x1b[2J.example", b""):  # not a host name: no address made of it
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /x HTTP/1.1\r\nHost: " + host + b"\r\nContent-Length: 3\r\n\r\nabc")
            answer = b""
            while data := sock.recv(65536):
                answer += data
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
        assert answer.endswith(b"\r\n\r\nThis port speaks HTTPS, not plain HTTP: use https:// with this host and "
                               b"port\n")
    assert https.client.get("/healthz").status_code == 200  # TLS clients are served as before
    log = https.log.read_text()
    assert "pushbutton: GET /api/jobs 400 plain HTTP sent to the HTTPS port" in log and TOKEN not in log
    assert "pushbutton: POST /x 400 plain HTTP sent to the HTTPS port" in log
    assert "Traceback" not in log and "\x1b" not in log


def test_the_jobs_ini_keys_serve_https_and_the_command_line_wins(pushbutton, write_jobs, tmp_path):
    ini_cert, cli_cert = make_cert(tmp_path / "ini"), make_cert(tmp_path / "cli")
    jobs = write_jobs("[pushbutton]\ncertfile = ini/cert.pem\nkeyfile = ini/key.pem\n" + textwrap.dedent(JOBS))
    pb = pushbutton(jobs, data_dir=tmp_path / "data1")
    assert pb.login_url.startswith("https://")
    assert tls_client(pb, ini_cert).get("/api/jobs").status_code == 200
    pb.stop()
    pb = pushbutton(jobs, "--certfile", str(cli_cert.cert), "--keyfile", str(cli_cert.key), data_dir=tmp_path / "data2")
    assert tls_client(pb, cli_cert).get("/api/jobs").status_code == 200
    with pytest.raises(httpx.ConnectError):
        tls_client(pb, ini_cert).get("/api/jobs")


def test_a_missing_unreadable_or_mismatched_certificate_exits_2_saying_which(write_jobs, tmp_path):
    jobs = write_jobs(JOBS)
    good, other = make_cert(tmp_path / "good"), make_cert(tmp_path / "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    locked = tmp_path / "locked-key.pem"
    subprocess.run(["openssl", "pkey", "-in", str(good.key), "-out", str(locked), "-aes256", "-passout", "pass:secret"],
                   check=True, capture_output=True)
    cases = {
        "missing certfile": ([tmp_path / "nope.pem", good.key], "nope.pem"),
        "missing keyfile": ([good.cert, tmp_path / "nokey.pem"], "nokey.pem"),
        "a folder": ([tmp_path, good.key], str(tmp_path)),
        "not a certificate": ([garbage, good.key], "garbage.pem"),
        "the key of another certificate": ([good.cert, other.key], "key"),
        "no keyfile": ([good.cert], "--certfile and --keyfile go together"),
        "a key with a passphrase": ([good.cert, locked], "is encrypted with a passphrase"),  # no prompt
    }
    for case, (files, said) in cases.items():
        args = ["--certfile", str(files[0])] + (["--keyfile", str(files[1])] if len(files) > 1 else [])
        done = subprocess.run([BIN, "--headless", "--jobs", str(jobs), "--port", "0", "--data-dir",
                               str(tmp_path / "data"), *args], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 2, (case, done.returncode, done.stderr)
        assert said in done.stderr and "Traceback" not in done.stderr, (case, done.stderr)
        assert "serving" not in done.stdout, case


def test_clients_that_never_finish_the_tls_handshake_are_cut_off(short_timeouts, pushbutton, write_jobs, cert):
    """A TLS server that waited for handshakes without a deadline would keep each such socket
    (and its greenlet) for good."""
    pb = pushbutton(write_jobs(JOBS), "--certfile", str(cert.cert), "--keyfile", str(cert.key))
    client = tls_client(pb, cert)
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"  # the start of a ClientHello
    slow: list[tuple[str, socket.socket, float]] = []
    for i in range(30):
        sock = socket.create_connection(("127.0.0.1", port_of(pb)), source_address=(f"127.0.0.{20 + i % 3}", 0))
        kind = ("silent", "half hello", "trickle")[i % 3]
        if kind != "silent":
            sock.sendall(hello)
        slow.append((kind, sock, time.monotonic()))
    for _ in range(3):  # trickled bytes do not extend the deadline
        time.sleep(0.6)
        took = time.monotonic()
        assert client.get("/api/jobs").status_code == 200 and time.monotonic() - took < 1
        for kind, sock, _ in slow:
            if kind == "trickle":
                sock.send(b"\x00")
    for kind, sock, opened in slow:
        assert closed_within(sock, opened + 2 + 5 - time.monotonic()), f"a {kind} client is still connected"
        sock.close()
    assert client.get("/api/jobs").status_code == 200


def test_the_cap_per_address_counts_connections_still_in_their_handshake(https, cert):
    """Else one address could open any number of sockets by never finishing the handshake."""
    silent = [socket.create_connection(("127.0.0.1", port_of(https)), source_address=("127.0.0.9", 0))
              for _ in range(PER_CLIENT)]
    time.sleep(0.5)
    busy = httpx.Client(base_url=https.url, verify=cert.context(), timeout=10,
                        transport=httpx.HTTPTransport(local_address="127.0.0.9", verify=cert.context()))
    res = busy.get("/healthz")
    assert res.status_code == 503 and res.headers["retry-after"] == "5"  # over TLS, readable
    assert https.client.get("/healthz").status_code == 200  # other addresses are served
    silent.pop().close()
    deadline = time.monotonic() + 5
    while busy.get("/healthz").status_code != 200:
        assert time.monotonic() < deadline, "a freed slot was never given back"
        time.sleep(0.1)
    for sock in silent:
        sock.close()


@pytest.mark.parametrize("goodbye", ["close_notify", "TCP close"])
def test_a_tls_stream_whose_client_hung_up_frees_its_connection_at_once(https, cert, goodbye):
    """A TLS socket cannot be peeked at through the encryption; the hang-up must still be seen at
    once, or each stream would count against its address until its next keepalive, 15 s later."""
    for _ in range(3):
        streams = [tls_socket(https, cert, "127.0.0.8") for _ in range(PER_CLIENT)]
        for sock in streams:
            sock.sendall(f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
                         .encode())
        for sock in streams:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            if goodbye == "close_notify":  # sent at once; the wait for the server's then fails on its data
                with contextlib.suppress(ssl.SSLError):
                    sock.unwrap()
            sock.close()
        time.sleep(0.5)
    assert "Traceback" not in https.log.read_text()


def test_an_event_stream_over_tls_resumes_with_last_event_id(https):
    run_id = https.start_run("greet", name="again")["id"]
    https.wait(run_id)
    first = https.events(run_id, limit=1)
    rest = https.events(run_id, after=first[0].id)
    assert [e.id for e in rest] == list(range(first[0].id + 1, first[0].id + 1 + len(rest)))
    with https.client.stream("GET", "/api/events") as res:
        assert next(parse_sse(sse_lines(res))).type == "ready"
