"""Who the client is and how it reached us, when a reverse proxy (nginx) stands in between.

Behind a proxy every request comes from the proxy's address, over plain HTTP. The proxy says who
the client was (`X-Forwarded-For`) and how it connected (`X-Forwarded-Proto`), but anyone can send
those headers, so they count only on a request whose peer (REMOTE_ADDR) is in `trusted_proxies`.
A peer address proves little on loopback, though: every local user and every job connects from
127.0.0.1 too. So with a proxy secret set (`proxy_secret_file`), the request must also carry it in
SECRET_HEADER, which only the proxy knows. The HTTP server puts the list into every request's
environ under TRUSTED and the secret under SECRET; an environ without TRUSTED trusts nobody.

`X-Forwarded-For` is read from the right: each proxy appends the address it saw, so the right-most
address that is not itself a trusted proxy is the client; whatever lies left of it was written by
the client and is not believed.
"""

from __future__ import annotations

import hmac
import ipaddress

TRUSTED = "pushbutton.trusted_proxies"  # environ key: the networks whose forwarded headers count
SECRET = "pushbutton.proxy_secret"  # environ key: the secret their requests must carry, or ""
SECRET_HEADER = "X-Pushbutton-Proxy-Secret"
_SECRET_KEY = "HTTP_X_PUSHBUTTON_PROXY_SECRET"
SCHEMES = ("http", "https")
HOST_PREFIX = "__Host-"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """`10.0.0.1`, `::1`, `[::1]:443`, `10.0.0.1:5678` -> the address; anything else -> None."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:10.0.0.1 is 10.0.0.1 (a dual-stack socket)
    return mapped or address


class TrustedProxies(list):
    """The `trusted_proxies` networks, and `secret` (`proxy_secret_file`) their requests must carry
    when set. A list, so it travels wherever the networks did; never shown with its secret, and
    equal only with the same secret (a rotated one is a change that needs a restart)."""

    __hash__ = None

    def __init__(self, networks=(), secret: str = ""):
        super().__init__(networks)
        self.secret = secret

    def __eq__(self, other):
        return list.__eq__(self, other) is True and self.secret == getattr(other, "secret", "")

    def __repr__(self):
        return f"TrustedProxies({list.__repr__(self)}{', secret=...' if self.secret else ''})"


def is_trusted(address: str, networks) -> bool:
    """True if `address` lies in one of `networks` (the `trusted_proxies` setting)."""
    parsed = parse_address(address) if networks else None
    return parsed is not None and any(parsed in network for network in networks)


def _peer(environ: dict) -> str:
    return environ.get("REMOTE_ADDR") or ""


def from_proxy(environ: dict) -> bool:
    """True if a trusted proxy sent this request: its peer is in `trusted_proxies` and, with a
    proxy secret set, it carries the secret (compared in constant time)."""
    if not is_trusted(_peer(environ), environ.get(TRUSTED, ())):
        return False
    secret = environ.get(SECRET, "")
    sent = environ.get(_SECRET_KEY, "")
    return not secret or hmac.compare_digest(sent.encode("utf-8", "surrogateescape"),
                                             secret.encode("utf-8", "surrogateescape"))


def client_address(environ: dict) -> str:
    """The client's address: the peer's, or, from a trusted proxy, the right-most address of
    `X-Forwarded-For` that is not a trusted proxy (if the chain is malformed or all trusted, the
    left-most trusted hop reached)."""
    networks = environ.get(TRUSTED, ())
    address = _peer(environ)
    if not from_proxy(environ):
        return address
    for hop in reversed(environ.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        parsed = parse_address(hop)
        if parsed is None:
            break
        address = str(parsed)
        if not is_trusted(address, networks):
            break
    return address


def request_scheme(environ: dict) -> str:
    """`https` or `http`: how the client reached us (a trusted proxy's `X-Forwarded-Proto`, else
    this server's own: https when it serves TLS)."""
    own = environ.get("wsgi.url_scheme", "http")
    if not from_proxy(environ):
        return own
    forwarded = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip().lower()
    return forwarded if forwarded in SCHEMES else own


def is_secure(environ: dict) -> bool:
    """True if cookies set on this request should carry `Secure`."""
    return request_scheme(environ) == "https"


def browser_port(environ: dict) -> int:
    """The port the browser reached: the one its `Host` header names (a proxy passes `Host` on as
    the browser sent it, nginx's `$http_host`, as the Host and Origin checks need), else the default
    of the scheme it came by. Not this server's own port, which a proxy or a container's port
    mapping hides from the browser."""
    host = environ.get("HTTP_HOST", "").strip()
    if host.startswith("["):  # [::1]:8000
        rest = host.partition("]")[2]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        port = host.partition(":")[2] if host.count(":") == 1 else ""
    if port.isascii() and port.isdigit() and 0 < int(port) < 65536:
        return int(port)
    return 443 if is_secure(environ) else 80


def cookie_name(name: str, environ: dict) -> str:
    """`NAME_<port>`, the port the browser reached (`browser_port`): a browser keeps cookies per
    host, not per port, so two servers on one host (a desktop window and a headless server, two
    team servers, two containers) would otherwise overwrite each other's. `__Host-NAME_<port>` where
    such a cookie can be: over HTTPS at the root (it must be Secure, with Path=/ and no Domain). A
    sibling subdomain can neither set one nor shadow it, and a request that can carry one reads only
    it. Under a base path or over plain HTTP: `NAME_<port>`."""
    name = f"{name}_{browser_port(environ)}"
    return HOST_PREFIX + name if is_secure(environ) and mount_path(environ) == "/" else name


def mount_path(environ: dict) -> str:
    """The path the app is served under, with a trailing slash: `/` or `/ops/` (the base path).
    It is the Path of cookies and where the page lives."""
    return environ.get("SCRIPT_NAME", "").rstrip("/") + "/"
