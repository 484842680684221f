"""The OpenAPI 3.1 document (server/openapi.py) describes exactly the routes the server has,
each with the rule it declares, and every answer of a live server matches it (schemathesis, a
bounded number of examples per operation, with and without credentials)."""

from __future__ import annotations

import re

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import given as hypothesis_given
from schemathesis.specs.openapi.checks import positive_data_acceptance

from server.api import make_app
from server.auth import rules as R
from server.auth.guard import Guard
from server.openapi import document
from tests.conftest import ROOT
from tests.helpers import TOKEN, Pushbutton

SCHEMA = schemathesis.openapi.from_dict(document())
STREAMS = {"/api/events"}  # never ends: checked by status and type only, below
JOBS = """
[job:hello]
command = echo hello {who}
param.who.type = text
param.who.default = world

[job:pick]
command = echo {env}
param.env.type = choice
param.env.choices = staging, production
confirm = Really {env}?

[job:place]
command = echo {where}
param.where.type = choice
param.where.choices_from = echo here
"""


def _routes() -> dict[tuple[str, str], str]:
    app = make_app(None, Guard(TOKEN, "127.0.0.1"), ROOT / "assets")  # type: ignore[arg-type]
    return {(route.method, re.sub(r"<(\w+)(?::[^>]*)?>", r"{\1}", route.rule)): route.config.get(R.RULE_CONFIG)
            for route in app.routes}


def test_the_document_describes_exactly_the_routes_the_server_has_with_their_rules():
    documented = {(method.upper(), path): op["x-pushbutton-rule"]
                  for path, ops in document()["paths"].items() for method, op in ops.items()}
    served = _routes()
    assert sorted(set(served) - set(documented)) == [], "routes the document does not describe"
    assert sorted(set(documented) - set(served)) == [], "documented routes the server does not have"
    assert documented == served


def test_the_document_is_served_and_loads_as_openapi_3_1(pushbutton, write_jobs):
    pb = pushbutton(write_jobs(JOBS))
    res = pb.client.get("/api/openapi.json", headers={"Authorization": ""})
    assert res.status_code == 200
    assert res.json() == document()
    assert res.json()["openapi"] == "3.1.0"
    assert len(list(SCHEMA.get_all_operations())) == sum(len(ops) for ops in document()["paths"].values())


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    folder = tmp_path_factory.mktemp("openapi")
    (folder / "jobs.ini").write_text(JOBS)
    pb = Pushbutton(folder / "jobs.ini", folder / "data", folder / "server.log").start()
    pb.wait(pb.start_run("hello")["id"])  # a finished run for the run routes to find
    yield pb
    pb.stop()
    assert "Traceback" not in pb.log.read_text()


OPERATIONS = [op.ok() for op in SCHEMA.get_all_operations()]


@pytest.mark.parametrize("credentials", ["token", "none"])
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op.method.upper()} {op.path}")
def test_every_answer_of_a_live_server_matches_the_document(live, operation, credentials):
    headers = {"Authorization": f"Bearer {TOKEN}"} if credentials == "token" else {}
    stream = operation.path in STREAMS

    @hypothesis_given(case=operation.as_strategy())
    @settings(max_examples=6, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def check(case):
        if stream:
            with httpx.stream(case.method, live.url + case.formatted_path, headers=headers, timeout=30) as res:
                assert res.status_code in (200, 401)
                assert res.status_code == 401 or res.headers["content-type"].startswith("text/event-stream")
            return
        res = case.call(base_url=live.url, headers=headers, timeout=30)
        assert res.status_code < 500, f"{case.method} {case.formatted_path}: {res.status_code} {res.text[:500]}"
        # A request of the right shape may still be refused (400), as documented: a sign-in
        # method the server does not use, an audit action that does not exist.
        case.validate_response(res, excluded_checks=[positive_data_acceptance])

    check()


# Generated ids almost never name a job or run that exists, so the answers a real job or run gets
# (a run started, a preview, a list of choices) are asked for here, each by name, and checked too.
REAL = [
    ("POST", "/api/jobs/{job_id}/runs", {"job_id": "hello"}, {"params": {"who": "Ada"}}, 202),
    ("POST", "/api/jobs/{job_id}/runs", {"job_id": "pick"}, {"params": {"env": "staging"}}, 428),  # confirm first
    ("POST", "/api/jobs/{job_id}/runs", {"job_id": "pick"}, {"params": {"env": "staging"}, "confirm": True}, 202),
    ("POST", "/api/jobs/{job_id}/runs", {"job_id": "hello"}, {"params": {"nobody": "x"}}, 400),
    ("POST", "/api/jobs/{job_id}/preview", {"job_id": "hello"}, {"params": {"who": "Ada"}}, 200),
    ("POST", "/api/jobs/{job_id}/preview", {"job_id": "pick"}, {"params": {"env": "production"}}, 200),
    ("GET", "/api/jobs/{job_id}/params/{param_name}/choices", {"job_id": "place", "param_name": "where"}, None, 200),
    ("GET", "/api/runs/{run_id}", {"run_id": 1}, None, 200),
    ("GET", "/api/runs/{run_id}/log", {"run_id": 1}, None, 200),
    ("GET", "/api/runs/{run_id}/artifacts", {"run_id": 1}, None, 200),
    ("POST", "/api/runs/{run_id}/rerun", {"run_id": 1}, {}, 202),
    ("POST", "/api/runs/{run_id}/cancel", {"run_id": 1}, None, 409),
    ("POST", "/api/runs/{run_id}/approve", {"run_id": 1}, {}, 403),  # the job has no approve_by
]


@pytest.mark.parametrize(("method", "path", "ids", "body", "status"), REAL,
                         ids=[f"{m} {p} {s}" for m, p, _, _, s in REAL])
def test_the_answers_about_real_jobs_and_runs_match_the_document(live, method, path, ids, body, status):
    operation = next(op for op in OPERATIONS if op.method.upper() == method and op.path == path)
    extra = {} if body is None else {"body": body, "media_type": "application/json"}
    case = operation.Case(path_parameters=ids, **extra)
    res = case.call(base_url=live.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert res.status_code == status, res.text[:500]
    case.validate_response(res, excluded_checks=[positive_data_acceptance])
