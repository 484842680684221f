"""`auth = oidc` against a real OpenID provider (npm's certified oidc-provider, tests/sso/oidc), over HTTP.

Every sign-in walks the whole authorization code flow as a browser would (tests/sso/oidc/fixture.py):
Pushbutton's redirect, the provider's login and consent forms, the callback. The provider alters
the ID token it answers when a test asks (`tamper`: re-signed with its own key with one claim wrong,
or with a broken signature), so each refusal is of a token exactly as a provider would send it.
"""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.helpers import BIN, wait_for
from tests.sso.oidc.fixture import CLIENT_ID, OidcProvider, provider_form, sign_in, to_callback
from tests.test_api import answer, app_routes, fill
from tests.test_route_matrix import KINDS, documented, shape, start

TEAMS = """
    admins = team:ops
    max_concurrent_runs = 100
    [team:ops]
    oidc_groups = ops
    [team:analysts]
    oidc_groups = analysts
    [team:viewers]
    oidc_groups = viewers
    [team:others]
    oidc_groups = others
    [job:report]
    command = sleep {seconds}
    param.seconds.type = int
    param.seconds.default = 60
    param.where.type = choice
    param.where.choices_from = echo here
    run_by = team:analysts
    view_by = team:viewers
    [job:other]
    command = sleep {seconds}
    param.seconds.type = int
    param.seconds.default = 0
    run_by = team:others
    """
NAMES = {"viewer": "vic", "runner": "ann", "another team": "otto", "admin": "olga"}  # as the route matrix


class Site:
    """A Pushbutton server signing in with the provider."""

    def __init__(self, pb, provider: OidcProvider):
        self.pb, self.provider, self.url = pb, provider, pb.url

    def browser(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def signed_in(self, user: str) -> httpx.Client:
        client = self.browser()
        res = sign_in(client, self.provider, user)
        assert (res.status_code, res.headers["location"]) == (303, "/"), res.headers
        return client

    def audit(self, action: str) -> list[dict]:
        done = subprocess.run([BIN, "audit", "--action", action, "--jobs", str(self.pb.jobs), "--data-dir",
                               str(self.pb.data_dir)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]


def serve(pushbutton, write_jobs, tmp_path, monkeypatch, extra: str = "", settings: str = "",
          **provider_options) -> Site:
    provider = OidcProvider(tmp_path, **provider_options)
    monkeypatch.setenv("PUSHBUTTON_OIDC_CLIENT_SECRET", provider.secret)  # the server reads it at start
    jobs = write_jobs("[pushbutton]\n" + provider.jobs_keys() + settings + textwrap.dedent(TEAMS) + extra)
    pb = pushbutton(jobs)
    return Site(pb, provider.start(pb.url))


@pytest.fixture
def site(pushbutton, write_jobs, tmp_path, monkeypatch):
    site = serve(pushbutton, write_jobs, tmp_path, monkeypatch)
    yield site
    site.provider.stop()


def session_cookie(res: httpx.Response) -> list[str]:
    return [c for c in res.headers.get_list("set-cookie") if c.startswith("pushbutton_session_")]


def claims_of(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_provider_groups_map_to_teams_and_teams_to_the_jobs_each_user_sees(site):
    seen = {}
    for user in ("alice", "nick", "olga", "sam"):
        client = site.signed_in(user)
        me = client.get("/api/me").json()
        jobs = {j["id"]: j["can_run"] for j in client.get("/api/jobs").json()["jobs"]}
        seen[user] = (me["user"], me["teams"], me["admin"], me["method"], jobs)
    assert seen == {
        "alice": ("alice", ["analysts"], False, "oidc", {"report": True}),
        "nick": ("nick", [], False, "oidc", {}),  # in no group: signed in, sees nothing
        "olga": ("olga", ["ops"], True, "oidc", {"report": True, "other": True}),  # admins = team:ops
        "sam": ("sam", ["analysts"], False, "oidc", {"report": True}),  # no preferred_username: `sub`
    }
    stats = site.provider.stats()
    assert (stats["token"], stats["userinfo"], stats["jwks"]) == (4, 4, 1)  # groups from userinfo; keys cached


def test_claims_in_the_id_token_need_no_userinfo_call(pushbutton, write_jobs, tmp_path, monkeypatch):
    site = serve(pushbutton, write_jobs, tmp_path, monkeypatch, id_token_claims=True)
    try:
        me = site.signed_in("alice").get("/api/me").json()
        assert (me["user"], me["teams"]) == ("alice", ["analysts"])
        assert site.provider.stats()["userinfo"] == 0
    finally:
        site.provider.stop()


def test_an_email_the_provider_has_not_verified_names_no_user(pushbutton, write_jobs, tmp_path, monkeypatch):
    """With `oidc_user_claim = email` (as for Google), mallory set olga's address on her own account
    without verifying it: she must not become olga, an admin."""
    site = serve(pushbutton, write_jobs, tmp_path, monkeypatch, settings="oidc_user_claim = email\n")
    try:
        olga = site.browser()
        assert sign_in(olga, site.provider, "olga").headers["location"] == "/"
        assert olga.get("/api/me").json()["user"] == "olga@acme.test"  # verified: named by e-mail
        mallory = site.browser()
        res = sign_in(mallory, site.provider, "mallory")
        assert (res.status_code, res.headers["location"], session_cookie(res)) == (303, "/#/signin?error=user", [])
        assert mallory.get("/api/me").status_code == 401
        refused = [e for e in site.audit("signin.failed") if "not verified" in e["detail"].get("reason", "")]
        assert refused, site.audit("signin.failed")
    finally:
        site.provider.stop()


def test_a_rotated_client_secret_file_is_applied_by_a_reload(pushbutton, write_jobs, tmp_path, monkeypatch):
    """The provider's client secret is rotated, the file jobs.ini names replaced, SIGHUP sent: the
    next sign-in uses the new secret, with no restart."""
    monkeypatch.delenv("PUSHBUTTON_OIDC_CLIENT_SECRET", raising=False)
    provider = OidcProvider(tmp_path)
    secret = tmp_path / "client-secret"
    secret.write_text(provider.secret + "\n")
    pb = pushbutton(write_jobs("[pushbutton]\n" + provider.jobs_keys() + f"oidc_client_secret_file = {secret}\n"
                               + textwrap.dedent(TEAMS)))
    site = Site(pb, provider.start(pb.url))
    try:
        assert site.signed_in("alice").get("/api/me").json()["user"] == "alice"
        provider.stop()
        provider.secret = "rotated-" + provider.secret
        provider.start(pb.url)
        refused = sign_in(site.browser(), provider, "alice")
        assert refused.headers["location"] == "/#/signin?error=unavailable"  # the old secret: refused
        secret.write_text(provider.secret + "\n")
        pb.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: sign_in(site.browser(), provider, "alice").headers["location"] == "/")
    finally:
        provider.stop()


def test_the_page_lands_on_the_view_it_asked_for_and_never_elsewhere(site):
    landed = {}
    for wanted in ("#/jobs/report", "https://evil.example/", "//evil.example/x", "/api/jobs", "#/a\"><b>"):
        res = sign_in(site.browser(), site.provider, "alice", next_hash=wanted)
        landed[wanted] = res.headers["location"]
    assert landed == {"#/jobs/report": "/#/jobs/report", "https://evil.example/": "/", "//evil.example/x": "/",
                      "/api/jobs": "/", "#/a\"><b>": "/"}


def test_the_login_sends_pkce_state_nonce_and_the_redirect_uri_with_the_base_path(pushbutton, write_jobs, tmp_path,
                                                                                  monkeypatch):
    provider = OidcProvider(tmp_path)
    monkeypatch.setenv("PUSHBUTTON_OIDC_CLIENT_SECRET", provider.secret)
    pb = pushbutton(write_jobs("[pushbutton]\n" + provider.jobs_keys() + "base_path = /ops\n" + textwrap.dedent(TEAMS)))
    assert pb.url.endswith("/ops")
    provider.start(pb.url)
    try:
        client = httpx.Client(base_url=pb.url, timeout=30)
        res = client.get("/auth/oidc/login")
        query = parse_qs(urlsplit(res.headers["location"]).query)
        assert {k: v[0] for k, v in query.items() if k not in ("state", "nonce", "code_challenge")} == {
            "response_type": "code", "client_id": CLIENT_ID, "scope": "openid profile email groups",
            "redirect_uri": f"{pb.url}/auth/oidc/callback", "code_challenge_method": "S256"}
        assert all(len(query[k][0]) >= 43 for k in ("state", "nonce", "code_challenge"))
        binding = res.headers["set-cookie"]
        assert binding.startswith("pushbutton_oidc=") and "Path=/ops/auth/oidc/; Max-Age=600; HttpOnly; SameSite=Lax" \
            in binding
        landed = sign_in(client, provider, "alice")
        assert landed.headers["location"] == "/ops/"
        assert "Path=/ops/" in session_cookie(landed)[0]
        assert client.get("/api/me").json()["user"] == "alice"
    finally:
        provider.stop()


def test_a_tampered_expired_or_misdirected_id_token_is_refused_and_opens_no_session(site):
    outcome = {}
    for mode in ("payload", "foreign-key", "none", "expired", "audience", "nonce", "issuer"):
        site.provider.tamper(mode)
        browser = site.browser()
        res = sign_in(browser, site.provider, "alice")
        outcome[mode] = (res.headers["location"], session_cookie(res), browser.get("/api/me").status_code)
    assert outcome == {mode: ("/#/signin?error=token", [], 401) for mode in outcome}
    failed = wait_for(lambda: len(got := site.audit("signin.failed")) == 7 and got)
    reasons = [e["detail"]["reason"] for e in failed]
    assert all(r.startswith("ID token") for r in reasons), reasons
    assert [e["ok"] for e in site.audit("signin")] == []
    assert site.signed_in("alice").get("/api/me").status_code == 200  # the provider itself is fine


def test_a_wrong_missing_replayed_or_other_browsers_state_is_refused_with_no_session(site):
    results = {}
    browser = site.browser()
    callback = to_callback(browser, site.provider, "alice")
    wrong = callback.replace("state=", "state=x")
    results["wrong"] = browser.get(wrong)
    results["missing"] = browser.get("/auth/oidc/callback", params={"code": parse_qs(urlsplit(callback).query)["code"]})
    results["another browser"] = site.browser().get(callback)  # a sign-in it never started (login CSRF)
    results["replayed"] = browser.get(callback)  # the other browser's attempt used it up
    fresh = to_callback(browser, site.provider, "alice")
    assert session_cookie(browser.get(fresh))  # the first use of a state signs in ...
    results["replayed after use"] = site.browser().get(fresh)  # ... and it never works again
    denied = browser.get("/auth/oidc/login").headers["location"]
    state = parse_qs(urlsplit(denied).query)["state"][0]
    results["provider said no"] = browser.get("/auth/oidc/callback", params={"error": "access_denied", "state": state})
    got = {k: (r.status_code, r.headers["location"], session_cookie(r)) for k, r in results.items()}
    assert got == {k: (303, "/#/signin?error=" + ("provider" if k == "provider said no" else "state"), [])
                   for k in results}


def test_a_rotated_signing_key_is_fetched_once_and_then_kept(site):
    first = site.signed_in("alice")
    site.provider.rotate()  # a new key, a new kid: Pushbutton's cached keys do not have it
    second = site.signed_in("alice")
    third = site.signed_in("olga")
    assert [c.get("/api/me").status_code for c in (first, second, third)] == [200, 200, 200]
    assert site.provider.stats()["jwks"] == 1  # since the restart: one refetch for the new kid, then cached


def test_sign_out_ends_the_session_and_then_the_providers(site):
    browser = site.browser()
    assert session_cookie(sign_in(browser, site.provider, "alice"))
    res = browser.post("/auth/oidc/logout")
    assert res.status_code == 200 and res.headers["cache-control"] == "no-store"
    assert "Max-Age=0" in session_cookie(res)[0]
    end = urlsplit(res.json()["end_session"])
    query = {k: v[0] for k, v in parse_qs(end.query).items()}
    assert f"{end.scheme}://{end.netloc}{end.path}" == f"{site.provider.issuer}/session/end"
    assert (query["client_id"], query["post_logout_redirect_uri"]) == (CLIENT_ID, site.url + "/")
    assert (claims_of(query["id_token_hint"])["sub"], claims_of(query["id_token_hint"])["aud"]) == ("alice", CLIENT_ID)
    assert browser.get("/api/me").status_code == 401
    page = browser.get(res.json()["end_session"])  # the provider asks; yes, sign me out
    action, fields = provider_form(page)
    back = browser.post(action, data={**fields, "logout": "yes"}, follow_redirects=True)
    assert str(back.url) == site.url + "/"
    login = browser.get(browser.get("/auth/oidc/login").headers["location"], follow_redirects=True)
    assert 'name="login"' in login.text  # the provider's session is gone too: it asks who you are
    entries = wait_for(lambda: (got := site.audit("signin,signout")) and len(got) == 2 and got)
    assert [(e["action"], e["user"], e["detail"]) for e in entries] == [
        ("signin", "alice", {"method": "oidc"}), ("signout", "alice", {"method": "oidc"})]


def test_a_hung_provider_times_out_sends_the_page_back_with_an_error_and_is_not_asked_again_at_once(
        pushbutton, write_jobs, tmp_path, monkeypatch):
    provider = OidcProvider(tmp_path)  # never started: a listener that accepts and never answers instead
    monkeypatch.setenv("PUSHBUTTON_OIDC_CLIENT_SECRET", provider.secret)
    pb = pushbutton(write_jobs("[pushbutton]\n" + provider.jobs_keys() + textwrap.dedent(TEAMS)))
    with socket.create_server(("127.0.0.1", provider.port)), ThreadPoolExecutor(1) as pool:
        began = time.monotonic()
        waiting = pool.submit(httpx.get, pb.url + "/auth/oidc/login", timeout=60)
        time.sleep(1)
        quick = time.monotonic()
        assert httpx.get(pb.url + "/healthz").status_code == 200
        assert time.monotonic() - quick < 1  # the hub is not waiting on the provider
        res = waiting.result()
        assert 9 < time.monotonic() - began < 20  # the 10 s time-out
    assert (res.status_code, res.headers["location"], session_cookie(res)) == (303, "/#/signin?error=unavailable", [])
    began = time.monotonic()
    again = [httpx.get(pb.url + "/auth/oidc/login").headers["location"] for _ in range(20)]
    assert again == ["/#/signin?error=unavailable"] * 20
    assert time.monotonic() - began < 2  # not asked again for a while: no thread waits on a dead provider
    assert httpx.get(pb.url + "/healthz").status_code == 200


def test_oidc_routes_do_nothing_on_a_server_that_signs_in_otherwise(pushbutton, write_jobs):
    pb = pushbutton(write_jobs("[pushbutton]\nauth = local\nadmins = alice\n[job:a]\ncommand = x\n"))
    anon = httpx.Client(base_url=pb.url, timeout=30)
    answers = [anon.get("/auth/oidc/login"), anon.get("/auth/oidc/callback", params={"code": "c", "state": "s"})]
    assert [(r.status_code, "location" in r.headers, r.json()["error"]) for r in answers] == [
        (400, False, "this server signs in with auth = local, not OpenID Connect")] * 2


def test_every_route_gives_users_signed_in_through_the_provider_their_documented_status(site):
    """The route matrix (tests/test_route_matrix.py) with every user signed in through the provider and
    teams from its groups: the same statuses, but for the /auth/oidc routes, which under
    `auth = oidc` redirect (login, callback without a state: 303) or sign out (200), as docs/api.md says."""
    expected = documented()
    under_oidc = {("GET", "/auth/oidc/login"): 303, ("GET", "/auth/oidc/callback"): 303,
                  ("POST", "/auth/oidc/logout"): 200}
    for key, status in under_oidc.items():
        expected[key] = {kind: (401 if key[0] == "POST" and kind == "anonymous" else status) for kind in KINDS}
    clients = {kind: site.signed_in(NAMES[kind]) if kind in NAMES else site.browser() for kind in KINDS}
    shared = start(clients["runner"])["id"]
    got, want = {}, {}
    for method, rule in app_routes():
        for kind in KINDS:
            ends_session = (method, rule) in (("DELETE", "/api/session"), ("POST", "/auth/oidc/logout"))
            client = site.signed_in(NAMES[kind]) if ends_session and kind in NAMES else clients[kind]
            values = {"job_id": "report", "path": "app.css", "run_id": shared, "token_id": 999999,
                      "param_name": "where"}
            if rule.endswith("/cancel"):
                values["run_id"] = start(clients["runner"])["id"]
            if "<token_id" in rule and kind != "anonymous":
                values["token_id"] = client.post("/api/tokens", json={"name": "ci"}).json()["id"]
            body = {"name": "ci"} if rule == "/api/tokens" else {"params": {"seconds": 60}}
            res = answer(client, method, fill(rule, values), **({"json": body} if method == "POST" else {}))
            key = f"{method} {rule} as {kind}"
            got[key], want[key] = res.status_code, expected[(method, shape(rule))][kind]
    assert got == want


def test_the_client_secret_comes_from_a_file_or_the_environment_and_warns_in_jobs_ini(tmp_path, monkeypatch):
    from server import catalog as C

    monkeypatch.delenv("PUSHBUTTON_OIDC_CLIENT_SECRET", raising=False)
    head = ("[pushbutton]\nauth = oidc\nadmins = a\noidc_issuer = https://login.acme.test/realms/a\n"
            "oidc_client_id = pb\n")
    (tmp_path / "secret").write_text("from-the-file\n")
    jobs = tmp_path / "jobs.ini"
    jobs.write_text(head + "oidc_client_secret_file = secret\n[job:a]\ncommand = x\n")
    loaded = C.load(jobs)
    assert (loaded.settings.oidc.client_secret, loaded.warnings) == ("from-the-file", [])
    assert "from-the-file" not in repr(loaded.settings)
    monkeypatch.setenv("PUSHBUTTON_OIDC_CLIENT_SECRET", "from-the-environment")
    jobs.write_text(head + "[job:a]\ncommand = x\n")
    assert C.load(jobs).settings.oidc.client_secret == "from-the-environment"
    jobs.write_text(head + "oidc_client_secret = in-jobs-ini\n[job:a]\ncommand = x\n")
    loaded = C.load(jobs)
    assert loaded.settings.oidc.client_secret == "in-jobs-ini"
    assert [str(w).replace(str(jobs), "FILE") for w in loaded.warnings] == [
        "FILE:6: warning: [pushbutton] oidc_client_secret: the client secret sits in jobs.ini, which is copied around: "
        "put it "
        "in a file (oidc_client_secret_file) or the environment (PUSHBUTTON_OIDC_CLIENT_SECRET)"]
