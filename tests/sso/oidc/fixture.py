"""The real OpenID provider of the tests (provider.mjs: npm's oidc-provider on the machine's Node.js).

`OidcProvider` writes its config (issuer, Pushbutton's client, accounts and groups, a fresh RSA
signing key), starts it on a port picked beforehand (so jobs.ini can name the issuer before the
Pushbutton server, and with it the redirect URI, exists), and can restart it with a new key (a key
rotation). `sign_in` walks the authorization code flow as a browser would, with httpx: Pushbutton's
login redirect, the provider's login and consent forms, the callback. Installed by
`scripts/setup.sh test` (`npm ci` here); missing, the tests fail (under CI) or skip.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import socket
import subprocess
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from joserfc.jwk import RSAKey

from tests.helpers import in_ci

HERE = Path(__file__).resolve().parent
CLIENT_ID = "pushbutton"
# alice, ann: analysts; olga: ops (admins); vic: viewers; otto: others; nick: no group at all;
# sam has no preferred_username (Pushbutton falls back to `sub`).
ACCOUNTS = {"alice": {"groups": ["analysts"]}, "ann": {"groups": ["analysts"]}, "olga": {"groups": ["ops"]},
            "vic": {"groups": ["viewers"]}, "otto": {"groups": ["others"]}, "nick": {},
            "sam": {"groups": ["analysts"], "preferred_username": None},
            # review: an account whose (self-set, unverified) e-mail is olga's
            "mallory": {"email": "olga@acme.test", "email_verified": False}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_node() -> str:
    """The node binary, with the provider installed; fails under CI, skips elsewhere."""
    node = shutil.which("node")
    missing = "node is not installed" if node is None else None
    if not missing and not (HERE / "node_modules" / "oidc-provider").is_dir():
        missing = f"oidc-provider is not installed: run scripts/setup.sh test (npm ci in {HERE})"
    if missing:
        if in_ci():
            pytest.fail(f"{missing} (CI=true: the OpenID Connect tests must run)")
        pytest.skip(missing)
    return node


class OidcProvider:
    def __init__(self, workdir: Path, id_token_claims: bool = False):
        self.node = require_node()
        self.workdir = workdir
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.secret = secrets.token_urlsafe(24)
        self.id_token_claims = id_token_claims
        self.key = new_key()
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "provider.log"

    def jobs_keys(self) -> str:
        """The [pushbutton] lines that point Pushbutton at this provider."""
        return (f"auth = oidc\noidc_issuer = {self.issuer}\noidc_client_id = {CLIENT_ID}\n"
                "oidc_scopes = openid profile email groups\n")

    def start(self, app_url: str) -> OidcProvider:
        """Serve, with Pushbutton at `app_url` (its base path included) as the one client."""
        self.app_url = app_url.rstrip("/")
        client = {"client_id": CLIENT_ID, "client_secret": self.secret,
                  "redirect_uris": [f"{self.app_url}/auth/oidc/callback"],
                  "post_logout_redirect_uris": [f"{self.app_url}/"],
                  "grant_types": ["authorization_code"], "response_types": ["code"],
                  "token_endpoint_auth_method": "client_secret_basic"}
        config = {"issuer": self.issuer, "port": self.port, "client": client, "accounts": ACCOUNTS,
                  "keys": [self.key], "id_token_claims": self.id_token_claims}
        path = self.workdir / "provider.json"
        path.write_text(json.dumps(config))
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([self.node, str(HERE / "provider.mjs"), str(path)], cwd=HERE,
                                         stdout=subprocess.PIPE, stderr=log, text=True)
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", f"the OpenID provider did not start: {line!r}\n{self.log.read_text()}"
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def rotate(self) -> None:
        """A new signing key (a new kid): the provider restarts with it, at the same issuer."""
        self.stop()
        self.key = new_key()
        self.start(self.app_url)

    def tamper(self, mode: str) -> None:
        assert httpx.post(f"{self.issuer}/test/tamper", params={"mode": mode}).status_code == 204

    def stats(self) -> dict:
        return httpx.get(f"{self.issuer}/test/stats").json()


def new_key() -> dict:
    key = RSAKey.generate_key(2048, {"use": "sig", "alg": "RS256"}, private=True, auto_kid=True)
    return key.as_dict(private=True)


def provider_form(page: httpx.Response) -> tuple[str, dict]:
    """The one form of a provider page: its absolute action and its hidden fields."""
    html = page.text
    action = re.search(r'<form[^>]*action="([^"]+)"', html)
    assert action, f"no form on the provider's page ({page.status_code}): {html[:500]}"
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))
    return urljoin(str(page.url), action.group(1)), fields


def to_callback(client: httpx.Client, provider: OidcProvider, user: str, next_hash: str = "") -> str:
    """Pushbutton's login, then the provider's login and consent forms as a browser would fill them
    (skipped by the provider when its session and grant already exist): the callback URL the
    provider sends the browser to, not yet visited. `client` keeps both sites' cookies."""
    res = client.get("/auth/oidc/login", params={"next": next_hash} if next_hash else None)
    for _ in range(20):
        if res.status_code in (302, 303):
            location = urljoin(str(res.url), res.headers["location"])
            if location.startswith(provider.app_url):
                return location
            res = client.get(location)
        else:
            action, fields = provider_form(res)
            if 'name="login"' in res.text:
                fields |= {"login": user, "password": "any"}
            res = client.post(action, data=fields)
    raise AssertionError(f"the provider never sent the browser back: {res.status_code} {res.text[:300]}")


def sign_in(client: httpx.Client, provider: OidcProvider, user: str, next_hash: str = "") -> httpx.Response:
    """The whole sign-in: the callback's answer (a redirect to the page, not followed)."""
    return client.get(to_callback(client, provider, user, next_hash))
