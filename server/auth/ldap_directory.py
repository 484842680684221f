"""One LDAP sign-in against the directory, with ldap3 (pure Python: works in the PyInstaller builds).

Blocking: the LDAP method (ldap.py) runs `check_password` on the hub's threadpool. Every socket
has `ldap_timeout` for connecting and for each answer, so a directory that is down or hung ends
the call with `DirectoryDown` in bounded time. The steps: bind as the service account (or
anonymously), search the user (exactly one entry, the name escaped so it is never filter syntax),
bind as that entry's DN with the password (an unknown name: a DN that names no entry, the same
work, so the answer's timing does not tell which names exist), then read its groups (a search with the DN or name
escaped, or an attribute of the entry such as `memberOf`). TLS (ldaps:// or StartTLS) always
verifies the certificate and host name, against `ldap_ca_file` or the system's CAs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import secrets
import ssl
from dataclasses import dataclass

from ldap3 import ANONYMOUS, NO_ATTRIBUTES, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException, LDAPStartTLSError
from ldap3.utils.conv import escape_filter_chars

from server.catalog_ldap import Ldap

log = logging.getLogger("pushbutton")

OK_SEARCH = ("success", "sizeLimitExceeded", "noSuchObject")  # the last two: not one user, a failed sign-in
REFUSED = ("invalidCredentials", "unwillingToPerform", "inappropriateAuthentication")  # a clear no
UNABLE = ("busy", "unavailable")  # this server cannot say: the next one
PLACEHOLDER_RE = re.compile(r"\{(user|dn)\}")
DECOY = "pushbutton-no-such-user-" + secrets.token_hex(8)  # the RDN value of decoy_dn: no entry has it


class DirectoryDown(Exception):
    """The directory did not answer, answered with an error, or its certificate was not trusted."""


@dataclass(frozen=True)
class Found:
    """The user's entry: its name as the directory spells it, and whether the password was taken."""

    name: str
    groups: frozenset[str] = frozenset()  # group DNs
    signed_in: bool = True  # False: a wrong password, or not tried (that name is locked)


def fill(template: str, **values: str) -> str:
    """A filter with its placeholders replaced in one pass by escaped values: `*`, `(`, `)`, `\\` and
    NUL in a name or DN are matched literally, never read as filter syntax."""
    return PLACEHOLDER_RE.sub(lambda m: escape_filter_chars(values[m.group(1)]), template)


def servers(cfg: Ldap) -> list[Server]:
    """The servers of `ldap_url`, in order: each connection takes the first that answers (failover)."""
    tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=cfg.ca_file or None)
    return [Server(url, use_ssl=url.startswith("ldaps://"), tls=tls, connect_timeout=cfg.timeout, get_info=None)
            for url in cfg.url]


def check_password(cfg: Ldap, name: str, password: str, locked=lambda canonical: False) -> Found | None:
    """The user and their groups if the directory takes the password; `signed_in=False` if it does
    not, or `locked(name as the directory spells it)` says not to try; None if the name is not
    exactly one entry; DirectoryDown if it cannot say. The directory matches names loosely
    (`ｏlga` finds olga), so only its own spelling can say whether a name is locked."""
    if not password:  # an empty password is an unauthenticated bind: many directories accept it
        return None
    pool = servers(cfg)
    service = _open(cfg, pool, cfg.bind_dn or None, cfg.bind_password or None)
    try:
        if cfg.bind_dn and not service.bound:
            raise DirectoryDown(f"the directory refused the service account ({service.result.get('description')})")
        entry = _the_user(cfg, service, name)
        canonical = _canonical(cfg, entry, name) if entry is not None else None
        if entry is not None and canonical is None:
            log.warning("LDAP sign-in: the user's entry has no %s, or several and none is the name typed: refused",
                        cfg.name_attribute)
        tried = canonical is not None and not locked(canonical)
        # No user to try (unknown, several, locked): bind a DN that names no entry, so every refusal
        # costs the same connection and bind as a wrong password and none tells which names exist.
        pool.sort(key=lambda server: server is not service.server)  # the user's bind where they were found
        user = _open(cfg, pool, entry["dn"] if tried else decoy_dn(cfg), password, decoy=not tried)
        try:
            if canonical is None:
                return None
            if not (tried and user.bound):
                return Found(canonical, signed_in=False)
        finally:
            _close(user)
        if cfg.groups_attribute:
            groups = _values(entry["attributes"].get(cfg.groups_attribute))
        elif cfg.group_base:
            groups = _search(cfg, service, cfg.group_base, fill(cfg.group_filter, dn=entry["dn"], user=canonical))
            groups = [g["dn"] for g in groups]
        else:
            groups = []
        return Found(canonical, frozenset(groups))
    finally:
        _close(service)


def decoy_dn(cfg: Ldap) -> str:
    """A DN under the user base that names no entry: an unknown name's bind goes there."""
    return f"cn={DECOY},{cfg.user_base}"


def _open(cfg: Ldap, pool: list[Server], user: str | None, password: str | None, decoy: bool = False) -> Connection:
    """A connection to the first server that answers, TLS started if asked, bound as `user` (or
    refused: `.bound` says). A server that refuses, times out, fails TLS or is busy: the next.
    `decoy`: any answer but busy or unavailable will do (whatever the directory says of a DN with no
    entry: invalidCredentials from OpenLDAP and AD, noSuchObject or a referral from others)."""
    failures = []
    for server in pool:
        conn = Connection(server, user=user, password=password, authentication=SIMPLE if user else ANONYMOUS,
                          receive_timeout=math.ceil(cfg.timeout),  # whole seconds: ldap3 packs it into SO_RCVTIMEO
                          read_only=True, raise_exceptions=False, auto_referrals=False, auto_escape=False,
                          auto_encode=True, check_names=False, return_empty_attributes=False)
        try:
            conn.open()
            if cfg.starttls and not server.ssl:
                conn.start_tls()
            conn.bind()
        except (LDAPException, OSError) as exc:
            _close(conn)
            failures.append(f"{server.name}: {'StartTLS: ' if isinstance(exc, LDAPStartTLSError) else ''}"
                            f"{_reason(exc)}")
            continue
        answer = conn.result.get("description")
        if conn.bound or answer in REFUSED or (decoy and answer and answer not in UNABLE):
            return conn
        _close(conn)  # busy, unavailable, a protocol error: this server cannot say yes or no
        failures.append(f"{server.name}: answered {conn.result.get('description') or 'nothing'}")
    raise DirectoryDown("; ".join(failures))


def _the_user(cfg: Ldap, conn: Connection, name: str) -> dict | None:
    attributes = [a for a in (cfg.name_attribute, cfg.groups_attribute) if a]
    found = _search(cfg, conn, cfg.user_base, fill(cfg.user_filter, user=name), attributes, size_limit=2)
    if len(found) != 1:
        if len(found) > 1:
            log.warning("LDAP sign-in: the user filter matches more than one entry for one name: refused")
        return None
    return found[0]


def _search(cfg: Ldap, conn: Connection, base: str, query: str, attributes=None, size_limit: int = 0) -> list[dict]:
    try:
        conn.search(base, query, SUBTREE, attributes=attributes or NO_ATTRIBUTES, size_limit=size_limit,
                    time_limit=max(1, int(cfg.timeout)))
    except (LDAPException, OSError) as exc:
        raise DirectoryDown(_reason(exc)) from None
    if conn.result.get("description") not in OK_SEARCH:
        raise DirectoryDown(f"the directory answered {conn.result.get('description') or 'nothing'}")
    return [r for r in conn.response or [] if r.get("type") == "searchResEntry"]


def _canonical(cfg: Ldap, entry: dict, typed: str) -> str | None:
    """The user name: the directory's value of the name attribute (`uid` in `(uid={user})`), not
    what was typed. `Alice` typed, `alice` stored: alice. With `(|(uid={user})(mail={user}))`,
    `bob@acme.test` typed is bob too: one person is one user, who cannot approve their own run
    under another name. None when the entry has none, or several and none is the one typed."""
    attribute = cfg.name_attribute
    if not attribute:  # `check` warns: the name as typed is the user name
        return typed
    values = _values(entry["attributes"].get(attribute))
    folded = typed.strip().casefold()
    same = [v for v in values if v.strip().casefold() == folded]
    if same or len(values) == 1:
        return (same or values)[0]
    return None


def _close(conn: Connection) -> None:
    with contextlib.suppress(LDAPException, OSError):  # a socket that failed cannot say goodbye
        conn.unbind()


def _values(raw) -> list[str]:
    if raw is None:
        return []
    return [str(v) for v in (raw if isinstance(raw, list) else [raw])]


def _reason(exc: BaseException) -> str:
    """Why, in words for the log: ldap3's messages name the socket error, never a password."""
    while exc.args and isinstance(exc.args[0], (BaseException, tuple)):  # ldap3 nests the cause in args
        exc = exc.args[0] if isinstance(exc.args[0], BaseException) else Exception(*exc.args[0])
    text = (str(exc.args[0]) if exc.args else "") or type(exc).__name__
    return ("timed out: " if "timed out" in text.lower() else "") + text[:300]
