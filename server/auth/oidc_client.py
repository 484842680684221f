"""Talking to an OpenID provider: discovery, the token exchange, the ID token's verification, userinfo.

Blocking (httpx, with timeouts): the sign-in method calls it through the hub's threadpool. The
provider's metadata and keys (JWKS) are cached for an hour; a provider that did not answer is not
asked again for RETRY_AFTER, so sign-in attempts cannot pile threads onto a dead one. An ID token
signed with a key id the cache does not know makes one refetch of the keys (the provider rotated
them), never more per token.
The ID token is verified with joserfc: its signature against the provider's keys (asymmetric
algorithms only: `none` and HMAC are refused), then issuer, audience, expiry (a minute of leeway
for clock skew), issue time and the nonce this sign-in sent.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

if TYPE_CHECKING:  # joserfc (and cryptography under it) is imported where used: only auth = oidc needs it,
    from joserfc.jwk import KeySet  # and the window build leaves both out (build/pushbutton.spec)

log = logging.getLogger("pushbutton")
logging.getLogger("httpx").setLevel(logging.WARNING)  # not a log line per call to the provider

CACHE_FOR = 3600.0  # seconds the discovery document and the keys are kept
RETRY_AFTER = 10.0  # seconds after a failed discovery before asking again (sign-ins meanwhile fail at once)
TIMEOUT = 10.0  # seconds for one call to the provider
LEEWAY = 60  # seconds of clock skew allowed on exp and iat
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519")


class ProviderError(Exception):
    """The provider is unreachable or answered something unusable: no sign-in."""


class TokenRefused(Exception):
    """The ID token (or userinfo) failed a check: no sign-in. The message names which."""


@dataclass(frozen=True)
class Tokens:
    id_token: str
    access_token: str
    claims: dict[str, Any]  # the verified ID token's


class OidcClient:
    def __init__(self, issuer: str, client_id: str, client_secret: str):
        self.issuer = issuer.rstrip("/")
        self.client_id, self.client_secret = client_id, client_secret
        self.http = httpx.Client(timeout=TIMEOUT, follow_redirects=False, headers={"Accept": "application/json"})
        self._lock = threading.Lock()
        self._meta: dict | None = None
        self._meta_at = 0.0
        self._failed_at = -RETRY_AFTER
        self._keys: KeySet | None = None
        self._keys_at = 0.0

    # -- discovery and keys -------------------------------------------------------------------

    def metadata(self) -> dict:
        """The provider's discovery document (cached; kept if a refresh fails)."""
        with self._lock:
            meta, fresh = self._meta, time.monotonic() - self._meta_at < CACHE_FOR
        if meta is not None and fresh:
            return meta
        if meta is None and time.monotonic() - self._failed_at < RETRY_AFTER:  # no thread waits on a dead one
            raise ProviderError("the provider did not answer a moment ago")
        try:
            found = self._get_json(f"{self.issuer}/.well-known/openid-configuration")
            for key in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(found.get(key), str):
                    raise ProviderError(f"the discovery document has no {key}")
            if found["issuer"].rstrip("/") != self.issuer:
                raise ProviderError(f"the discovery document names another issuer: {found['issuer']!r}")
        except ProviderError:
            if meta is None:
                self._failed_at = time.monotonic()
                raise
            log.warning("OpenID provider: discovery refresh failed, keeping the cached one", exc_info=True)
            found = meta
        with self._lock:
            self._meta, self._meta_at = found, time.monotonic()
        return found

    def keys(self, refresh: bool = False) -> KeySet:
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        with self._lock:
            keys, fresh = self._keys, time.monotonic() - self._keys_at < CACHE_FOR
        if keys is not None and fresh and not refresh:
            return keys
        raw = self._get_json(self.metadata()["jwks_uri"])
        try:
            keys = KeySet.import_key_set({"keys": [k for k in raw.get("keys", []) if k.get("use", "sig") == "sig"]})
        except (JoseError, ValueError, TypeError, AttributeError) as exc:
            raise ProviderError(f"the provider's keys (JWKS) could not be read: {exc}") from None
        with self._lock:
            self._keys, self._keys_at = keys, time.monotonic()
        return keys

    # -- the code flow --------------------------------------------------------------------------

    def exchange(self, code: str, redirect_uri: str, verifier: str, nonce: str) -> Tokens:
        """Trade the authorization code (with the PKCE verifier and the client secret) for tokens,
        and verify the ID token."""
        meta = self.metadata()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": verifier}
        headers = {}
        methods = meta.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        if "client_secret_basic" in methods or "client_secret_post" not in methods:
            pair = f"{quote(self.client_id, safe='')}:{quote(self.client_secret, safe='')}"  # RFC 6749 2.3.1
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form.update(client_id=self.client_id, client_secret=self.client_secret)
        try:
            res = self.http.post(meta["token_endpoint"], data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise ProviderError(f"the token endpoint could not be reached: {exc}") from None
        body = _json_of(res)
        if res.status_code != 200 or not isinstance(body.get("id_token"), str):
            raise ProviderError(f"the token endpoint answered {res.status_code}: {body.get('error', '')!s:.100}")
        claims = self.verify(body["id_token"], nonce)
        access = body.get("access_token")
        return Tokens(body["id_token"], access if isinstance(access, str) else "", claims)

    def verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims, if its signature and claims hold; else TokenRefused."""
        from joserfc import jwt
        from joserfc.errors import InvalidKeyIdError, JoseError

        meta = self.metadata()
        allowed = [a for a in meta.get("id_token_signing_alg_values_supported", ["RS256"]) if a in ALGORITHMS]
        try:
            try:
                token = jwt.decode(id_token, self.keys(), algorithms=allowed)
            except InvalidKeyIdError:  # a key we do not know: the provider may have rotated its keys
                token = jwt.decode(id_token, self.keys(refresh=True), algorithms=allowed)
        except JoseError as exc:
            raise TokenRefused(f"ID token signature: {exc.error}") from None
        registry = jwt.JWTClaimsRegistry(
            leeway=LEEWAY, iss={"essential": True, "value": meta["issuer"]},
            aud={"essential": True, "value": self.client_id}, exp={"essential": True},
            iat={"essential": True}, sub={"essential": True}, nonce={"essential": True, "value": nonce})
        claims = token.claims
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise TokenRefused(f"ID token claim: {exc.description or exc.error}") from None
        if not isinstance(claims["iat"], int | float) or claims["iat"] > time.time() + LEEWAY:
            raise TokenRefused("ID token claim: iat lies in the future")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.client_id:  # OpenID Connect Core 3.1.3.7
            raise TokenRefused("ID token claim: several audiences and azp is not this client")
        return claims

    def userinfo(self, access_token: str, sub: str) -> dict[str, Any]:
        """The userinfo endpoint's claims, for the ID token's subject only."""
        endpoint = self.metadata().get("userinfo_endpoint")
        if not endpoint or not access_token:
            return {}
        try:
            res = self.http.get(endpoint, headers={"Authorization": f"Bearer {access_token}"})
        except httpx.HTTPError as exc:
            raise ProviderError(f"the userinfo endpoint could not be reached: {exc}") from None
        body = _json_of(res)
        if res.status_code != 200:
            raise ProviderError(f"the userinfo endpoint answered {res.status_code}")
        if body.get("sub") != sub:  # OpenID Connect Core 5.3.2: else it may be someone else's
            raise TokenRefused("userinfo is about another subject")
        return body

    def _get_json(self, url: str) -> dict:
        try:
            res = self.http.get(url)
        except httpx.HTTPError as exc:
            raise ProviderError(f"{url} could not be reached: {exc}") from None
        if res.status_code != 200:
            raise ProviderError(f"{url} answered {res.status_code}")
        return _json_of(res)


def _json_of(res: httpx.Response) -> dict:
    try:
        body = res.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
