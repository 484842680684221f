"""Every route x every kind of user gets the status docs/api.md documents, on a real server.

Users are told apart the way a reverse proxy does it (`auth = header`, the proxy at 127.0.0.1).
The expected statuses are read from the Rights table in docs/api.md, and the routes from the app
itself: a route added without a row there (or without a rule) fails here, and so does a status
that changes.
"""

from __future__ import annotations

import re
import subprocess

import httpx
import pytest

from server.api import make_app
from server.auth import rules as R
from server.auth.guard import Guard
from server.auth.identity import os_user
from tests.conftest import ROOT
from tests.helpers import BIN, FINAL, TOKEN, parse_sse, sse_lines, wait_for
from tests.test_api import answer, app_routes, fill

KINDS = ("anonymous", "viewer", "runner", "another team", "admin")
NAMES = {"viewer": "vic", "runner": "ann", "another team": "otto", "admin": "olga"}
JOBS = """
    [pushbutton]
    auth = header
    trusted_proxies = 127.0.0.1
    admins = team:ops
    max_concurrent_runs = 100
    [team:ops]
    members = olga
    [team:analysts]
    members = ann, alan
    [team:viewers]
    members = vic
    [team:others]
    members = otto
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
    [job:guarded]
    command = sleep {seconds}
    param.seconds.type = int
    param.seconds.default = 0
    run_by = team:analysts
    approve_by = team:viewers
    """


def documented() -> dict[tuple[str, str], dict[str, int]]:
    """The Rights table of docs/api.md: (method, path with <> for each placeholder) -> statuses."""
    text = (ROOT / "docs" / "api.md").read_text()
    table = text.split("| route | rule | anonymous | viewer | runner | another team | admin |", 1)[1]
    out = {}
    for line in table.split("\n")[2:]:
        if not line.startswith("| `"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        method, path = cells[0].strip("`").split(" ", 1)
        out[(method, shape(path))] = dict(zip(KINDS, map(int, cells[2:]), strict=True))
    return out


def shape(path: str) -> str:
    return re.sub(r"<[^>]*>", "<>", path)


@pytest.fixture
def server(pushbutton, write_jobs):
    return pushbutton(write_jobs(JOBS))


def as_user(pb, kind: str, **kwargs) -> httpx.Client:
    headers = {"X-Forwarded-User": NAMES[kind]} if kind in NAMES else {}
    return httpx.Client(base_url=pb.url, headers=headers, timeout=30, **kwargs)


def finished(pb, run_id: int) -> dict:
    """The run once it ended, read as the admin (the per-launch token is no user with auth = header)."""
    admin = as_user(pb, "admin")
    return wait_for(lambda: (run := admin.get(f"/api/runs/{run_id}").json())["state"] in FINAL and run, 30)


def start(client: httpx.Client, job: str = "report", seconds: int = 60) -> dict:
    res = client.post(f"/api/jobs/{job}/runs", json={"params": {"seconds": seconds}})
    assert res.status_code == 202, res.text
    return res.json()["run"]


def test_every_route_gives_every_kind_of_user_its_documented_status(server):
    expected = documented()
    assert sorted(shape(rule) for _, rule in app_routes()) == sorted(path for _, path in expected), \
        "every route needs a row in the Rights table of docs/api.md (and no row without a route)"
    got, want = statuses({kind: as_user(server, kind) for kind in KINDS})
    assert got == want


def statuses(clients: dict[str, httpx.Client]) -> tuple[dict, dict]:
    """(got, want): every route's status for the client of each kind of user, and the documented
    one. Also run by other sign-in methods' tests (tests/test_auth_ldap.py) with their clients."""
    expected, routes = documented(), app_routes()
    runner = clients["runner"]
    shared = start(runner)["id"]
    got, want = {}, {}
    for method, rule in routes:
        for kind, client in clients.items():
            values = {"job_id": "report", "path": "app.css", "run_id": shared, "param_name": "where"}
            if rule.endswith("/cancel"):
                values["run_id"] = start(runner)["id"]  # each stop on a run still going
            if "<token_id" in rule and kind != "anonymous":
                values["token_id"] = client.post("/api/tokens", json={"name": "ci"}).json()["id"]
            body = {"name": "ci"} if rule == "/api/tokens" else {"params": {"seconds": 60}}
            url = fill(rule, {"token_id": 999999, **values})
            res = answer(client, method, url, **({"json": body} if method == "POST" else {}))
            key = f"{method} {rule} as {kind}"
            got[key], want[key] = res.status_code, expected[(method, shape(rule))][kind]
    return got, want


def test_an_app_with_a_route_without_a_rule_is_refused():
    app = make_app(None, Guard(TOKEN, "127.0.0.1"), ROOT / "assets")  # type: ignore[arg-type]
    R.check_routes(app)
    app.route("/api/new", callback=lambda: {"open": True})
    with pytest.raises(ValueError, match="GET /api/new"):
        R.check_routes(app)


def test_a_hidden_job_or_run_answers_exactly_like_a_missing_one(server):
    hidden = start(as_user(server, "runner"), seconds=0)["id"]
    otto = as_user(server, "another team")
    missing = hidden + 1000
    for method, rule in app_routes():
        if "<job_id>" in rule:
            pairs = [({"job_id": "report", "param_name": "where"}, "report"),
                     ({"job_id": "nope", "param_name": "where"}, "nope")]
        elif "<run_id" in rule:
            pairs = [({"run_id": hidden, "path": "a.csv"}, str(hidden)), ({"run_id": missing, "path": "a.csv"},
                                                                            str(missing))]
        else:
            continue
        (seen_values, seen_id), (missing_values, missing_id) = pairs
        seen = otto.request(method, fill(rule, seen_values), json={"params": {}} if method == "POST" else None)
        gone = otto.request(method, fill(rule, missing_values), json={"params": {}} if method == "POST" else None)
        assert seen.status_code == gone.status_code == 404, (method, rule)
        assert seen.text.replace(seen_id, "ID") == gone.text.replace(missing_id, "ID"), (method, rule)
        assert sorted(k for k in seen.headers if k != "date") == sorted(k for k in gone.headers if k != "date")


def test_lists_show_only_what_the_user_may_see(server):
    ann, vic, otto, olga = (as_user(server, k) for k in ("runner", "viewer", "another team", "admin"))
    annes = start(ann, seconds=0)["id"]
    ottos = start(otto, "other", seconds=0)["id"]
    finished(server, annes), finished(server, ottos)
    jobs = {kind: {j["id"]: j["can_run"] for j in c.get("/api/jobs").json()["jobs"]}
            for kind, c in (("ann", ann), ("vic", vic), ("otto", otto), ("olga", olga))}
    assert jobs == {"ann": {"report": True, "guarded": True}, "vic": {"report": False, "guarded": False},
                    "otto": {"other": True}, "olga": {"report": True, "other": True, "guarded": True}}
    ids = {kind: [r["id"] for r in c.get("/api/runs").json()["runs"]] for kind, c in (("vic", vic), ("otto", otto))}
    assert ids == {"vic": [annes], "otto": [ottos]}
    assert otto.get("/api/runs", params={"job": "report"}).json()["runs"] == []
    assert [r["id"] for r in olga.get("/api/runs").json()["runs"]] == [ottos, annes]
    assert [r["id"] for r in olga.get("/api/runs", params={"user": "ann"}).json()["runs"]] == [annes]
    assert olga.get("/api/runs", params={"user": "ann", "job": "other"}).json()["runs"] == []


def test_a_run_records_who_started_and_who_stopped_it_and_runners_stop_only_their_own(server):
    ann, alan, vic, olga = (as_user(server, k) for k in ("runner", "runner", "viewer", "admin"))
    alan.headers["X-Forwarded-User"] = "alan"  # also in run_by: a runner, but not of ann's run
    first, second = start(ann)["id"], start(ann)["id"]
    assert [ann.get(f"/api/runs/{first}").json()[k] for k in ("user", "stopped_by")] == ["ann", None]
    assert alan.post(f"/api/runs/{first}/cancel").status_code == 403
    assert vic.post(f"/api/runs/{first}/cancel").status_code == 403
    assert ann.post(f"/api/runs/{first}/cancel").status_code == 202
    assert olga.post(f"/api/runs/{second}/cancel").status_code == 202
    done = [finished(server, first), finished(server, second)]
    assert [(r["state"], r["user"], r["stopped_by"]) for r in done] == [("cancelled", "ann", "ann"),
                                                                        ("cancelled", "ann", "olga")]
    again = ann.post(f"/api/runs/{first}/rerun", json={"params": {"seconds": 0}}).json()["run"]
    assert again["user"] == "ann"
    assert [r["id"] for r in vic.get("/api/runs", params={"user": "olga"}).json()["runs"]] == []


def test_refusals_are_audited_with_user_target_route_and_rule(server):
    ann, vic, otto, olga = (as_user(server, k) for k in ("runner", "viewer", "another team", "admin"))
    run_id = start(ann)["id"]
    assert vic.post(f"/api/runs/{run_id}/cancel").status_code == 403
    assert otto.get(f"/api/runs/{run_id}/log").status_code == 404  # hidden
    assert vic.get("/api/audit").status_code == 403
    entries = wait_for(lambda: len(got := olga.get("/api/audit", params={"action": "refused"}).json()["entries"]) == 3
                       and got)
    assert [(e["user"], e["target"], e["ok"], e["detail"]) for e in reversed(entries)] == [
        ("vic", f"run:{run_id}", False, {"route": "POST /api/runs/<run_id:int>/cancel", "rule": "run.stop"}),
        ("otto", f"run:{run_id}", False, {"route": "GET /api/runs/<run_id:int>/log", "rule": "run.view"}),
        ("vic", "", False, {"route": "GET /api/audit", "rule": "admin"}),
    ]
    assert all(e["address"] == "127.0.0.1" for e in entries)


def test_the_events_stream_never_carries_a_run_its_user_may_not_see(server):
    ann, otto = as_user(server, "runner"), as_user(server, "another team")
    going = start(ann)["id"]  # active when both connect: in ann's snapshot only
    with ann.stream("GET", "/api/events") as ann_res, otto.stream("GET", "/api/events") as otto_res:
        ann_events, otto_events = parse_sse(sse_lines(ann_res)), parse_sse(sse_lines(otto_res))
        assert [r["id"] for r in next(ann_events).data["active"]] == [going]
        assert next(otto_events).data == {"active": []}
        annes = start(ann, seconds=0)["id"]
        finished(server, annes)
        ottos = start(otto, "other", seconds=0)["id"]
        seen_by_otto = []
        for event in otto_events:  # ann's run ended before otto's began: a leak would come first
            seen_by_otto.append((event.data["id"], event.data["state"]))
            if event.data["state"] == "succeeded":
                break
        seen_by_ann = []
        for event in ann_events:
            seen_by_ann.append((event.data["id"], event.data["state"]))
            if event.data["id"] == annes and event.data["state"] == "succeeded":
                break
    assert seen_by_otto == [(ottos, "queued"), (ottos, "running"), (ottos, "succeeded")]
    assert {run_id for run_id, _ in seen_by_ann} == {annes}


def test_approve_and_reject_answer_every_kind_of_user_by_the_run_approve_rule(server):
    """The table's rows for approve and reject are about a run of a job without approve_by (nobody
    may decide on it); here the job's approve_by names the viewers' team: they decide (it lets them
    see the job), the runner who requested the run may not, an admin not named may not."""
    runner = as_user(server, "runner")
    for action in ("approve", "reject"):
        got = {}
        for kind in KINDS:
            run = start(runner, "guarded", seconds=0)  # a fresh run awaiting approval for each
            assert run["state"] == "awaiting_approval"
            got[kind] = as_user(server, kind).post(f"/api/runs/{run['id']}/{action}").status_code
        assert got == {"anonymous": 401, "viewer": 202, "runner": 403, "another team": 404, "admin": 403}, action


def test_a_run_from_the_terminal_is_recorded_as_cli_and_the_os_user(server, tmp_path, write_jobs):
    jobs = write_jobs(JOBS)
    done = subprocess.run([BIN, "run", "other", "--jobs", str(jobs), "--data-dir", str(server.data_dir)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    olga = as_user(server, "admin")
    name = f"cli:{os_user()}"
    runs = wait_for(lambda: olga.get("/api/runs", params={"user": name}).json()["runs"])
    assert [(r["job"], r["user"]) for r in runs] == [("other", name)]
    assert runs[0]["stopped_by"] is None
