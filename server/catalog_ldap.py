"""jobs.ini's LDAP keys (`auth = ldap`): the directory, the account that searches it, where users
and groups are. The bind password should come from a file or the environment, not from jobs.ini
(a copied jobs.ini would carry it): there it is accepted with a warning. Owned by the LDAP
sign-in method (server/auth/ldap.py). DN syntax is checked with ldap3's parser, imported only
when a file has LDAP keys (it costs ~70 ms at start-up).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

LDAP_KEYS = ("ldap_url", "ldap_starttls", "ldap_ca_file", "ldap_bind_dn", "ldap_bind_password",
             "ldap_bind_password_file", "ldap_user_base", "ldap_user_filter", "ldap_group_base",
             "ldap_group_filter", "ldap_groups_attribute", "ldap_timeout")
PASSWORD_ENV = "PUSHBUTTON_LDAP_BIND_PASSWORD"
ATTRIBUTE_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]*\Z")
NAME_ATTRIBUTE_RE = re.compile(r"\(([A-Za-z][A-Za-z0-9-]*)=\{user\}\)")


@dataclass
class Ldap:
    url: list[str] = field(default_factory=list)
    starttls: bool = False
    ca_file: str = ""
    bind_dn: str = ""
    bind_password: str = field(default="", repr=False)  # resolved at load: jobs.ini, the file, or the env
    bind_password_file: str = ""
    user_base: str = ""
    user_filter: str = "(uid={user})"
    group_base: str = ""
    group_filter: str = "(member={dn})"
    groups_attribute: str = ""  # e.g. memberOf: groups read from the user's entry instead of a search
    timeout: float = 5.0

    @property
    def name_attribute(self) -> str | None:
        """The attribute the user filter matches the name against (`uid` in `(uid={user})`): its
        value in the directory, not the typed spelling, becomes the Pushbutton user name."""
        found = NAME_ATTRIBUTE_RE.search(self.user_filter)
        return found.group(1) if found else None


def dn_key(dn: str) -> tuple:
    """A DN as a comparable value: attribute names and values case-insensitive, escapes undone,
    spaces around separators ignored, multi-valued RDNs in any order. ValueError if not a DN."""
    return _dn_key(dn.strip())


def dn_keys(dns) -> set[tuple]:
    """`dn_key` of each; what is not a DN (an attribute holding plain names) is left out."""
    keys = set()
    for dn in dns:
        with contextlib.suppress(ValueError):
            keys.add(dn_key(dn))
    return keys


@functools.lru_cache(maxsize=4096)
def _dn_key(dn: str) -> tuple:
    from ldap3.core.exceptions import LDAPInvalidDnError
    from ldap3.utils.dn import parse_dn

    try:
        parts = parse_dn(dn, strip=True)
    except LDAPInvalidDnError as exc:
        raise ValueError(f"{dn!r} is not a DN ({exc})") from None
    rdns, rdn = [], []
    for attr, value, sep in parts:
        rdn.append((attr.lower(), _unescape(value).strip().casefold()))
        if sep != "+":
            rdns.append(tuple(sorted(rdn)))
            rdn = []
    return tuple(rdns)


def _unescape(value: str) -> str:
    out, i = bytearray(), 0
    while i < len(value):
        if value[i] == "\\" and re.fullmatch(r"[0-9A-Fa-f]{2}", value[i + 1:i + 3]):
            out += bytes.fromhex(value[i + 1:i + 3])
            i += 3
        else:
            i += value[i] == "\\"
            out += value[i:i + 1].encode()
            i += 1
    return out.decode("utf-8", "replace")


def _url(raw: str) -> str:
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme.lower() not in ("ldap", "ldaps") or not parts.hostname or port == 0:
        raise ValueError(f"{raw!r} is not an ldap:// or ldaps:// URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{raw!r}: only ldap[s]://HOST[:PORT] (base and filter are keys of their own)")
    return f"{parts.scheme.lower()}://{parts.netloc}"


def _filter(raw: str, placeholders: tuple[str, ...]) -> str:
    """A search filter with its placeholders: one parenthesised filter that ldap3 can parse."""
    from ldap3.core.exceptions import LDAPException
    from ldap3.operation.search import parse_filter

    text = raw.strip()
    if not any(p in text for p in placeholders):
        raise ValueError(f"{text!r} has no {' or '.join(placeholders)}")
    try:
        sample = text
        for p in placeholders:
            sample = sample.replace(p, "x")
        parse_filter(sample, None, auto_escape=False, auto_encode=True, validator=None, check_names=False)
    except (LDAPException, IndexError, ValueError) as exc:
        raise ValueError(f"{text!r} is not an LDAP filter ({exc})") from None
    if not (text.startswith("(") and text.endswith(")")):
        raise ValueError(f"{text!r} is not an LDAP filter: it must be in parentheses")
    return text


class LdapChecks:
    """The reader's `ldap_*` keys of `[pushbutton]`, and the DNs of `[team:NAME] ldap_groups`."""

    def ldap_setting(self, section: str, key: str, raw: str, ldap: Ldap) -> None:
        from server.catalog_values import parse_bool, positive_duration

        name = key[len("ldap_"):]
        if name == "url":  # several: a pool, tried in order (failover)
            items = [u.strip() for u in re.split(r"[,\s]+", raw) if u.strip()]
            ldap.url = [u for u in (self.convert(section, key, item, _url) for item in items) if u]
        elif name == "starttls":
            ldap.starttls = self.convert(section, key, raw, parse_bool, False)
        elif name == "timeout":
            ldap.timeout = self.convert(section, key, raw, positive_duration, 5.0)
        elif name in ("ca_file", "bind_password_file"):
            path = (self.path.parent / os.path.expanduser(raw.strip())).resolve()
            try:
                with open(path, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
            except OSError as exc:
                self.problem(section, key, f"cannot read {str(path)!r}: {exc.strerror}")
                return
            if name == "ca_file" and "-----BEGIN CERTIFICATE-----" not in text:
                self.problem(section, key, f"{str(path)!r} holds no PEM certificate")
            elif name == "bind_password_file" and not text.strip("\r\n"):
                self.problem(section, key, f"{str(path)!r} is empty")
            else:
                setattr(ldap, name, str(path))
                if name == "bind_password_file":
                    ldap.bind_password = text.strip("\r\n")
        elif name in ("bind_dn", "user_base", "group_base"):
            value = self.convert(section, key, raw, lambda v: dn_key(v) and v.strip(), "")
            setattr(ldap, name, value)
        elif name == "user_filter":
            ldap.user_filter = self.convert(section, key, raw, lambda v: _filter(v, ("{user}",)), ldap.user_filter)
        elif name == "group_filter":
            ldap.group_filter = self.convert(section, key, raw, lambda v: _filter(v, ("{dn}", "{user}")),
                                             ldap.group_filter)
        elif name == "groups_attribute":
            if ATTRIBUTE_RE.match(raw.strip()):
                ldap.groups_attribute = raw.strip()
            else:
                self.problem(section, key, f"{raw.strip()!r} is not an attribute name")
        elif name == "bind_password":
            ldap.bind_password = raw.strip()
            self.warning(section, key, "the bind password sits in jobs.ini, which is copied around: put it in "
                         f"a file (ldap_bind_password_file) or the environment ({PASSWORD_ENV})")

    def check_ldap(self, auth: str, ldap: Ldap, teams: dict | None = None) -> None:
        for team in (teams or {}).values():
            for dn in team.ldap_groups:
                self.convert(f"team:{team.name}", "ldap_groups", dn, dn_key)
        if auth != "ldap":
            return
        for key in ("url", "user_base"):
            if not getattr(ldap, key):
                self.problem("pushbutton", "auth", f"auth = ldap needs ldap_{key}")
        if self.has_key("ldap_bind_password") and self.has_key("ldap_bind_password_file"):
            self.problem("pushbutton", "ldap_bind_password", "set ldap_bind_password or ldap_bind_password_file, "
                         "not both")
        if not ldap.bind_password:
            ldap.bind_password = os.environ.get(PASSWORD_ENV, "")
        if ldap.bind_dn and not ldap.bind_password:
            self.problem("pushbutton", "ldap_bind_dn", "the bind DN needs its password: ldap_bind_password_file "
                         f"or the environment variable {PASSWORD_ENV}")
        if ldap.bind_password and not ldap.bind_dn:
            self.problem("pushbutton", "ldap_bind_dn", "a bind password is set but no ldap_bind_dn")
        if ldap.group_base and ldap.groups_attribute:
            self.problem("pushbutton", "ldap_groups_attribute", "set ldap_group_base (groups found by a search) or "
                         "ldap_groups_attribute (groups listed on the user's entry), not both")
        if self.has_key("ldap_group_filter") and not ldap.group_base:
            self.problem("pushbutton", "ldap_group_filter", "ldap_group_filter needs ldap_group_base")
        if ldap.name_attribute is None and self.has_key("ldap_user_filter"):
            self.warning("pushbutton", "ldap_user_filter", "no (ATTRIBUTE={user}) in the filter: the name as typed "
                         "becomes the user name, in whatever case it was typed")
        if ldap.starttls and ldap.url and all(u.startswith("ldaps://") for u in ldap.url):
            self.warning("pushbutton", "ldap_starttls", "ldaps:// is TLS already: ldap_starttls applies to ldap://")
        plain = [u for u in ldap.url if u.startswith("ldap://") and not _loopback(u)]
        if plain and not ldap.starttls:
            self.warning("pushbutton", "ldap_url", f"{plain[0]} without ldap_starttls: passwords would cross the "
                         "network in clear text; use ldaps:// or ldap_starttls = yes")

    def has_key(self, key: str) -> bool:
        return ("pushbutton", key) in self.lines.keys


def _loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in ("localhost", "127.0.0.1", "::1")
