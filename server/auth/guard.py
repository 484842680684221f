"""Who may talk to the server: a per-launch token, the Host header, and the Origin header.

The token arrives once in the URL (`/?token=T`), is swapped for an HttpOnly cookie, and is then
sent by the page on every request; API clients send `Authorization: Bearer T`. The Host check
stops DNS rebinding (a hostile page resolving its own name to 127.0.0.1); the Origin check stops
other sites from posting to the API through the user's browser. "Other site" is another origin:
scheme, host and port. A page of `http://host` is another site to `https://host` (on plain HTTP a
network attacker writes whatever page it likes), so the scheme must be the one the request came
by: this server's TLS, or `X-Forwarded-Proto` from a trusted proxy (`proxies.request_scheme`).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
import time
from urllib.parse import urlsplit

from server.auth.proxies import cookie_name, is_secure, mount_path, request_scheme
from server.http_headers import cookie

LOOPBACK_NAMES = {"localhost"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
DEFAULT_PORTS = {"http": 80, "https": 443}
LOG_SCHEME_EVERY = 60.0  # seconds: a proxy that does not say https would refuse every POST

log = logging.getLogger("pushbutton")
_scheme_logged = [-LOG_SCHEME_EVERY]


def new_token() -> str:
    return secrets.token_urlsafe(24)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """`Example.com:8000` -> `example.com`; `[::1]:8000` -> `::1`."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _origin(scheme: str, netloc: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) with the scheme's default port filled in; None if not an http(s) origin."""
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port
    except ValueError:
        return None
    if scheme not in DEFAULT_PORTS or not parts.hostname or "@" in netloc:
        return None
    return scheme, parts.hostname, port or DEFAULT_PORTS[scheme]


def same_origin(origin: str, environ: dict) -> bool:
    """Whether an Origin header names the origin this request was sent to: the scheme it came by
    (a trusted proxy's X-Forwarded-Proto, else this server's), the Host, the port (defaults filled)."""
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return False
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return False
    theirs = _origin(parts.scheme.lower(), parts.netloc)
    scheme = request_scheme(environ)
    ours = _origin(scheme, environ.get("HTTP_HOST", ""))
    if theirs is not None and theirs == ours:
        return True
    now = time.monotonic()
    if theirs and ours and theirs[1:] == ours[1:] and now - _scheme_logged[0] >= LOG_SCHEME_EVERY:
        _scheme_logged[0] = now
        log.warning("refused a %s from Origin %s: it came by %s. Behind a proxy that serves HTTPS, have the "
                    "proxy send X-Forwarded-Proto and list it in trusted_proxies", environ.get("REQUEST_METHOD"),
                    origin[:200], scheme)
    return False


class Guard:
    def __init__(self, token: str, bind_host: str, allowed_hosts: list[str] = ()):
        self.token = token
        self.cookie = "pushbutton"  # pushbutton_<the browser's port>, `__Host-` before it where it can (cookie_name)
        bind = host_name(bind_host)
        named = {host_name(h) for h in allowed_hosts}  # e.g. the names a reverse proxy in front forwards
        if is_loopback(bind):
            self.hosts: set[str] | None = {bind, "localhost", "127.0.0.1", "::1"} | named
        elif named:
            self.hosts = named | {bind}
        else:
            self.hosts = None  # any Host: the operator chose a public address and no list

    def valid_token(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(candidate.encode(), self.token.encode())

    def token_of(self, environ: dict) -> str | None:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        return cookie(environ, cookie_name(self.cookie, environ))

    def refuse(self, environ: dict, needs_token: bool) -> tuple[int, str] | None:
        """None if the request may proceed, else (status, reason)."""
        if self.hosts is not None and host_name(environ.get("HTTP_HOST", "")) not in self.hosts:
            return 403, "unexpected Host header"
        if environ.get("REQUEST_METHOD", "GET") not in SAFE_METHODS:
            origin = environ.get("HTTP_ORIGIN")
            if origin is not None and not same_origin(origin, environ):
                return 403, "cross-origin request refused"
        if needs_token and not self.valid_token(self.token_of(environ)):
            return 401, "missing or wrong token: open the address printed at start-up"
        return None

    def cookie_header(self, environ: dict) -> str:
        """For the app's own path only (the base path), and `Secure` when the client came over HTTPS
        (then, at the root, a `__Host-` cookie)."""
        secure = "; Secure" if is_secure(environ) else ""
        return (f"{cookie_name(self.cookie, environ)}={self.token}; Path={mount_path(environ)}; HttpOnly; "
                f"SameSite=Strict{secure}")
