"""HTTP: thin Bottle handlers over Runs; JSON in and out, SSE for live events.

Handlers parse the request, call one Runs method, and shape the answer; errors map to statuses in
one place (`_errors`). Bottle's `request`/`response` are made greenlet-local by the runtime before
this app serves anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import bottle
from bottle import HTTPResponse, request, response

from server import sse
from server.auth import Guard
from server.events import in_pool
from server.params import ParamsError
from server.runs import Conflict, NotFound, Runs, public

MAX_BODY = 1024 * 1024
PAGE = 200


def _json(status: int, body: dict) -> HTTPResponse:
    return HTTPResponse(json.dumps(body), status, {"Content-Type": "application/json"})


def _errors(callback):
    """Bottle plugin: domain errors -> JSON answers."""

    def wrapper(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except NotFound as exc:
            return _json(404, {"error": str(exc)})
        except ParamsError as exc:
            return _json(400, {"error": "invalid parameters", "fields": exc.fields})
        except Conflict as exc:
            return _json(409, {"error": str(exc)})

    return wrapper


def _body() -> dict:
    if (request.content_length or 0) > MAX_BODY:
        raise HTTPResponse(json.dumps({"error": "body too large"}), 413)
    raw = request.body.read() or b"{}"
    try:
        body = json.loads(raw)
    except ValueError:
        raise _json(400, {"error": "body must be JSON"}) from None
    if not isinstance(body, dict) or not isinstance(body.get("params", {}), dict):
        raise _json(400, {"error": 'body must be {"params": {...}}'})
    return body


def _int_query(name: str, default: int | None, low: int = 1, high: int = 10**12) -> int | None:
    raw = request.query.get(name)
    if raw in (None, ""):
        return default
    try:
        return max(low, min(high, int(raw)))
    except ValueError:
        raise _json(400, {"error": f"{name} must be a whole number"}) from None


def _stream(body) -> object:
    response.content_type = "text/event-stream; charset=utf-8"
    response.set_header("Cache-Control", "no-store")
    response.set_header("X-Accel-Buffering", "no")
    return body


def make_app(runs: Runs, guard: Guard, assets: Path) -> bottle.Bottle:
    app = bottle.Bottle(catchall=True)
    app.install(_errors)

    def error_page(res: HTTPResponse) -> str:
        response.content_type = "application/json"
        return json.dumps({"error": res.body if isinstance(res.body, str) else res.status_line})

    app.default_error_handler = error_page

    @app.hook("before_request")
    def check_access() -> None:
        path = request.path
        needs_token = path.startswith("/api/")
        if path == "/healthz":
            return
        refusal = guard.refuse(request.environ, needs_token)
        if refusal is not None:
            raise _json(refusal[0], {"error": refusal[1]})

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    @app.get("/")
    def index():
        token = request.query.get("token")
        if token is not None:
            if not guard.valid_token(token):
                return _json(401, {"error": "wrong token"})
            # Swap the token in the address bar for a cookie, then drop it from the URL.
            return HTTPResponse(status=303, headers={"Location": "/", "Set-Cookie": guard.cookie_header()})
        if not guard.valid_token(guard.token_of(request.environ)):
            return _json(401, {"error": "open the address printed at start-up (it ends in ?token=...)"})
        return _static(assets, "index.html")

    @app.get("/assets/<path:path>")
    def asset(path: str):
        return _static(assets, path)

    @app.get("/api/jobs")
    def jobs():
        last = in_pool(runs.store.last_runs)
        out = []
        for job in runs.catalog.jobs.values():
            item = job.public()
            mine = [r for r in runs.active.values() if r.job.id == job.id]
            item["running"] = sum(r.state == "running" for r in mine)
            item["queued"] = sum(r.state == "queued" for r in mine)
            item["last_run"] = public(last[job.id]) if job.id in last else None
            out.append(item)
        return {"title": runs.catalog.settings.title, "jobs": out}

    @app.post("/api/jobs/<job_id>/runs")
    def start(job_id: str):
        run = runs.start(job_id, _body().get("params", {}))
        response.status = 202
        return {"run": run.public()}

    @app.get("/api/runs")
    def history():
        found = in_pool(runs.store.runs, request.query.get("job") or None, request.query.get("state") or None,
                        _int_query("limit", 50, high=500), _int_query("before", None))
        return {"runs": [public(r) for r in found]}

    @app.get("/api/runs/<run_id:int>")
    def one(run_id: int):
        return public(runs.get(run_id))

    @app.post("/api/runs/<run_id:int>/cancel")
    def cancel(run_id: int):
        response.status = 202
        return {"run": runs.cancel(run_id)}

    @app.post("/api/runs/<run_id:int>/rerun")
    def rerun(run_id: int):
        run = runs.rerun(run_id, _body().get("params", {}))
        response.status = 202
        return {"run": run.public()}

    @app.get("/api/runs/<run_id:int>/log")
    def log(run_id: int):
        record = runs.get(run_id)
        response.content_type = "text/plain; charset=utf-8"
        response.set_header("Content-Disposition", f'attachment; filename="{record["job"]}-run-{run_id}.log"')
        return _log_lines(runs, run_id)

    @app.get("/api/runs/<run_id:int>/events")
    def run_events(run_id: int):
        runs.get(run_id)
        after = request.get_header("Last-Event-ID") or request.query.get("after") or "0"
        try:
            after_seq = max(0, int(after))
        except ValueError:
            return _json(400, {"error": "Last-Event-ID must be a whole number"})
        return _stream(sse.run_events(runs, run_id, after_seq))

    @app.get("/api/events")
    def all_events():
        snapshot = [r.public() for r in runs.active.values()]
        return _stream(sse.changes(runs, snapshot))

    return app


def _log_lines(runs: Runs, run_id: int):
    after = 0
    while True:
        rows = in_pool(runs.store.events, run_id, after, PAGE, "output")
        if not rows:
            return
        after = rows[-1][0]
        yield "".join(line + "\n" for _, _, data in rows for line in json.loads(data)["lines"]).encode()


def _static(root: Path, path: str):
    return bottle.static_file(path, root=str(root))
