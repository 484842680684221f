"""The HTTP API against a real server process on the sample jobs.ini and test catalogs."""

from __future__ import annotations

import re
import wsgiref.util

import httpx
import pytest

from server.api import make_app
from server.auth.guard import Guard
from tests.conftest import ROOT
from tests.helpers import TOKEN, lines_of


@pytest.fixture
def sample(pushbutton):
    return pushbutton(ROOT / "jobs.ini")


def test_job_list_describes_forms(sample):
    body = sample.client.get("/api/jobs").json()
    assert body["title"] == "Acme Ops (sample)"
    deploy = next(j for j in body["jobs"] if j["id"] == "deploy")
    assert deploy["confirm"] == "Deploy {tag} to {env}?"
    tag = next(p for p in deploy["params"] if p["name"] == "tag")
    assert tag == {"name": "tag", "type": "text", "label": "Release tag", "help": "The git tag to deploy, like v1.4.2",
                   "required": True, "default": None, "choices": None, "min": None, "max": None,
                   "pattern": r"^v[0-9]+\.[0-9]+\.[0-9]+$", "choices_from": None}
    assert deploy["running"] == 0 and deploy["last_run"] is None


def test_a_run_goes_from_start_to_history(sample):
    res = sample.client.post("/api/jobs/deploy/runs",
                             json={"params": {"tag": "v1.2.3", "env": "production", "dry_run": True}, "confirm": True})
    assert res.status_code == 202, res.text
    run = res.json()["run"]
    assert run["job"] == "deploy" and run["state"] in ("queued", "running")
    assert run["params"] == {"env": "production", "tag": "v1.2.3", "dry_run": True}
    events = sample.events(run["id"])
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert [e.data["state"] for e in events if e.type == "state"] == ["queued", "running", "succeeded"]
    assert events[-1].type == "end" and events[-1].data["exit_code"] == 0
    assert [e.data for e in events if e.type == "progress"][0] == {"percent": 20.0, "message": "Fetching release"}
    assert lines_of(events)[-1] == "Done: v1.2.3 is live on production."
    done = sample.run(run["id"])
    assert done["state"] == "succeeded" and done["progress"] == 100.0 and done["finished"].endswith("Z")
    listed = sample.client.get("/api/runs", params={"job": "deploy"}).json()["runs"]
    assert [r["id"] for r in listed] == [run["id"]]
    assert sample.client.get("/api/jobs").json()["jobs"][0]["last_run"]["id"] == run["id"]


def test_bad_parameters_are_refused_by_field_and_nothing_starts(sample):
    res = sample.client.post("/api/jobs/deploy/runs",
                             json={"params": {"tag": "latest; rm -rf /", "env": "moon", "extra": 1}})
    assert res.status_code == 400
    assert res.json()["fields"] == {
        "tag": r"must match ^v[0-9]+\.[0-9]+\.[0-9]+$",
        "env": "must be one of: staging, production",
        "extra": "no such parameter",
    }
    assert sample.client.get("/api/runs").json()["runs"] == []


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"params": [1]}'])
def test_malformed_bodies_are_400(sample, body):
    res = sample.client.post("/api/jobs/deploy/runs", content=body)
    assert res.status_code == 400 and "error" in res.json()


def test_unknown_job_and_run_are_404(sample):
    assert sample.client.post("/api/jobs/nope/runs", json={"params": {}}).status_code == 404
    for path in ("/api/runs/999", "/api/runs/999/log", "/api/runs/999/events"):
        assert sample.client.get(path).status_code == 404, path
    assert sample.client.post("/api/runs/999/cancel").status_code == 404


def test_secrets_are_masked_everywhere_and_rerun_needs_them_again(pushbutton, write_jobs):
    pb = pushbutton(write_jobs("""
        [job:leaky]
        command = sh -c 'echo "token is $PB_TOKEN for $PB_USER"; echo "$PB_TOKEN" >&2'
        param.user.type = text
        param.token.type = secret
        param.token.required = yes
        """))
    run = pb.start_run("leaky", user="ann", token="hunter2-key")
    assert run["params"] == {"user": "ann", "token": "********"}
    assert pb.wait(run["id"])["state"] == "succeeded"
    log = pb.client.get(f"/api/runs/{run['id']}/log").text
    assert sorted(log.splitlines()) == ["********", "token is ******** for ann"]  # stdout, stderr
    assert "hunter2" not in pb.client.get(f"/api/runs/{run['id']}/events").text
    res = pb.client.post(f"/api/runs/{run['id']}/rerun", json={})
    assert res.status_code == 400 and res.json()["fields"] == {"token": "enter the secret again"}
    again = pb.client.post(f"/api/runs/{run['id']}/rerun", json={"params": {"token": "other-key"}})
    assert again.status_code == 202
    rerun = again.json()["run"]
    assert rerun["id"] != run["id"] and rerun["params"] == run["params"]
    pb.wait(rerun["id"])
    assert pb.stop() == 0
    stored = b"".join(p.read_bytes() for p in pb.data_dir.glob("history.sqlite3*"))
    assert b"hunter2" not in stored and b"other" not in stored
    assert "hunter2" not in pb.log.read_text()


def test_run_again_keeps_a_text_value_that_merely_reads_like_the_mask(pushbutton, write_jobs):
    pb = pushbutton(write_jobs("""
        [job:note]
        command = echo {note}
        param.note.type = text
        param.note.default = fallback
        param.token.type = secret
        """))
    run = pb.start_run("note", note="********", token="hunter2-key")
    assert run["params"] == {"note": "********", "token": "********"}
    pb.wait(run["id"])
    res = pb.client.post(f"/api/runs/{run['id']}/rerun", json={})
    assert res.status_code == 400 and res.json()["fields"] == {"token": "enter the secret again"}
    res = pb.client.post(f"/api/runs/{run['id']}/rerun", json={"params": {"token": "other-key"}})
    assert res.status_code == 202, res.text
    again = pb.wait(res.json()["run"]["id"])
    assert again["params"]["note"] == "********" and again["state"] == "succeeded"
    assert pb.client.get(f"/api/runs/{again['id']}/log").text == "********\n"
    assert again["preview"]["masked"] == ["token"]  # what the record says was masked


def test_run_again_of_a_run_recorded_before_masked_takes_a_value_reading_as_the_mask_as_masked():
    from server.rerun import masked_names

    old = {"params": {"note": "********", "user": "ann"}, "preview": {"argv": ["echo"]}}
    assert masked_names(old) == {"note"} and masked_names({**old, "preview": None}) == {"note"}
    assert masked_names({**old, "preview": {"masked": []}}) == set()


def test_rerun_uses_the_same_parameters(sample):
    run = sample.start_run("report", rows=2, regions=["west"], threshold=0.75)
    sample.wait(run["id"])
    res = sample.client.post(f"/api/runs/{run['id']}/rerun")
    assert res.status_code == 202
    again = sample.wait(res.json()["run"]["id"])
    assert again["params"] == run["params"] and again["state"] == "succeeded"


def test_log_download_is_the_whole_output(sample):
    run = sample.start_run("report", rows=3, regions=["north", "east"])
    sample.wait(run["id"])
    res = sample.client.get(f"/api/runs/{run['id']}/log")
    assert res.headers["content-type"].startswith("text/plain")
    assert f'filename="report-run-{run["id"]}.log"' in res.headers["content-disposition"]
    assert "north row 3: 11\n" in res.text and "warning: east has late data\n" in res.text


def test_history_filters_and_pages(sample):
    ids = [sample.start_run("disk-check")["id"] for _ in range(3)]
    for run_id in ids:
        sample.wait(run_id)
    ok = sample.start_run("greet", name="x")["id"]
    sample.wait(ok)
    runs = sample.client.get("/api/runs").json()["runs"]
    assert [r["id"] for r in runs] == [ok, *reversed(ids)]
    failed = sample.client.get("/api/runs", params={"state": "failed"}).json()["runs"]
    assert [r["id"] for r in failed] == list(reversed(ids)) and failed[0]["exit_code"] == 3
    page = sample.client.get("/api/runs", params={"limit": 2, "before": ids[2]}).json()["runs"]
    assert [r["id"] for r in page] == [ids[1], ids[0]]
    assert sample.client.get("/api/runs", params={"limit": "x"}).status_code == 400


def test_cancelling_an_ended_run_is_a_conflict(sample):
    run_id = sample.start_run("greet")["id"]
    sample.wait(run_id)
    assert sample.client.post(f"/api/runs/{run_id}/cancel").status_code == 409


def test_token_is_required_and_swapped_for_a_cookie(sample):
    bare = httpx.Client(base_url=sample.url)
    assert bare.get("/healthz").status_code == 200
    assert bare.get("/api/jobs").status_code == 401
    assert bare.get("/api/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert bare.get("/").status_code == 401
    assert bare.get("/?token=wrong").status_code == 401
    login = bare.get(f"/?token={TOKEN}")
    assert login.status_code == 303 and login.headers["location"] == "/"
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert bare.get("/api/jobs").status_code == 200  # the cookie now authenticates
    assert bare.get("/").status_code == 200


def test_dns_rebinding_and_cross_origin_posts_are_refused(sample):
    c = sample.client
    assert c.get("/api/jobs", headers={"Host": "evil.example"}).status_code == 403
    assert c.get("/api/jobs", headers={"Host": f"localhost:{sample.url.rsplit(':', 1)[1]}"}).status_code == 200
    res = c.post("/api/jobs/greet/runs", json={"params": {}}, headers={"Origin": "http://evil.example"})
    assert res.status_code == 403
    assert c.post("/api/jobs/greet/runs", json={"params": {}}, headers={"Origin": "null"}).status_code == 403
    assert c.post("/api/jobs/greet/runs", json={"params": {}}, headers={"Origin": sample.url}).status_code == 202
    assert c.get("/api/runs").json()["runs"][0]["job"] == "greet"


def test_allowed_hosts_decide_on_a_public_address(pushbutton, write_jobs):
    jobs = write_jobs("""
        [pushbutton]
        allowed_hosts = pb.example.com
        [job:a]
        command = true
        """)
    pb = pushbutton(jobs, "--host", "0.0.0.0")
    assert pb.client.get("/api/jobs", headers={"Host": "pb.example.com:8000"}).status_code == 200
    assert pb.client.get("/api/jobs", headers={"Host": "evil.example"}).status_code == 403


def test_global_events_report_every_run_state(sample):
    with sample.client.stream("GET", "/api/events") as res:
        from tests.helpers import parse_sse, sse_lines

        events = parse_sse(sse_lines(res))
        ready = next(events)
        assert ready.type == "ready" and ready.data == {"active": []}
        run_id = sample.start_run("greet", name="ann")["id"]
        states = []
        for event in events:
            assert event.type == "state" and event.data["id"] == run_id
            states.append(event.data["state"])
            if event.data["state"] == "succeeded":
                break
    assert states == ["queued", "running", "succeeded"]


# -- security headers on every answer -----------------------------------------------------------

# run_id: a run made by the test
ROUTE_VALUES = {"job_id": "greet", "path": "index.html", "token_id": 1, "param_name": "name"}


def security_header_problems(res: httpx.Response) -> list[str]:
    """What is missing or too weak in one answer's security headers."""
    problems = []
    csp = {d.split()[0]: d.split()[1:] for d in res.headers.get("content-security-policy", "").split(";") if d.strip()}
    if csp.get("frame-ancestors") != ["'none'"]:
        problems.append(f"CSP frame-ancestors is {csp.get('frame-ancestors')}")
    if csp.get("script-src") != ["'self'"]:
        problems.append(f"CSP script-src is {csp.get('script-src')}")
    if any("unsafe" in source for sources in csp.values() for source in sources):
        problems.append("CSP allows something unsafe")
    for name, value in (("x-frame-options", "DENY"), ("x-content-type-options", "nosniff"),
                        ("referrer-policy", "no-referrer")):
        if res.headers.get_list(name) != [value]:
            problems.append(f"{name} is {res.headers.get_list(name)}")
    return problems


def app_routes() -> list[tuple[str, str]]:
    """(method, rule) of every route the server declares (the handlers are not called)."""
    app = make_app(None, Guard(TOKEN, "127.0.0.1"), ROOT / "assets")  # type: ignore[arg-type]
    return [(route.method, route.rule) for route in app.routes]


def fill(rule: str, values: dict) -> str:
    def one(m: re.Match) -> str:
        assert m.group(1) in values, f"add a value for <{m.group(1)}> (route {rule}) to this test"
        return str(values[m.group(1)])

    return re.sub(r"<([a-zA-Z_]\w*)(?::[^>]*)?>", one, rule)


def answer(client: httpx.Client, method: str, url: str, **kwargs) -> httpx.Response:
    """Status and headers only: a stream (SSE) is closed once its headers arrived."""
    if method == "POST":
        kwargs.setdefault("json", {"params": {}})
    with client.stream(method, url, **kwargs) as res:
        return res


def test_every_answer_of_every_route_forbids_framing_and_inline_script(sample):
    """Enumerates the app's routes, so a route added later is covered without touching this test."""
    run_id = sample.start_run("greet")["id"]
    sample.wait(run_id)
    bare = httpx.Client(base_url=sample.url, timeout=30)
    routes = app_routes()
    assert len(routes) >= 12
    seen: dict[str, list[str]] = {}
    for method, rule in routes:
        url = fill(rule, {**ROUTE_VALUES, "run_id": run_id})
        wrong_method = "PUT" if method != "PUT" else "DELETE"
        with_token = answer(sample.client, method, url)
        refused = (405,) if rule.endswith("/artifacts/<path:path>") else (404, 405)  # greet leaves no artifact
        assert with_token.status_code not in refused and with_token.status_code < 500, (method, url)
        cases = {
            "token": with_token,
            "no token": answer(bare, method, url),
            "wrong token": answer(bare, method, url, headers={"Authorization": "Bearer wrong"}),
            "wrong Host": answer(sample.client, method, url, headers={"Host": "evil.example"}),
            "wrong method": answer(sample.client, wrong_method, url),
            "HEAD": answer(sample.client, "HEAD", url),
        }
        assert cases["wrong Host"].status_code == 403 or rule == "/healthz", (method, url)
        assert cases["wrong method"].status_code == 405, (wrong_method, url)
        for case, res in cases.items():
            seen[f"{method} {url} ({case}) -> {res.status_code}"] = security_header_problems(res)
    for url in ("/no/such/page", "/api/nope", "/assets/missing.js", "/assets/../server/api.py"):
        for client in (sample.client, bare):
            res = answer(client, "GET", url)
            seen[f"GET {url} -> {res.status_code}"] = security_header_problems(res)
    login = answer(bare, "GET", f"/?token={TOKEN}")
    assert login.status_code == 303
    seen[f"GET /?token=... -> {login.status_code}"] = security_header_problems(login)
    statuses = {key.rsplit(" ", 1)[1] for key in seen}
    assert {"200", "202", "303", "401", "403", "404", "405", "409"} <= statuses
    assert {key: problems for key, problems in seen.items() if problems} == {}


def test_a_handler_that_crashes_still_answers_with_the_security_headers():
    """Bottle's own 500 page bypasses its after_request hook; the headers must not."""
    app = make_app(None, Guard(TOKEN, "127.0.0.1"), ROOT / "assets")  # type: ignore[arg-type]
    app.route("/api/boom", callback=lambda: 1 / 0)
    environ = {"PATH_INFO": "/api/boom", "HTTP_HOST": "127.0.0.1", "HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    wsgiref.util.setup_testing_defaults(environ)
    started = []
    body = b"".join(app(environ, lambda status, headers, exc_info=None: started.append((status, headers))))
    status, headers = started[0]
    assert status.startswith("500") and b"boom" not in body
    assert security_header_problems(httpx.Response(500, headers=headers)) == []
