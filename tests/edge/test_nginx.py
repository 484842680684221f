"""Pushbutton behind a real nginx, configured as docs/deploy.md says: HTTPS at nginx, mounted at
/ops/, people signed in by nginx (basic auth here) and named in X-Forwarded-User."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.edge import nginx as N
from tests.edge.conftest import Cert, make_cert
from tests.helpers import TOKEN, Pushbutton, in_ci, parse_sse, sse_lines, wait_for

JOBS = """\
[pushbutton]
auth = header
trusted_proxies = 127.0.0.1
admins = alice
base_path = /ops
allowed_hosts = ops.example.com

[job:ticks]
title = Ticks
command = sh -c 'for i in 1 2 3 4 5 6; do date +%s.%N; sleep 0.5; done'
run_by = *

[job:greet]
title = Greet
command = echo hello {name}
param.name.type = text
param.name.default = world
run_by = *
"""
USERS = {"alice": "alice-password", "bob": "bob-password"}


def crypt(password: str) -> str:
    """An htpasswd hash nginx accepts (SHA-512 crypt)."""
    return subprocess.run(["openssl", "passwd", "-6", password], capture_output=True, text=True,
                          check=True).stdout.strip()


@dataclass
class Site:
    pb: Pushbutton
    nginx: N.Nginx
    cert: Cert

    def client(self, user: str | None = "alice", source: str = "127.0.0.1", **kwargs) -> httpx.Client:
        """A browser-like client of nginx (a real TLS client that checks nginx's certificate)."""
        return httpx.Client(base_url=self.nginx.url + "/ops", auth=(user, USERS[user]) if user else None,
                            transport=httpx.HTTPTransport(local_address=source, verify=self.cert.context()),
                            timeout=30, **kwargs)

    def direct(self, source: str, **kwargs) -> httpx.Client:
        """Straight to Pushbutton, around nginx, from `source`."""
        return httpx.Client(base_url=self.pb.url, transport=httpx.HTTPTransport(local_address=source),
                            timeout=30, **kwargs)


@pytest.fixture
def site(pushbutton, tmp_path) -> Site:
    reason = N.missing()
    if reason:
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    jobs, secret = tmp_path / "jobs.ini", tmp_path / "proxy-secret"
    secret.write_text(N.SECRET + "\n")
    jobs.write_text(JOBS.replace("trusted_proxies = 127.0.0.1\n",
                                 f"trusted_proxies = 127.0.0.1\nproxy_secret_file = {secret}\n"))
    pb = pushbutton(jobs)
    cert = make_cert(tmp_path / "tls")
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("".join(f"{user}:{crypt(password)}\n" for user, password in USERS.items()))
    port = int(pb.url.rsplit(":", 1)[1].split("/")[0])
    proxy = N.start(tmp_path / "nginx", port, cert.cert, cert.key, htpasswd)
    yield Site(pb, proxy, cert)
    proxy.stop()


def test_the_page_and_the_api_work_under_the_prefix_and_nothing_outside_it(site):
    alice = site.client()
    page = alice.get("/")
    assert page.status_code == 200 and "<title>Pushbutton</title>" in page.text
    for ref in re.findall(r'(?:href|src)="([^"#]+)"', page.text):
        assert alice.get(f"/{ref}").status_code == 200, ref  # relative: resolved under /ops/
    assert [j["id"] for j in alice.get("/api/jobs").json()["jobs"]] == ["ticks", "greet"]
    origin = {"Origin": site.nginx.url}  # a browser's POST: Host and Origin both as nginx received them
    res = alice.post("/api/jobs/greet/runs", json={"params": {"name": "proxy"}}, headers=origin)
    assert res.status_code == 202, res.text
    run = res.json()["run"]
    assert run["user"] == "alice"
    res = alice.post("/api/jobs/greet/runs", json={"params": {}}, headers={"Origin": "https://evil.example"})
    assert res.status_code == 403
    # As in production: the browser's Host is the public name, which nginx passes on (allowed_hosts).
    public = {"Host": "ops.example.com", "Origin": "https://ops.example.com"}
    assert alice.post("/api/jobs/greet/runs", json={"params": {}}, headers=public).status_code == 202
    assert alice.get("/api/jobs", headers={"Host": "evil.example"}).status_code == 403  # DNS rebinding
    assert alice.get("/healthz").json() == {"ok": True}
    top = httpx.Client(base_url=site.nginx.url, auth=("alice", USERS["alice"]), verify=site.cert.context())
    assert top.get("/ops").status_code == 301 and top.get("/ops").headers["location"].endswith("/ops/")
    for outside in ("/", "/api/jobs", "/healthz", "/assets/app.css", "/opsx/api/jobs"):
        assert top.get(outside).status_code == 404, outside
    # nginx said https (X-Forwarded-Proto), and Pushbutton trusts nginx: its cookies are Secure.
    login = alice.get(f"/?token={TOKEN}")
    assert "; Secure" in login.headers["set-cookie"] and "Path=/ops/;" in login.headers["set-cookie"]


def test_the_user_nginx_signed_in_is_the_user_and_the_header_counts_from_nowhere_else(site):
    me = site.client("alice").get("/api/me").json()
    assert (me["user"], me["admin"], me["method"], me["auth"]) == ("alice", True, "header", "header")
    assert site.client("bob").get("/api/me").json()["user"] == "bob"
    assert site.client("bob").get("/api/me").json()["admin"] is False
    # nginx replaces whatever the client put in the header with the user it signed in.
    forged = {"X-Forwarded-User": "alice"}
    assert site.client("bob").get("/api/me", headers=forged).json()["user"] == "bob"
    assert site.client(None).get("/api/me", headers=forged).status_code == 401  # nginx's own: sign in first
    # Around nginx, from an address that is not a trusted proxy, the header is ignored: anonymous.
    stranger = site.direct("127.0.0.2", headers=forged)
    assert stranger.get("/api/me").status_code == 401
    assert stranger.get("/api/jobs").status_code == 401
    assert stranger.post("/api/jobs/greet/runs", json={"params": {}}).status_code == 401


def test_a_local_process_on_the_proxy_address_without_the_proxy_secret_is_not_believed(site):
    """Any local user or job connects from 127.0.0.1, as nginx does: only the secret tells nginx apart."""
    forged = {"X-Forwarded-User": "alice", "X-Forwarded-Proto": "https"}
    for secret in (None, "", "wrong", N.SECRET[:-1]):
        headers = forged if secret is None else {**forged, "X-Pushbutton-Proxy-Secret": secret}
        local = site.direct("127.0.0.1", headers=headers)
        assert local.get("/api/me").status_code == 401, secret
        assert local.post("/api/jobs/greet/runs", json={"params": {}}).status_code == 401, secret
        assert "Secure" not in local.get(f"/?token={TOKEN}").headers["set-cookie"], secret  # Proto ignored
    proxy = site.direct("127.0.0.1", headers={**forged, "X-Pushbutton-Proxy-Secret": N.SECRET})
    assert proxy.get("/api/me").json()["user"] == "alice"  # the secret is what nginx proves itself with
    assert "Secure" in proxy.get(f"/?token={TOKEN}").headers["set-cookie"]
    assert N.SECRET not in site.pb.log.read_text()


def test_the_audit_log_names_the_address_nginx_saw(site):
    """nginx appends the peer it saw to X-Forwarded-For; what the client wrote there is not believed."""
    alice = site.client(source="127.0.0.3", headers={"X-Forwarded-For": "6.6.6.6"})
    assert alice.post("/api/jobs/greet/runs", json={"params": {}}).status_code == 202
    # Entries are written behind the answer, on the store's writer: wait for this one.
    entries = wait_for(lambda: alice.get("/api/audit", params={"action": "run.start"}).json()["entries"])
    assert [(e["user"], e["address"]) for e in entries] == [("alice", "127.0.0.3")]


def test_an_event_stream_through_nginx_arrives_live_and_resumes_with_last_event_id(site):
    """Each line carries the time the job printed it: it must arrive well before the job ends,
    within a second, so nginx passes events on as they are written."""
    alice = site.client()
    run_id = alice.post("/api/jobs/ticks/runs", json={"params": {}}).json()["run"]["id"]
    delays, seen = [], []
    with alice.stream("GET", f"/api/runs/{run_id}/events", timeout=60) as res:
        assert res.status_code == 200 and res.headers["content-type"].startswith("text/event-stream")
        for event in parse_sse(sse_lines(res)):
            seen.append(event)
            if event.type == "output":
                delays += [time.time() - float(line) for line in event.data["lines"]]
            if len(delays) >= 3:
                break  # hang up mid-run
    assert max(delays) < 1.0, delays
    last = seen[-1].id
    with alice.stream("GET", f"/api/runs/{run_id}/events", headers={"Last-Event-ID": str(last)}) as res:
        rest = []
        for event in parse_sse(sse_lines(res)):
            rest.append(event)
            if event.type == "end":
                break
    assert [e.id for e in rest] == list(range(last + 1, last + 1 + len(rest)))  # the next one, none twice
    lines = [line for e in seen + rest if e.type == "output" for line in e.data["lines"]]
    assert len(lines) == 6 and rest[-1].data["state"] == "succeeded"


def test_the_page_works_in_a_browser_behind_nginx(site, tmp_path):
    """Chromium through nginx at /ops/: the job list, a run's live output (read by the page's
    worker, whose URLs resolve against its own script), the log download; no console error."""
    playwright = pytest.importorskip("playwright.sync_api")
    from tests.page.conftest import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        (pytest.fail if in_ci() else pytest.skip)(f"{CHROMIUM} is missing")
    errors: list[str] = []
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(http_credentials={"username": "alice", "password": USERS["alice"]},
                                      ignore_https_errors=True, accept_downloads=True)
            page = ctx.new_page()
            page.set_default_timeout(30_000)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
            page.goto(site.nginx.url + "/ops/")
            page.get_by_role("link", name=re.compile("Greet")).click()
            page.get_by_role("button", name="Run", exact=True).click()
            playwright.expect(page.get_by_role("status", name="Status")).to_have_text(re.compile("succeeded", re.I))
            playwright.expect(page.locator("#log .l")).to_have_text(["hello world"])
            assert re.search(r"/ops/#/runs/\d+$", page.url), page.url
            with page.expect_download() as download:
                page.get_by_role("button", name="Download log").click()
            assert Path(download.value.path()).read_text() == "hello world\n"
        finally:
            browser.close()
    assert errors == []
