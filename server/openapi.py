"""The HTTP API as an OpenAPI 3.1 document, served at `/api/openapi.json`.

Written here, next to the code, as data: tests/test_openapi.py fails when a route exists that the
document does not describe or the reverse, and runs schemathesis against a live server so every
answer is checked against it. Objects allow more properties than they list: a new field is not a
breaking change; a missing or mistyped one is.
"""

from __future__ import annotations

from typing import Any

MAX_ID = 2**63 - 1


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict:
    return {"type": "object", "required": list(required), "properties": {**required, **(optional or {})}}


STR, INT, NUM, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
OPT_STR = {"type": ["string", "null"]}
TIME = {"type": ["string", "null"], "format": "date-time"}
ANY = {}

SCHEMAS: dict[str, dict] = {
    "Error": _obj({"error": STR}, {"fields": {"type": "object", "additionalProperties": STR},
                                   "confirm": STR, "auth": STR}),
    "Run": _obj({"id": INT, "job": STR, "state": {"enum": [
        "awaiting_approval", "queued", "running", "succeeded", "failed", "cancelled", "timed_out", "interrupted",
        "rejected", "expired"]}, "params": {"type": "object"}, "created": TIME, "started": TIME, "finished": TIME,
        "exit_code": {"type": ["integer", "null"]}, "hosts": {"type": "array", "items": {"type": "object"}}},
        {"progress": {"type": ["number", "null"]}, "message": OPT_STR, "user": OPT_STR, "stopped_by": OPT_STR,
         "preview": {"type": ["object", "null"]}, "approval": {"type": ["object", "null"]}}),
    "RunAnswer": _obj({"run": _ref("Run")}),
    "Runs": _obj({"runs": {"type": "array", "items": _ref("Run")}}),
    "Param": _obj({"name": STR, "type": STR, "label": STR, "required": BOOL}),
    "Job": _obj({"id": STR, "title": STR, "params": {"type": "array", "items": _ref("Param")},
                 "can_run": BOOL, "running": INT, "queued": INT},
                {"description": STR, "confirm": STR, "targets": {"type": "array", "items": STR},
                 "last_run": {"oneOf": [_ref("Run"), {"type": "null"}]}}),
    "Jobs": _obj({"title": STR, "jobs": {"type": "array", "items": _ref("Job")}}),
    "Preview": _obj({"argv": {"type": "array", "items": STR}, "shell": BOOL,
                     "targets": {"type": "array", "items": STR}, "env": {"type": "array", "items": STR}},
                    {"workdir": OPT_STR, "remote": {"type": ["object", "null"]},
                     "masked": {"type": "array", "items": STR}}),
    "Me": _obj({"user": STR, "admin": BOOL, "auth": STR, "method": STR}, {"teams": {"type": "array", "items": STR}}),
    "Tokens": _obj({"tokens": {"type": "array", "items": _obj({"id": INT, "name": STR})}}),
    "NewToken": _obj({"id": INT, "name": STR, "token": STR}),
    "Audit": _obj({"entries": {"type": "array", "items": _obj(
        {"id": INT, "time": STR, "action": STR, "ok": BOOL}, {"user": OPT_STR, "target": OPT_STR,
                                                             "address": OPT_STR, "detail": ANY})}}),
    "StartBody": {"type": "object", "properties": {"params": {"type": "object"}, "confirm": BOOL}},
    "CommentBody": {"type": "object", "properties": {"comment": {"type": "string", "maxLength": 2000}}},
    "SignIn": _obj({"user": STR, "password": STR}),
    "TokenBody": {"type": "object", "properties": {"name": STR}},
}

ERRORS = {
    "400": "a value, query or body the server refuses (`fields` names each bad value)",
    "401": "not signed in",
    "403": "signed in, not allowed; or a Host or Origin the server refuses",
    "404": "no such job or run, or one the user may not see (the same answer)",
    "409": "the run is not in a state that allows it",
    "413": "the body is over 1 MiB",
    "428": "the job asks for confirmation: send `\"confirm\": true`",
    "422": "the jobs.ini on disk fails `check`: the last good one stays in force",
    "429": "too many failed sign-ins: wait `Retry-After` seconds",
    "502": "the choices command failed, printed too much, or cannot start (`detail`: its last stderr lines)",
    "504": "the choices command did not finish in time",
    "503": "the directory or provider does not answer, or the history cannot be written (a full disk)",
    "507": "the server's disk has no room for the uploaded files",
}


def _json(schema: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _op(summary: str, rule: str, ok: dict[str, dict], errors: str = "", *, params: list | None = None,
        body: str | None = None, public: bool = False) -> dict:
    responses = dict(ok)
    for code in (errors.split() + ([] if public else ["401", "403"])):
        responses.setdefault(code, _json("Error", ERRORS[code]))
    op: dict[str, Any] = {"summary": summary, "x-pushbutton-rule": rule, "responses": responses}
    if params:
        op["parameters"] = params
    if body:
        content = {"application/json": {"schema": _ref(body)}}
        if body == "StartBody":  # a job with file parameters: docs/api.md, Multipart starts
            content["multipart/form-data"] = {"schema": {
                "type": "object", "properties": {"json": {"type": "string", "contentMediaType": "application/json"}},
                "additionalProperties": {"type": "string", "contentMediaType": "application/octet-stream"}}}
        op["requestBody"] = {"required": False, "content": content}
        op["responses"].setdefault("400", _json("Error", ERRORS["400"]))
        op["responses"].setdefault("413", _json("Error", ERRORS["413"]))
    if public:
        op["security"] = []
    return op


def _path(name: str, schema: dict) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, schema: dict, description: str = "") -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


JOB_ID = _path("job_id", STR)
RUN_ID = _path("run_id", {"type": "integer", "minimum": 0, "maximum": MAX_ID})
LIMIT = {"type": "integer", "minimum": 1, "maximum": 500}
TEXT = {"description": "text", "content": {"text/plain": {"schema": STR}}}


def _stream(events: list[str]) -> dict:
    """Server-Sent Events: each event's `data` is one JSON object (docs/api.md)."""
    event = _obj({"event": {"enum": events}, "data": {"type": "string", "contentMediaType": "application/json",
                                                       "contentSchema": {"type": "object"}}},
                 {"id": {"type": "string", "pattern": "^[0-9]+$"}, "retry": INT})
    return {"description": "Server-Sent Events (docs/api.md)", "content": {"text/event-stream": {"schema": event}}}


RUN_STREAM = _stream(["state", "output", "progress", "end"])
CHANGES_STREAM = _stream(["ready", "state", "catalog"])
NONE = {"description": "done"}


def paths() -> dict[str, dict]:
    run = [RUN_ID]
    return {
        "/healthz": {"get": _op("Is the server up", "public", {"200": {
            "description": "up", "content": {"application/json": {"schema": _obj({"ok": BOOL})}}}}, public=True)},
        "/": {"get": _op("The page (with ?token=: swap the token for a cookie)", "public", {
            "200": {"description": "the page", "content": {"text/html": {"schema": STR}}},
            "303": {"description": "the token became a cookie"}}, "401", public=True,
            params=[_query("token", STR)])},
        "/assets/{path}": {"get": _op("The page's files", "public", {"200": {"description": "a file"}}, "404",
                                      public=True, params=[_path("path", STR)])},
        "/api/openapi.json": {"get": _op("This document", "public", {"200": {
            "description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}},
            public=True)},
        "/api/session": {
            "post": _op("Sign in with a password (auth = local or ldap)", "public", {"200": _json("Me", "signed in")},
                        "400 401 429 503", body="SignIn", public=True),
            "delete": _op("Sign out", "signed_in", {"204": NONE}),
        },
        "/api/me": {"get": _op("Who the request is", "signed_in", {"200": _json("Me", "the user")})},
        "/api/tokens": {
            "get": _op("The user's personal API tokens (never their values)", "signed_in",
                       {"200": _json("Tokens", "tokens")}),
            "post": _op("Create a personal API token (its value is shown once)", "signed_in",
                        {"201": _json("NewToken", "created")}, body="TokenBody"),
        },
        "/api/tokens/{token_id}": {"delete": _op("Revoke one of the user's tokens", "signed_in", {"204": NONE},
                                                 "404", params=[_path("token_id", RUN_ID["schema"])])},
        "/api/jobs": {"get": _op("The jobs the user may see", "signed_in", {"200": _json("Jobs", "jobs")})},
        "/api/jobs/{job_id}/runs": {"post": _op(
            "Start a run", "job.run", {"202": _json("RunAnswer", "started (or awaiting approval)")},
            "404 409 428 503 507", params=[JOB_ID], body="StartBody")},
        "/api/jobs/{job_id}/preview": {"post": _op(
            "What a start with these values would run; nothing runs", "job.view",
            {"200": _json("Preview", "the command")}, "404", params=[JOB_ID], body="StartBody")},
        "/api/jobs/{job_id}/params/{param_name}/choices": {"get": _op(
            "A parameter's current choices, from its command (`?other=value` for the fields it depends on)",
            "job.view", {"200": {"description": "the list", "content": {"application/json": {"schema": _obj(
                {"choices": {"type": "array", "items": STR}}, {"computed_at": TIME})}}}}, "400 404 502 504",
            params=[JOB_ID, _path("param_name", STR)])},
        "/api/reload": {"post": _op("Re-read jobs.ini now (admins)", "admin", {"200": {
            "description": "applied", "content": {"application/json": {"schema": _obj({"config_error": OPT_STR})}}}},
            "422")},
        "/api/runs": {"get": _op("History, newest first", "signed_in", {"200": _json("Runs", "runs")}, "400", params=[
            _query("job", STR), _query("state", STR), _query("user", STR), _query("limit", LIMIT),
            _query("before", RUN_ID["schema"])])},
        "/api/runs/{run_id}": {"get": _op("One run", "run.view", {"200": _json("Run", "the run")}, "400 404",
                                          params=run)},
        "/api/runs/{run_id}/cancel": {"post": _op("Stop a run", "run.stop", {"202": _json("RunAnswer", "stopping")},
                                                  "400 404 409", params=run)},
        "/api/runs/{run_id}/rerun": {"post": _op(
            "Run again with the same values (secrets given again)", "run.rerun",
            {"202": _json("RunAnswer", "started")}, "404 409 428 503 507", params=run, body="StartBody")},
        "/api/runs/{run_id}/approve": {"post": _op("Approve a run awaiting approval", "run.approve", {
            "202": _json("RunAnswer", "approved")}, "404 409", params=run, body="CommentBody")},
        "/api/runs/{run_id}/reject": {"post": _op("Reject a run awaiting approval", "run.approve", {
            "202": _json("RunAnswer", "rejected")}, "404 409", params=run, body="CommentBody")},
        "/api/approvals": {"get": _op("Runs awaiting this user's decision", "signed_in",
                                      {"200": _json("Runs", "runs")})},
        "/api/runs/{run_id}/log": {"get": _op("The whole output as a file", "run.view", {"200": TEXT}, "400 404",
                                              params=run)},
        "/api/runs/{run_id}/events": {"get": _op("A run's events, live", "run.view", {"200": RUN_STREAM}, "400 404",
                                                 params=[*run, _query("after", RUN_ID["schema"])])},
        "/api/runs/{run_id}/artifacts": {"get": _op("The files the run left in $PB_ARTIFACTS", "run.view", {
            "200": {"description": "in name order", "content": {"application/json": {"schema": _obj({"artifacts": {
                "type": "array", "items": _obj({"name": STR, "size": INT}, {"sha256": STR, "modified": STR})}})}}}},
            "400 404", params=run)},
        "/api/runs/{run_id}/artifacts/{path}": {"get": _op("One artifact, as an attachment", "run.view", {
            "200": {"description": "the file", "content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}}}, "400 404", params=[*run, _path("path", STR)])},
        "/api/events": {"get": _op("Every visible run's state changes, live", "signed_in", {"200": CHANGES_STREAM})},
        "/api/audit": {"get": _op("The audit log (admins)", "admin", {"200": _json("Audit", "entries")}, "400",
                                  params=[_query("user", STR), _query("action", STR), _query("since", STR),
                                          _query("until", STR), _query("limit", LIMIT),
                                          _query("before", RUN_ID["schema"])])},
        "/metrics": {"get": _op("Prometheus metrics (admins)", "admin", {"200": {
            "description": "Prometheus text format", "content": {"text/plain": {"schema": STR}}}})},
        "/auth/oidc/login": {"get": _op("Start an OpenID Connect sign-in", "public",
                                        {"303": {"description": "to the provider"}}, "400", public=True)},
        "/auth/oidc/callback": {"get": _op("The provider's answer", "public", {"303": {"description": "to the page"}},
                                           "400", public=True)},
        "/auth/oidc/logout": {"post": _op("Sign out at the provider too", "signed_in", {"200": {
            "description": "where to end the provider's session",
            "content": {"application/json": {"schema": _obj({"end_session": OPT_STR})}}}}, "400")},
    }


def document(title: str = "Pushbutton") -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": f"{title} API", "version": "1",
                 "description": "Turn ops scripts into buttons. Rights: docs/api.md. Each operation's "
                                "`x-pushbutton-rule` is the rule the server checks before it runs."},
        "paths": paths(),
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "the per-launch token (auth = token) or a personal API token"},
            "session": {"type": "apiKey", "in": "cookie", "name": "pushbutton_session_<port>",
                        "description": "<port> is the port the browser reached (of the Host header, else 80 "
                                       "or 443); named __Host-pushbutton_session_<port> over HTTPS at the root "
                                       "path"}}},
        "security": [{"bearer": []}, {"session": []}],
    }


def add_routes(app) -> None:
    from server.auth import rules as R

    @app.get("/api/openapi.json", rule=R.PUBLIC)
    def openapi():
        return document()
