"""The TLS handshake of a connection to the HTTPS port (`--certfile`), and the answer to plain HTTP
sent there.

The handshake runs under a deadline, so a client that never starts or never finishes it is cut
off like one that never sends its headers. Before it, the connection's first byte is peeked at: a
TLS record starts with 0x16 (a ClientHello), an HTTP request with a method's capital letter. Plain
HTTP is answered as nginx answers it (its 497, sent as a 400): in plain HTTP, saying the port
speaks HTTPS and which https:// address to use, rather than closed without a word ("Empty reply
from server", "connection reset").
"""

from __future__ import annotations

import logging
import re
import socket
import time

import gevent

access = logging.getLogger("pushbutton.access")
MAX_HEAD = 8192  # a plain request's line and headers read to name the https:// address
HOST = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
PATH = re.compile(r"/[!-~]*")  # printable ASCII, no space: the request line's path as sent


def handshake(sock: socket.socket, wrap, timeout: float, linger: float):
    """The TLS socket, or None (the socket closed) if the client spoke plain HTTP (answered), or
    the handshake failed or did not finish within `timeout`, however slowly the client trickles it."""
    deadline = gevent.Timeout(timeout)
    try:
        sock.settimeout(timeout)
        with deadline:
            first = sock.recv(1, socket.MSG_PEEK)
            if b"A" <= first <= b"Z":  # GET, POST, HEAD...: not a TLS record
                answer = plain_http_answer(sock)
            else:
                sock = wrap(sock)
                sock.do_handshake()
                return sock
        if answer:  # the deadline is over; the client is given `linger` to read the answer
            sock.settimeout(linger)
            sock.sendall(answer)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(65536)  # what is left of its request, so that closing does not reset the answer
    except gevent.Timeout as exc:
        if exc is not deadline:
            raise
    except (OSError, ValueError):
        pass  # not TLS, a refused certificate, a reset
    sock.close()
    return None


def plain_http_answer(sock: socket.socket) -> bytes:
    """Read the plain request's head (up to MAX_HEAD bytes) and make the 400 that says to use
    https://; logged like a request, without its query."""
    began, head = time.monotonic(), b""
    while b"\r\n\r\n" not in head and len(head) < MAX_HEAD and (data := sock.recv(MAX_HEAD - len(head))):
        head += data
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    words = lines[0].split()
    method = words[0] if words and words[0].isalpha() and words[0].isupper() else "-"
    path = words[1].partition("?")[0] if len(words) > 1 else ""
    path = path if PATH.fullmatch(path) else ""
    host = next((line.partition(":")[2].strip() for line in lines[1:] if line.lower().startswith("host:")), "")
    where = f"https://{host}{path or '/'}" if HOST.fullmatch(host) else "https:// with this host and port"
    body = f"This port speaks HTTPS, not plain HTTP: use {where}\n".encode()
    fields = {"method": method, "path": path or "-", "status": 400, "ms": round((time.monotonic() - began) * 1000, 1),
              "user": None, "client": _peer(sock)}
    access.info("%s %s 400 plain HTTP sent to the HTTPS port", method, path or "-", extra={"fields": fields})
    return (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
            b"Connection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\r\n%s"
            % (len(body), body))


def _peer(sock: socket.socket) -> str:
    try:
        peer = sock.getpeername()
    except OSError:
        return ""
    return peer[0] if isinstance(peer, tuple) else str(peer)
