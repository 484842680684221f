"""OpenID Connect sign-in (`auth = oidc`): the authorization code flow with PKCE, state and nonce.

`GET /auth/oidc/login` sends the browser to the provider with a fresh `state`, `nonce` and PKCE
challenge (S256). They stay on the server, bound to this browser by a short-lived HttpOnly cookie,
and are used once: `GET /auth/oidc/callback` takes them out whatever happens next, so a replayed,
forged or other browser's callback finds nothing. The code is exchanged with the client secret,
the ID token verified (oidc_client.py), the user named by `oidc_user_claim` (else `sub`) and their
groups read from `oidc_groups_claim`, from the ID token or else the userinfo endpoint. Then a local
session, as for a password, and the page; on any failure no session, and the page with
`#/signin?error=CODE`. `POST /auth/oidc/logout` ends the session and answers where to send the
browser to end the provider's too (its `end_session_endpoint`, if it has one).

The routes exist on every server (so the rights table lists them) and answer 400 unless
`auth = oidc`, as `POST /api/session` does where no password signs in. Calls to the provider run
in the threadpool, with timeouts.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlencode

from bottle import HTTPResponse, request

from server.auth import rules as R
from server.auth.methods import Claim, Method
from server.auth.oidc_client import OidcClient, ProviderError, TokenRefused
from server.auth.proxies import client_address, is_secure, mount_path, request_scheme
from server.auth.sessions import Sessions
from server.auth.users import token_hash
from server.catalog_access import USER_RE
from server.events import in_pool
from server.http_headers import cookie

log = logging.getLogger("pushbutton")

COOKIE = "pushbutton_oidc"  # binds a pending sign-in to the browser that started it
PENDING_FOR = 600.0  # seconds a sign-in may take at the provider
MAX_PENDING = 10_000  # pending sign-ins kept (the oldest go first): anonymous clients start them
MAX_ID_TOKENS = 10_000  # ID tokens kept for the provider's sign-out (id_token_hint)
MAX_NAME = 200
VERIFIED = {"email": "email_verified", "phone_number": "phone_number_verified"}  # OIDC Core 5.1
NEXT_RE = re.compile(r"#/[A-Za-z0-9/_.~%?=&+-]{0,500}\Z")  # where to land: one of the page's own views


@dataclass(frozen=True)
class Pending:
    browser: str  # SHA-256 of the binding cookie
    nonce: str
    verifier: str  # PKCE
    redirect_uri: str
    next: str
    expires: float


class SignInFailed(Exception):
    """No session: `code` goes to the page (#/signin?error=CODE), `reason` to the audit log."""

    def __init__(self, code: str, reason: str, user: str | None = None):
        super().__init__(reason)
        self.code, self.reason, self.user = code, reason, user


class OidcMethod(Method):
    name = "oidc"

    def __init__(self, authn):
        super().__init__(authn)
        self.settings = oidc = authn.catalog.settings.oidc
        if not (oidc.issuer and oidc.client_id and oidc.client_secret):
            raise ValueError("auth = oidc needs oidc_issuer, oidc_client_id and a client secret")
        self.client = OidcClient(oidc.issuer, oidc.client_id, oidc.client_secret)
        self.scopes = oidc.scopes  # openid among them (catalog_oidc.py)
        self.pending: OrderedDict[str, Pending] = OrderedDict()  # by state
        self.id_tokens: OrderedDict[str, str] = OrderedDict()  # by the session's hash

    # -- GET /auth/oidc/login ----------------------------------------------------------------

    def login(self, environ: dict, next_hash: str) -> tuple[str, str]:
        """(the provider's authorization URL, the binding cookie's Set-Cookie value)."""
        meta = in_pool(self.client.metadata)  # ProviderError if unreachable
        browser = _binding(environ, self.pending) or secrets.token_urlsafe(32)
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        redirect_uri = _app_url(environ) + "auth/oidc/callback"
        now = time.time()
        self._prune(now)
        self.pending[state] = Pending(token_hash(browser), nonce, verifier, redirect_uri,
                                      next_hash if NEXT_RE.match(next_hash) else "", now + PENDING_FOR)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = urlencode({"response_type": "code", "client_id": self.settings.client_id, "scope": self.scopes,
                           "redirect_uri": redirect_uri, "state": state, "nonce": nonce,
                           "code_challenge": challenge, "code_challenge_method": "S256"})
        endpoint = meta["authorization_endpoint"]
        cookie = (f"{COOKIE}={browser}; Path={mount_path(environ)}auth/oidc/; Max-Age={int(PENDING_FOR)}; "
                  f"HttpOnly; SameSite=Lax" + ("; Secure" if is_secure(environ) else ""))
        return endpoint + ("&" if "?" in endpoint else "?") + query, cookie

    def _prune(self, now: float) -> None:
        while self.pending and (len(self.pending) >= MAX_PENDING or next(iter(self.pending.values())).expires < now):
            self.pending.popitem(last=False)

    # -- GET /auth/oidc/callback -------------------------------------------------------------

    def callback(self, environ: dict, query) -> tuple[Claim, str, str]:
        """(who signed in, the ID token, where the page should go), or SignInFailed."""
        pending = self.pending.pop(query.get("state") or "", None)  # used once, whatever follows
        browser = _binding(environ, None)
        if pending is None or pending.expires < time.time():
            raise SignInFailed("state", "unknown, used or expired state")
        if browser is None or not secrets.compare_digest(token_hash(browser), pending.browser):
            raise SignInFailed("state", "the sign-in was started by another browser")
        if query.get("error"):
            raise SignInFailed("provider", f"the provider answered {query.get('error')[:100]!r}")
        meta = in_pool(self.client.metadata)
        if query.get("iss") and query.get("iss") != meta["issuer"]:  # RFC 9207: a mix-up
            raise SignInFailed("token", "the answer names another issuer")
        code = query.get("code") or ""
        if not code:
            raise SignInFailed("provider", "no authorization code")
        self.client.client_secret = self.authn.rights.catalog.settings.oidc.client_secret  # rotated by a reload
        try:
            tokens = in_pool(self.client.exchange, code, pending.redirect_uri, pending.verifier, pending.nonce)
            claims = tokens.claims
            want = (self.settings.user_claim, self.settings.groups_claim, *_proof(self.settings.user_claim))
            if any(claim not in claims for claim in want):
                info = in_pool(self.client.userinfo, tokens.access_token, claims["sub"])
                claims = {**{k: v for k, v in info.items() if k in want}, **claims}
        except TokenRefused as exc:
            raise SignInFailed("token", str(exc)) from None
        return Claim(self._name(claims), _groups(claims.get(self.settings.groups_claim))), tokens.id_token, pending.next

    def _name(self, claims: dict) -> str:
        name = claims.get(self.settings.user_claim)
        if name is None:
            name = claims.get("sub")
        if not isinstance(name, str) or len(name) > MAX_NAME or not USER_RE.match(name):
            raise SignInFailed("user", f"claim {self.settings.user_claim!r} is not a user name: {str(name)[:100]!r}")
        for proof in _proof(self.settings.user_claim):
            if claims.get(proof) not in (True, "true"):  # some providers send the string
                raise SignInFailed("user", f"the provider has not verified {self.settings.user_claim} {name[:100]!r}")
        return name

    # -- sign-out -----------------------------------------------------------------------------

    def keep_id_token(self, session_value: str, id_token: str) -> None:
        self.id_tokens[token_hash(session_value)] = id_token
        while len(self.id_tokens) > MAX_ID_TOKENS:
            self.id_tokens.popitem(last=False)

    def end_session_url(self, environ: dict, session_value: str | None) -> str | None:
        """Where the browser ends the provider's session and comes back to the page, if anywhere."""
        id_token = self.id_tokens.pop(token_hash(session_value), None) if session_value else None
        try:
            endpoint = in_pool(self.client.metadata).get("end_session_endpoint")
        except ProviderError:
            return None
        if not isinstance(endpoint, str) or not endpoint:
            return None
        params = {"client_id": self.settings.client_id, "post_logout_redirect_uri": _app_url(environ)}
        if id_token:
            params["id_token_hint"] = id_token
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)


def _binding(environ: dict, known: OrderedDict | None) -> str | None:
    """The browser's binding cookie (when `known` is given, only one a pending sign-in uses, so
    that two tabs signing in at once do not undo each other)."""
    value = cookie(environ, COOKIE)
    if value and known is not None:
        digest = token_hash(value)
        return value if any(p.browser == digest for p in known.values()) else None
    return value or None


def _proof(claim: str) -> tuple[str, ...]:
    """The claim that says the provider verified `claim`: an e-mail address or phone number a user
    may set themselves would otherwise name whoever they claim to be (an admin listed by e-mail)."""
    return (VERIFIED[claim],) if claim in VERIFIED else ()


def _groups(value) -> frozenset[str]:
    """A groups claim: a list of names (Keycloak, Okta, Entra ID's object ids), or one name."""
    if isinstance(value, str):
        return frozenset([value]) if value else frozenset()
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str) and v)
    return frozenset()


def _app_url(environ: dict) -> str:
    """Where the client reached the page: scheme (a trusted proxy's too), Host, base path; ends in /."""
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
    return f"{request_scheme(environ)}://{host}{mount_path(environ)}"


def _page(environ: dict, fragment: str = "") -> str:
    return mount_path(environ) + fragment


def add_oidc_routes(app, authn, answer) -> None:
    """/auth/oidc/login, /auth/oidc/callback and /auth/oidc/logout (400 unless auth = oidc)."""

    def method() -> OidcMethod:
        found = getattr(authn, "method", None)
        if not isinstance(found, OidcMethod):
            raise answer(400, {"error": f"this server signs in with auth = {authn.catalog.settings.auth}, "
                                        "not OpenID Connect"})
        return found

    def audit(action: str, user: str | None, ok: bool, detail: dict) -> None:
        if authn.audit is not None:
            authn.audit.record(action, user, ok=ok, detail=detail, address=client_address(request.environ))

    def redirect(location: str, *cookies: str) -> HTTPResponse:
        res = HTTPResponse(status=303, headers={"Location": location, "Cache-Control": "no-store"})
        for value in cookies:
            res.add_header("Set-Cookie", value)
        return res

    @app.get("/auth/oidc/login", rule=R.PUBLIC)
    def oidc_login():
        oidc, environ = method(), request.environ
        try:
            location, cookie = oidc.login(environ, request.query.get("next") or "")
        except ProviderError as exc:
            log.warning("OpenID provider unavailable: %s", exc)
            return redirect(_page(environ, "#/signin?error=unavailable"))
        return redirect(location, cookie)

    @app.get("/auth/oidc/callback", rule=R.PUBLIC)
    def oidc_callback():
        oidc, environ = method(), request.environ
        try:
            claim, id_token, next_hash = oidc.callback(environ, request.query)
        except (SignInFailed, ProviderError) as exc:
            failed = exc if isinstance(exc, SignInFailed) else SignInFailed("unavailable", str(exc))
            log.warning("OpenID Connect sign-in refused: %s", failed.reason)
            audit("signin.failed", failed.user, False, {"method": "oidc", "reason": failed.reason[:200]})
            return redirect(_page(environ, f"#/signin?error={failed.code}"))
        _, value, cookie = authn.open_session(environ, claim)
        oidc.keep_id_token(value, id_token)
        return redirect(_page(environ, next_hash), cookie)

    @app.post("/auth/oidc/logout", rule=R.SIGNED_IN)
    def oidc_logout():
        oidc, environ = method(), request.environ
        user = R.current_user()
        url = oidc.end_session_url(environ, Sessions.cookie_value(environ)) if user.method == "oidc" else None
        res = answer(200, {"end_session": url})
        res.add_header("Set-Cookie", authn.sign_out(environ, user))
        res.set_header("Cache-Control", "no-store")
        return res
