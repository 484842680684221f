"""jobs.ini's OpenID Connect keys (`auth = oidc`): the provider, the client, and which claims name
the user and their groups. The client secret should come from a file or the environment
(PUSHBUTTON_OIDC_CLIENT_SECRET), not from jobs.ini, which is copied around with builds: there it is
accepted with a warning. Owned by the OIDC sign-in method (server/auth/oidc.py)."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

OIDC_KEYS = ("oidc_issuer", "oidc_client_id", "oidc_client_secret", "oidc_client_secret_file", "oidc_scopes",
             "oidc_groups_claim", "oidc_user_claim")
SECRET_ENV = "PUSHBUTTON_OIDC_CLIENT_SECRET"
SCOPE_RE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+\Z")  # RFC 6749 scope-token
CLAIM_RE = re.compile(r"[^\s\x00-\x1f]{1,100}\Z")
LOOPBACK = ("localhost",)


@dataclass
class Oidc:
    issuer: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)  # resolved at load: jobs.ini, the file, or the env
    client_secret_file: str = ""
    scopes: str = "openid profile email"
    groups_claim: str = "groups"
    user_claim: str = "preferred_username"


def issuer_url(raw: str) -> str:
    """An https:// URL without query or fragment (http:// only for a provider on this machine)."""
    value = raw.strip()
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"{value!r} is not a URL") from None
    if parts.scheme not in ("https", "http") or not host or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{value!r} is not an issuer URL like https://login.example.com/realms/acme")
    if parts.scheme == "http" and not _loopback(host):
        raise ValueError(f"{value!r}: an issuer must use https:// (http:// only on this machine, for testing)")
    return value


def _loopback(host: str) -> bool:
    try:
        return host in LOOPBACK or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _scopes(raw: str) -> str:
    scopes = raw.split()
    bad = [s for s in scopes if not SCOPE_RE.match(s)]
    if bad or not scopes:
        raise ValueError(f"{raw.strip()!r} is not a space-separated list of scopes")
    return " ".join(dict.fromkeys(["openid", *scopes]))  # openid is what makes it OpenID Connect


def _claim(raw: str) -> str:
    if not CLAIM_RE.match(raw.strip()):
        raise ValueError(f"{raw.strip()!r} is not a claim name")
    return raw.strip()


class OidcChecks:
    """The reader's `oidc_*` keys of `[pushbutton]`."""

    def oidc_setting(self, section: str, key: str, raw: str, oidc: Oidc) -> None:
        name = key[len("oidc_"):]
        if name == "issuer":
            oidc.issuer = self.convert(section, key, raw, issuer_url, "")
        elif name == "scopes":
            oidc.scopes = self.convert(section, key, raw, _scopes, oidc.scopes)
        elif name in ("groups_claim", "user_claim"):
            setattr(oidc, name, self.convert(section, key, raw, _claim, getattr(oidc, name)))
        elif name == "client_secret_file":
            path = (self.path.parent / os.path.expanduser(raw.strip())).resolve()
            try:
                text = path.read_text(encoding="utf-8", errors="replace").strip("\r\n")
            except OSError as exc:
                self.problem(section, key, f"cannot read {str(path)!r}: {exc.strerror}")
                return
            if not text:
                self.problem(section, key, f"{str(path)!r} is empty")
            oidc.client_secret_file, oidc.client_secret = str(path), text
        elif name == "client_secret":
            oidc.client_secret = raw.strip()
            self.warning(section, key, "the client secret sits in jobs.ini, which is copied around: put it in a "
                         f"file (oidc_client_secret_file) or the environment ({SECRET_ENV})")
        else:
            oidc.client_id = raw.strip()

    def check_oidc(self, auth: str, oidc: Oidc) -> None:
        given = [key for key in OIDC_KEYS if ("pushbutton", key) in self.lines.keys]
        if auth != "oidc":
            if given:
                self.warning("pushbutton", given[0], f"ignored: {', '.join(given)} apply only with auth = oidc")
            return
        for key in ("issuer", "client_id"):
            if not getattr(oidc, key) and f"oidc_{key}" not in given:
                self.problem("pushbutton", "auth", f"auth = oidc needs oidc_{key}")
        if "oidc_client_secret" in given and "oidc_client_secret_file" in given:
            self.problem("pushbutton", "oidc_client_secret", "set oidc_client_secret or oidc_client_secret_file, "
                         "not both")
        if not oidc.client_secret:
            oidc.client_secret = os.environ.get(SECRET_ENV, "").strip("\r\n")
        if not oidc.client_secret and "oidc_client_secret_file" not in given:
            self.problem("pushbutton", "auth", "auth = oidc needs the client secret: oidc_client_secret_file or the "
                         f"environment variable {SECRET_ENV}")
