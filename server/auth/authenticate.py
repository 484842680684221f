"""Who a request is: a personal API token, else a session cookie, else the sign-in method's own.

`identify` runs once per request (the app's before_request hook) and its User goes into the
environ for the rules. Rights are worked out from jobs.ini at that moment (`Rights.user_for`), so
a token or session never carries rights of its own: edit jobs.ini and they follow.
`sign_in` is POST /api/session: the failure limiter first (no hashing for a locked name or
address), then the method's password check off the hub, then a new session.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from server.auth.guard import Guard
from server.auth.identity import User, describe_source, identity_source
from server.auth.limits import FailureLimiter
from server.auth.methods import METHODS, Claim, Method, Unavailable, Wrong
from server.auth.passwords import Busy, OffHub
from server.auth.proxies import client_address
from server.auth.rights import Rights
from server.auth.sessions import Sessions
from server.auth.users import TOKEN_PREFIX, Users
from server.catalog import Catalog
from server.store import Store

MAX_PASSWORD = 4096  # characters; argon2 takes any length, a request body need not
STALE_LOG_EVERY = 600.0  # seconds: a stale token refused again and again is logged this often

log = logging.getLogger("pushbutton")


@dataclass
class Refused(Exception):
    """A sign-in that did not happen: the status, the message, and Retry-After if any."""

    status: int
    message: str
    retry_after: int | None = None


class Authenticator:
    def __init__(self, catalog: Catalog, store: Store, rights: Rights, guard: Guard, audit=None):
        settings = catalog.settings
        self.catalog, self.store, self.rights, self.guard, self.audit = catalog, store, rights, guard, audit
        self.users = Users(store)
        self.sessions = Sessions(store, settings.session_idle, settings.session_max)
        self.limiter = FailureLimiter()
        self.hasher = OffHub()
        self.method: Method = METHODS[settings.auth](self)
        self.source = identity_source(settings)  # what names users here: a token or session must be of it
        self._stale_logged: dict[int, float] = {}
        if settings.auth != "token":  # the window takes no personal token: it adopts none
            self.users.adopt_tokens(self.source)
        self.revoked = lambda: None  # called when a credential ends here: open streams check theirs

    def identify(self, environ: dict, touch: bool = True) -> User | None:
        """`touch=False`: a check that is no use of the credential (its session's idle time runs on)."""
        bearer = _bearer(environ)
        if bearer and bearer.startswith(TOKEN_PREFIX) and not self.guard.valid_token(bearer):
            owner = self.users.token_owner(bearer, touch)
            if owner is None:  # revoked: at once
                return None
            if owner[2] != self.source:  # another source may call someone else by that name
                self._log_stale(*owner)
                return None
            return self.rights.user_for(owner[1], (), "api-token")
        session = self.sessions.get(Sessions.cookie_value(environ), touch)
        if session is not None and session.source == self.source:  # not of an earlier `auth`, directory, issuer
            return self.rights.user_for(session.user, session.groups, session.method)
        return self.method.identify(environ)

    def _log_stale(self, token_id: int, user: str, source: str | None) -> None:
        now = time.monotonic()
        if now - self._stale_logged.get(token_id, -STALE_LOG_EVERY) >= STALE_LOG_EVERY:
            self._stale_logged[token_id] = now
            log.warning("refused API token %d of %r: it was made under %s, and this server signs in with %s, "
                        "where that name may be someone else (`pushbutton users tokens %s` lists it as stale: "
                        "revoke it and make a new one)", token_id, user, describe_source(source),
                        describe_source(self.source), user)

    def still(self, environ: dict, user: User | None) -> bool:
        """Whether the credential a stream was opened with still names its user: signed out, a token
        revoked, a session expired or ended by `users passwd`/`remove` end the stream (server/sse.py)."""
        now = self.identify(environ, touch=False)
        return user is None or (now is not None and now.name == user.name)

    # -- POST and DELETE /api/session --------------------------------------------------------

    def sign_in(self, environ: dict, name: str, password: str) -> tuple[User, str]:
        """(the user, the Set-Cookie value), or raises Refused."""
        if not self.method.uses_password:
            raise Refused(400, f"this server signs in with auth = {self.method.name}, not a password")
        if len(password) > MAX_PASSWORD or len(name) > MAX_PASSWORD:
            raise Refused(400, "user name or password too long")
        address = client_address(environ)
        wait = self.limiter.retry_after(name, address)
        if wait:
            self._audit("signin.failed", name, environ, ok=False, detail={"reason": "too many failed sign-ins"})
            raise Refused(429, "too many failed sign-ins: try again later", wait)
        try:
            claim: Claim | Wrong | None = self.method.sign_in(name, password)
        except Busy:
            raise Refused(503, "too many sign-ins at once: try again in a moment", 1) from None
        except Unavailable as exc:  # not the user's fault: not counted as a failure, but audited
            self._audit("signin.failed", name, environ, ok=False, detail={"method": self.method.name,
                                                                          "reason": str(exc)})
            raise Refused(503, str(exc), 5) from None
        if not isinstance(claim, Claim):  # a locked directory name is a 401 too: no hint the password was right
            self.limiter.failed(name, address, claim.name if isinstance(claim, Wrong) else None)
            self._audit("signin.failed", name, environ, ok=False, detail={"method": self.method.name})
            raise Refused(401, "wrong user name or password")
        self.limiter.succeeded(name, claim.name)
        user, _, cookie = self.open_session(environ, claim)
        return user, cookie

    def open_session(self, environ: dict, claim: Claim) -> tuple[User, str, str]:
        """A session for whom the method vouched (a password checked, an ID token verified), with
        the provider's groups; audited. (the user, the session's cookie value, its Set-Cookie)."""
        self.sessions.delete(Sessions.cookie_value(environ))  # a new id at every sign-in
        value = self.sessions.create(claim.name, self.method.name, self.source, claim.groups)
        self._audit("signin", claim.name, environ, detail={"method": self.method.name})
        user = self.rights.user_for(claim.name, claim.groups, self.method.name)
        return user, value, self.sessions.set_cookie(value, environ)

    def sign_out(self, environ: dict, user: User | None) -> str:
        """End the request's session (the row goes: the cookie is dead everywhere); the
        Set-Cookie value that clears it in the browser."""
        self.sessions.delete(Sessions.cookie_value(environ))
        self.revoked()
        if user is not None:
            self._audit("signout", user.name, environ, detail={"method": user.method})
        return self.sessions.clear_cookie(environ)

    def _audit(self, action: str, name: str, environ: dict, ok: bool = True, detail: dict | None = None) -> None:
        if self.audit is not None:
            self.audit.record(action, name, ok=ok, detail=detail, address=client_address(environ))


def _bearer(environ: dict) -> str | None:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else None
