"""The HTTP connection limits: slow and idle clients are cut off, and one address cannot hold them all.

gevent's pywsgi waits forever for a request's headers and between keep-alive requests, so 300
connections that each send half a header would stay open for good. Here every connection has:

- HEADER_TIMEOUT for a request's line and headers, from the connection's start or from the first
  byte of a keep-alive request: a client that trickles them out is answered 408 and closed, one
  that sent nothing is closed without a word (browsers open spare connections);
- IDLE_TIMEOUT between keep-alive requests, then closed without a word;
- WRITE_TIMEOUT for any one send or receive while a response is under way, so a client that
  stops reading cannot pin a stream; an SSE stream writes a comment every IDLE_TIMEOUT / 2
  (`server.sse.KEEPALIVE`), so a live stream never meets a timeout;
- at most PER_CLIENT open connections per client address: one more is answered 503 and closed;
  a stream whose client hung up ends at once, not at its next write, so it does not count on.
  A trusted proxy (`trusted_proxies`) is exempt: all its clients share its address, so the cap
  per client is the proxy's to enforce (nginx's `limit_conn`, see docs/deploy.md). With a proxy
  secret set, a connection from its address whose request lacks the secret (another local
  process) counts from that request on, and is answered 503 and closed over the cap.

Over TLS the handshake happens here, after the cap is checked and within HEADER_TIMEOUT, so a
client that opens a connection and never completes (or never starts) the handshake is cut off
like one that never sends its headers; plain HTTP sent there is answered 400 (server/tls.py).

A request body the application left unread is drained only up to DRAIN bytes; beyond that the
connection closes after the answer, so a huge or endless body is never read to its end.

Over plain TCP each request's environ holds its Handler (DIRECT), whose `send_now` lets a run's
broadcaster write to an event stream without waking the stream's greenlet (server/broadcast.py).
The two timeouts can be shortened for tests with the environment variables named below.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections import Counter
from contextlib import closing
from functools import partial

import gevent
from gevent import GreenletExit
from gevent.pywsgi import WSGIHandler, WSGIServer
from gevent.socket import wait_read

from server import http_headers
from server.auth.proxies import SECRET, TRUSTED, from_proxy, is_trusted
from server.tls import handshake


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name) or str(default)
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < 86400:
        raise ValueError(f"{name} must be a number of seconds, not {raw!r}")
    return value


HEADER_TIMEOUT = _seconds("PUSHBUTTON_HEADER_TIMEOUT", 10)
IDLE_TIMEOUT = _seconds("PUSHBUTTON_IDLE_TIMEOUT", 30)
WRITE_TIMEOUT = 60.0
PER_CLIENT = 64  # a browser holds 6 connections per host plus its event streams
DRAIN = 1024 * 1024
ONE_SEND = 64 * 1024  # a first write up to this size is sent with the headers
LINGER = 2.0  # after an early answer, read (and drop) up to DRAIN more bytes, so the client sees it

TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
_BUSY_BODY = b'{"error": "too many connections from this address"}'
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 5\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))


DIRECT = "pushbutton.connection"  # environ: the Handler, for a stream written to by another greenlet
RAW_PATH = "pushbutton.raw_path"  # environ: the request line's path, escapes kept, without the query


class _ClientGone(GreenletExit):
    """Ends a response whose client closed its connection (a GreenletExit: gevent logs nothing)."""


# A query string, or a credential header's value, in text gevent quotes from a bad request.
UNLOGGED = re.compile(r"(\?)[^\s'\\]+|((?:authorization|cookie|x-api-key|x-pushbutton-proxy-secret)\s*:\s*)"
                      r"[^\r\n'\\]+", re.IGNORECASE)


def _hidden(match: re.Match) -> str:
    return (match.group(1) or match.group(2)) + "(hidden)"


class Handler(WSGIHandler):
    """One connection: gevent's handler with the timeouts above around each request."""

    # A blocked send or receive that timed out is a client gone quiet: close, do not log a 500.
    ignored_socket_errors = (*WSGIHandler.ignored_socket_errors, "timed out")
    _served = 0
    counted = True  # in the per-address cap; Server.handle clears it for a trusted proxy's address
    cap_key = ""
    _deadline: gevent.Timeout | None = None
    _unread_body = False
    _watcher: gevent.Greenlet | None = None

    def log_request(self):
        """Requests are logged by server.logs.access_log; gevent's line (made even with no log to
        write it to) is not."""

    def log_error(self, msg, *args):
        """gevent's own error lines quote what a client sent (a request line it could not parse):
        never its query string (`?token=...`) nor a credential header."""
        try:
            message = msg % args if args else msg
        except (TypeError, ValueError):
            message = f"{msg!r} {args!r}"
        super().log_error(UNLOGGED.sub(_hidden, str(message)))

    def _headers(self):
        """gevent's, from the fields as read (http_headers.py), not formatted into lines and
        split again. A name with `_` is dropped, as gevent does (it would pass for one with `-`)."""
        for name, value in self.headers._headers:
            if "_" not in name:
                key = name.replace("-", "_").upper()
                if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):  # in the environ without HTTP_
                    yield "HTTP_" + key, value

    def MessageClass(self, fp, *_):  # noqa: N802 (gevent's name)
        return http_headers.parse(fp)

    def handle_one_request(self):
        if self.rfile.closed:
            return None
        started = time.monotonic()
        self.socket.settimeout(IDLE_TIMEOUT if self._served else HEADER_TIMEOUT)
        try:
            if not self.rfile.peek(1):
                return None  # the client closed the connection
        except OSError:
            return None  # no byte in time (idle), or reset
        # A new connection's headers are timed from its start, a keep-alive request's from its first byte.
        left = HEADER_TIMEOUT - (0 if self._served else time.monotonic() - started)
        self.socket.settimeout(WRITE_TIMEOUT)
        self._deadline = gevent.Timeout(max(left, 0.001))
        self._deadline.start()
        try:
            result = super().handle_one_request()
        except gevent.Timeout as timeout:
            if timeout is not self._deadline:
                raise
            return ("408", TIMED_OUT)
        finally:
            self._deadline.cancel()
        self._served += 1
        if result is None and self._unread_body and self.socket is not None:
            self._linger()
        return result

    def handle_one_response(self):
        self._deadline.cancel()  # the request is in; a response (an SSE stream) may take as long as it needs
        super().handle_one_response()

    def _sendall(self, data):
        """gevent's `sendall` asks the kernel for the socket's buffer size before each write: a
        system call per SSE frame. One `send` that takes it all is the usual case."""
        try:
            sent = self.socket.send(data)
            if sent < len(data):
                self.socket.sendall(memoryview(data)[sent:])
        except OSError as ex:
            self.status = f"socket error: {ex}"
            if self.code > 0:
                self.code = -self.code
            raise
        self.response_length += len(data)

    def _write_with_headers(self, data):
        """gevent's, but a small first write goes out in the same `send` as the headers: two
        sends per answer were a system call and a wake-up of the client more for every request."""
        if len(data) > ONE_SEND:
            return super()._write_with_headers(data)
        self.headers_sent = True
        self.finalize_headers()
        out = bytearray(b"HTTP/1.1 ")  # as gevent's: status and headers are latin-1 bytes already
        out += self.status
        out += b"\r\n"
        for header, value in self.response_headers:
            out += b"%s: %s\r\n" % (header, value)
        out += b"\r\n"
        if data:
            out += b"%x\r\n%s\r\n" % (len(data), data) if self.response_use_chunked else data
        self._sendall(out)

    def get_environ(self):
        environ = super().get_environ()
        environ[RAW_PATH] = self.path.partition("?")[0]  # as sent: the access log's (server/logs.py)
        if not self.server.ssl_enabled:  # a TLS record cannot be cut where the socket stops taking it
            environ[DIRECT] = self
        return environ

    def framed(self, data: bytes) -> bytes:
        """`data` as this response writes it (a chunk, when chunked), for `send_now`."""
        return b"%x\r\n%s\r\n" % (len(data), data) if self.response_use_chunked else data

    def send_now(self, data: bytes) -> int:
        """Write what the socket takes of `data` (`framed`) without waiting, from any greenlet
        (server/broadcast.py): the bytes sent, 0 if none; OSError if the client is gone. The
        caller sends the rest with `send_rest`, before anything else is written."""
        if self.socket is None:  # closed meanwhile
            raise ConnectionResetError("the connection is closed")
        try:
            sent = self.socket._sock.send(data)
        except BlockingIOError:
            return 0
        self.response_length += sent
        return sent

    def send_rest(self, data: bytes) -> None:
        self._sendall(data)

    def start_response(self, status, headers, exc_info=None):
        write = super().start_response(status, headers, exc_info)
        if self.command in ("GET", "HEAD") and self.provided_content_length is None and self._watcher is None:
            self._watcher = gevent.spawn(self._end_stream_on_hangup, gevent.getcurrent())
        return write

    def _end_stream_on_hangup(self, streaming) -> None:
        """A stream (SSE, a log download) would notice a vanished client only at its next write,
        a keepalive later; it would hold its connection, and its address's share, until then.

        Over TLS bytes cannot be peeked at through the encryption: the first record is read (a
        `close_notify` or the end of the connection reads as b""); anything else the client sent
        during a streamed answer is a pipelined request, which is dropped with the connection
        closed after the answer (the client sends it again)."""
        try:
            wait_read(self.socket.fileno())
            if self.server.ssl_enabled:
                gone = self.socket.recv(1) == b""
                self.close_connection = True
            else:
                gone = self.socket.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            gone = True
        if gone:
            streaming.kill(_ClientGone, block=False)

    def run_application(self):
        if not self.counted and not from_proxy(self.environ) and not self._count_now():
            self.close_connection = True
            self.start_response("503 Service Unavailable", [("Content-Type", "application/json"),
                                                            ("Retry-After", "5")])
            self.result = [_BUSY_BODY]
            self.process_result()
            return
        try:
            super().run_application()
        finally:
            if self._watcher is not None:
                self._watcher.kill(block=False)
                self._watcher = None
            self._drain_unread_body()

    def _count_now(self) -> bool:
        """A request from a trusted proxy's address without its secret is from another local
        process, not the proxy: its connection counts from now on. False if that is over the cap."""
        if self.server.per_client[self.cap_key] >= PER_CLIENT:
            return False
        self.server.per_client[self.cap_key] += 1
        self.counted = True
        return True

    def _drain_unread_body(self) -> None:
        """Read what is left of the request body, up to DRAIN bytes in HEADER_TIMEOUT; if more is
        left (or the client still waits for `100 Continue`), close the connection after the answer."""
        body = self.wsgi_input
        if body is None:
            return
        if body.socket is None and not self.close_connection:  # no `Expect: 100-continue` pending
            try:
                with gevent.Timeout(HEADER_TIMEOUT):
                    left = DRAIN
                    while left > 0:
                        data = body.read(min(left, 65536))
                        if not data:
                            return
                        left -= len(data)
                    if not body.read(1):
                        return
            except (gevent.Timeout, OSError, ValueError):
                pass
        self.close_connection = self._unread_body = True
        body.chunked_input = False  # so that gevent's own discard reads no further
        body.content_length = body.position

    def _linger(self) -> None:
        """After an answer sent before the whole request was read, closing at once would reset the
        connection and could wipe the answer from the client's buffers before it reads it."""
        try:
            self.socket.shutdown(socket.SHUT_WR)
            with gevent.Timeout(LINGER, False):
                left = DRAIN
                while left > 0 and (data := self.socket.recv(65536)):
                    left -= len(data)
        except OSError:
            pass


class Server(WSGIServer):
    """gevent's WSGIServer with the Handler above, a cap on connections per client address, and
    the TLS handshake (with `ssl_context=`) under the header timeout.

    `trusted_proxies` (networks, and the proxy secret: `server.auth.proxies.TrustedProxies`) are
    exempt from the cap and reach every request's environ (TRUSTED, SECRET) for `server.auth.proxies`."""

    handler_class = Handler

    def __init__(self, *args, trusted_proxies=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.per_client: Counter[str] = Counter()
        self.trusted_proxies = tuple(trusted_proxies)
        self.environ[TRUSTED] = self.trusted_proxies
        self.environ[SECRET] = getattr(trusted_proxies, "secret", "")

    def init_socket(self):
        super().init_socket()
        self._handle = self.handle  # not gevent's wrap-then-handle: the handshake waits for the cap

    def handle(self, sock, address):
        # Without TCP_NODELAY a small write after the headers waits for a delayed ACK: 40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = address[0] if isinstance(address, tuple) else str(address)
        counted = not is_trusted(client, self.trusted_proxies)
        if counted and self.per_client[client] >= PER_CLIENT:
            self._refuse(sock)
            return
        self.per_client[client] += counted
        handler = None
        try:
            if self.ssl_enabled:
                sock = self._handshake(sock)
                if sock is None:
                    return
            handler = self.handler_class(sock, address, self)  # gevent's handle(), with the count
            handler.counted, handler.cap_key = counted, client
            if self.ssl_enabled:
                with closing(sock):
                    handler.handle()
            else:
                handler.handle()
        except OSError:
            pass  # the client went away while it was being answered
        finally:
            self.per_client[client] -= handler.counted if handler else counted
            if not self.per_client[client]:
                del self.per_client[client]

    def _handshake(self, sock):
        """The TLS socket, or None (closed): under HEADER_TIMEOUT; plain HTTP answered 400 (tls.py)."""
        wrap = partial(self.wrap_socket, do_handshake_on_connect=False, **self.ssl_args)
        return handshake(sock, wrap, HEADER_TIMEOUT, LINGER)

    def _refuse(self, sock) -> None:
        try:
            if self.ssl_enabled:
                sock = self._handshake(sock)
                if sock is None:
                    return
            with closing(sock):
                sock.settimeout(LINGER)
                sock.sendall(BUSY)
                sock.shutdown(socket.SHUT_WR)
                sock.recv(65536)
        except OSError:
            pass
