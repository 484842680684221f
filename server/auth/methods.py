"""Sign-in methods, one per `[pushbutton] auth` value, behind one small interface.

A method may recognise a request on its own (`identify`: the per-launch token, a proxy's header)
and may check a password (`sign_in`: local accounts; LDAP in the next issue), which then opens a
server-side session. OpenID Connect signs in through redirects instead: its routes
(server/auth/oidc.py) exist on every server, so the rights table lists them, and open a session
through `Authenticator.open_session`. The `Authenticator` tries personal API tokens and sessions
first, whatever the method, so a new method adds a class here and a line in `METHODS`, and
touches nothing else.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

from server.auth.identity import User, os_user
from server.auth.passwords import OffHub, dummy_hash
from server.auth.proxies import from_proxy
from server.auth.users import Users
from server.catalog import Catalog
from server.catalog_access import USER_RE

log = logging.getLogger("pushbutton")


@dataclass(frozen=True)
class Claim:
    """Who a method says is signing in: a name, and the groups an identity provider sent."""

    name: str
    groups: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Wrong:
    """A refused password for a name the method found, as it spells it (a directory's `olga` for
    the `ｏlga` typed): failures count against that name too, whichever spelling was typed."""

    name: str


class Unavailable(Exception):
    """The directory or identity provider did not answer: no sign-in (503), whatever the password."""


class Method:
    name = ""
    uses_password = False  # POST /api/session {"user", "password"} signs in with this method

    def __init__(self, authn):
        self.authn = authn  # the Authenticator: catalog, rights, guard, users, hasher

    def identify(self, environ: dict) -> User | None:
        """The user a request is by this method's own credentials, or None."""
        return None

    def sign_in(self, name: str, password: str) -> Claim | Wrong | None:
        """Check a password (from a greenlet: block only through the threadpool); None or Wrong if wrong."""
        raise NotImplementedError


class TokenMethod(Method):
    """The per-launch token (the desktop window, single-user headless): its holder is the OS user,
    an admin."""

    name = "token"

    def identify(self, environ: dict) -> User | None:
        guard = self.authn.guard
        if guard.valid_token(guard.token_of(environ)):
            return User(os_user(), admin=True, method="token")
        return None


class LocalMethod(Method):
    """Accounts with argon2id password hashes in the data dir (`pushbutton users ...`)."""

    name = "local"
    uses_password = True

    def __init__(self, authn):
        super().__init__(authn)
        self.users: Users = authn.users
        self.hasher: OffHub = authn.hasher
        dummy_hash()  # made now, so the first unknown user costs what a known one does

    def sign_in(self, name: str, password: str) -> Claim | None:
        stored = self.users.password_hash(name) if USER_RE.match(name) else None
        verdict = self.hasher.verify(stored, password)
        if not verdict.ok:
            return None
        if verdict.rehash:
            self.users.set_hash(name, verdict.rehash, end_sessions=False)
        return Claim(name)


class HeaderMethod(Method):
    """A reverse proxy signed the user in and names them in `user_header` (groups, comma-separated,
    in `groups_header`). Believed only from a trusted proxy (`server.auth.proxies.from_proxy`: a
    socket peer in `trusted_proxies`, with the proxy secret when one is set): from anywhere else
    the header is ignored and the request is anonymous. An empty or odd name is anonymous too,
    never a fallback identity."""

    name = "header"

    def __init__(self, authn):
        super().__init__(authn)
        settings = authn.catalog.settings
        if not settings.trusted_proxies:
            raise ValueError("auth = header needs trusted_proxies")
        self.user_key = _environ_key(settings.user_header or "X-Forwarded-User")
        self.groups_key = _environ_key(settings.groups_header) if settings.groups_header else None

    def identify(self, environ: dict) -> User | None:
        if not from_proxy(environ):  # the socket peer (nothing forwarded) and the proxy secret
            return None
        name = environ.get(self.user_key, "").strip()
        if not name:
            return None
        if not USER_RE.match(name):  # a comma: the header came twice (gevent joins them)
            log.warning("ignored a user header that is not one user name: %r", name[:100])
            return None
        raw = environ.get(self.groups_key, "") if self.groups_key else ""
        groups = frozenset(g.strip() for g in raw.split(",") if g.strip())
        return self.authn.rights.user_for(name, groups, "header")


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


from server.auth.ldap import LdapMethod  # noqa: E402 - it subclasses Method, above
from server.auth.oidc import OidcMethod  # noqa: E402 - it subclasses Method, above

METHODS: dict[str, type[Method]] = {"token": TokenMethod, "local": LocalMethod, "header": HeaderMethod,
                                    "ldap": LdapMethod, "oidc": OidcMethod}


def for_the_window(catalog: Catalog) -> Catalog:
    """The catalog as the desktop window serves it: `auth = token` whatever jobs.ini says. The
    window serves only the person at this machine (loopback, a secret they never see), who runs
    the jobs as their own OS account anyway: they are its one user, an admin, as before teams.
    It serves plain HTTP at the root: the webview would not trust the team server's certificate."""
    window = {"auth": "token", "certfile": None, "keyfile": None, "base_path": ""}
    if all(getattr(catalog.settings, key) == value for key, value in window.items()):
        return catalog
    return dataclasses.replace(catalog, settings=dataclasses.replace(catalog.settings, **window))
