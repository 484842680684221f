"""HTTP: thin Bottle handlers over Runs; JSON in and out, SSE for live events.

Handlers parse the request, call one Runs method, and shape the answer; errors map to statuses in
one place (`_errors`). Every route declares the rule it needs (`rule=`, server/auth/rules.py),
checked before its handler runs; `make_app` refuses a route without one. Bottle's
`request`/`response` are made greenlet-local by the runtime before this app serves anything.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import bottle
import gevent
from bottle import HTTPResponse, request, response

from server import metrics, openapi, reload, sse
from server.approval_routes import add_routes as add_approval_routes
from server.auth import Guard, audit
from server.auth import rules as R
from server.auth.authenticate import Authenticator
from server.auth.proxies import client_address, mount_path
from server.auth.routes import add_routes
from server.choice_routes import add_routes as add_choice_routes
from server.connections import DIRECT, HEADER_TIMEOUT
from server.events import in_pool
from server.files import artifact_routes, uploads
from server.params import ParamsError
from server.preview import preview as preview_of
from server.run_errors import ConfirmationRequired, Conflict, NotFound
from server.run_record import public
from server.runs import Runs
from server.schedules import public as public_schedules

MAX_BODY = 1024 * 1024
MAX_INT = 2**63 - 1  # SQLite's INTEGER: ids and numbers in requests stay within it
PAGE = 200
# On every answer: no other page (another port of this machine is the same site to cookies) may
# frame this one and click for the user; only our own files run or style; nothing sniffed or leaked.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "worker-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
                    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class _App(bottle.Bottle):
    """A Bottle app whose every answer carries SECURITY_HEADERS, and whose routes take `rule=`.

    Added where the status line and headers leave for the server: Bottle's `after_request` hook
    misses answers (the 500 for a crashed handler replaces the headers it set), this cannot.
    """

    base_path = ""  # '' or '/ops': the app answers only under it (make_app's base_path)

    def wsgi(self, environ, start_response):
        def start(status, headers, exc_info=None):
            kept = [(k, v) for k, v in headers if k.title() not in SECURITY_HEADERS]
            return start_response(status, kept + list(SECURITY_HEADERS.items()), exc_info)

        outside = _mount(environ, self.base_path)
        if outside is not None:
            status, headers, body = outside
            start(status, headers)
            return [body]
        return super().wsgi(environ, start)

    def route(self, path=None, method="GET", callback=None, name=None, apply=None, skip=None, rule=None,
              **config):
        """`rule=` names the route's access rule (server/auth/rules.py); Bottle's Route has its own
        `rule` (the path), so it is kept in the route's config under R.RULE_CONFIG."""
        if rule is not None:
            config[R.RULE_CONFIG] = rule
        return super().route(path, method, callback, name, apply, skip, **config)


def _mount(environ: dict, base: str) -> tuple[str, list, bytes] | None:
    """Under a base path: move it from PATH_INFO to SCRIPT_NAME (routes stay as declared) and
    return None; `/ops` is redirected to `/ops/` (the page's relative URLs need the slash);
    anything outside it is a 404."""
    path = environ.get("PATH_INFO", "")
    if not base or path.startswith(base + "/"):
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + base
        environ["PATH_INFO"] = path[len(base):]
        return None
    if path == base:
        query = environ.get("QUERY_STRING")
        location = environ.get("SCRIPT_NAME", "") + base + "/" + (f"?{query}" if query else "")
        return "301 Moved Permanently", [("Location", location), ("Content-Length", "0")], b""
    body = json.dumps({"error": "not found"}).encode()
    return "404 Not Found", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))], body


def _json(status: int, body: dict) -> HTTPResponse:
    return HTTPResponse(json.dumps(body), status, {"Content-Type": "application/json"})


def _errors(callback):
    """Bottle plugin: domain errors -> JSON answers."""

    def wrapper(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except NotFound as exc:
            return _json(404, {"error": str(exc)})
        except R.SignInRequired as exc:
            return _json(401, {"error": "sign in", "auth": exc.auth})
        except R.Forbidden as exc:
            return _json(403, {"error": str(exc)})
        except ParamsError as exc:
            return _json(400, {"error": "invalid parameters", "fields": exc.fields})
        except Conflict as exc:
            return _json(409, {"error": str(exc)})
        except ConfirmationRequired as exc:
            return _json(428, {"error": "confirmation required", "confirm": exc.question})
        except sqlite3.OperationalError as exc:  # a full disk, a database locked past its timeout
            return _json(503, {"error": f"history could not be written or read: {exc}"})

    return wrapper


def _closing(status: int, message: str) -> HTTPResponse:
    """An answer sent before the request body was read to its end: the connection cannot carry
    another request, so it closes (without reading the rest, however long)."""
    res = _json(status, {"error": message})
    res.set_header("Connection", "close")
    return res


def _read_body() -> bytes:
    """At most MAX_BODY bytes, within HEADER_TIMEOUT, from `wsgi.input` itself: Bottle's
    `request.body` fails on a chunked body, which gevent has already de-chunked."""
    length = request.content_length  # -1 when absent, as for a chunked body
    if length > MAX_BODY:
        raise _closing(413, "body too large")
    if length < 0 and not request.environ.get("wsgi.input_terminated"):
        return b""  # no length and no end of input to read to
    left = MAX_BODY + 1 if length < 0 else length
    stream, chunks = request.environ["wsgi.input"], []
    deadline = gevent.Timeout(HEADER_TIMEOUT)
    try:
        with deadline:
            while left > 0 and (chunk := stream.read(min(left, 65536))):
                chunks.append(chunk)
                left -= len(chunk)
    except gevent.Timeout as exc:
        if exc is not deadline:
            raise
        raise _closing(408, "the body did not arrive in time") from None
    except (OSError, ValueError):
        raise _closing(400, "the body could not be read") from None
    raw = b"".join(chunks)
    if len(raw) > MAX_BODY:
        raise _closing(413, "body too large")
    return raw


def _body(raw: bytes | None = None) -> dict:
    """The JSON body (or, given `raw`, a multipart start's `json` part): `{"params": {...}}`."""
    raw = (_read_body() if raw is None else raw) or b"{}"
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        raise _json(400, {"error": "body must be JSON"}) from None
    if not isinstance(body, dict) or not isinstance(body.get("params", {}), dict):
        raise _json(400, {"error": 'body must be {"params": {...}}'})
    return body


def _whole(raw: str, name: str, low: int, high: int) -> int:
    """A whole number from a query or header, limited to [low, high]. Every number meets SQLite,
    so one beyond its INTEGER (or not plain digits) is a 400, never an overflow there."""
    if not re.fullmatch(r"-?[0-9]{1,19}", raw) or abs(int(raw)) > MAX_INT:
        raise _json(400, {"error": f"{name} must be a whole number up to {MAX_INT}"})
    return max(low, min(high, int(raw)))


def _int_query(name: str, default: int | None, low: int = 1, high: int = MAX_INT) -> int | None:
    raw = request.query.get(name)
    if raw in (None, ""):
        return default
    return _whole(raw, name, low, high)


def _row_id(_config: str) -> tuple:
    """The `int` route filter: an id in a path is plain digits within SQLite's INTEGER; more is a
    400 (and a sign or anything else matches no route: 404)."""

    def to_python(raw: str) -> int:
        if int(raw) > MAX_INT:
            raise ValueError(raw)
        return int(raw)

    return r"[0-9]+", to_python, lambda value: str(int(value))


def _stream(body) -> object:
    response.content_type = "text/event-stream; charset=utf-8"
    response.set_header("Cache-Control", "no-store")
    response.set_header("X-Accel-Buffering", "no")
    return body


def make_app(runs: Runs, guard: Guard, assets: Path, base_path: str = "") -> bottle.Bottle:
    app = _App(catchall=True)
    app.base_path = base_path
    app.router.add_filter("int", _row_id)  # before any route: every `<x:int>` is bounded
    app.install(_errors)
    app.install(R.Rules(runs))  # inside _errors: its refusals are answered there
    authn = None if runs is None else Authenticator(runs.catalog, runs.store, runs.rights, guard, runs.audit)

    def error_page(res: HTTPResponse) -> str:
        response.content_type = "application/json"
        return json.dumps({"error": res.body if isinstance(res.body, str) else res.status_line})

    app.default_error_handler = error_page

    @app.hook("before_request")
    def check_access() -> None:
        environ = request.environ
        environ[R.USER_KEY] = None
        if request.path == "/healthz":
            return
        refusal = guard.refuse(environ, needs_token=False)
        if refusal is not None:
            raise _json(refusal[0], {"error": refusal[1]})
        environ[R.USER_KEY] = authn.identify(environ)  # API token, session, or the method's own

    if authn is not None:
        authn.revoked = lambda: sse.credentials_changed(runs)

    def _holds():
        """For a stream: whether its request's credential still names the user it was opened by."""
        environ, user = request.environ, R.current_user()
        return lambda: authn.still(environ, user)

    @app.get("/healthz", rule=R.PUBLIC)
    def healthz():
        return {"ok": True}

    @app.get("/", rule=R.PUBLIC)
    def index():
        token = request.query.get("token")
        if token is not None:
            if not guard.valid_token(token):
                return _json(401, {"error": "wrong token"})
            # Swap the token in the address bar for a cookie, then drop it from the URL.
            return HTTPResponse(status=303, headers={"Location": mount_path(request.environ),
                                                     "Set-Cookie": guard.cookie_header(request.environ)})
        if runs.catalog.settings.auth == "token" and not guard.valid_token(guard.token_of(request.environ)):
            return _json(401, {"error": "open the address printed at start-up (it ends in ?token=...)"})
        return _static(assets, "index.html")  # other methods: the page signs in (it asks /api/me)

    @app.get("/assets/<path:path>", rule=R.PUBLIC)
    def asset(path: str):
        return _static(assets, path)

    @app.get("/api/jobs", rule=R.SIGNED_IN)
    def jobs():
        user, rights = R.current_user(), runs.rights
        last = in_pool(runs.store.last_runs)
        out = []
        for job in runs.catalog.jobs.values():
            if not rights.can_view(user, job):
                continue
            item = job.public()
            item["can_run"] = rights.can_run(user, job)
            mine = [r for r in runs.active.values() if r.job.id == job.id]
            item["running"] = sum(r.state == "running" for r in mine)
            item["queued"] = sum(r.state == "queued" for r in mine)
            item["approve_by"] = job.approve_by
            item["last_run"] = public(last[job.id]) if job.id in last else None
            item["schedules"] = public_schedules(runs, job.id)  # server/schedules.py
            out.append(item)
        return {"title": runs.catalog.settings.title, "jobs": out, "config_error": reload.config_error(runs, user)}

    @app.post("/api/jobs/<job_id>/runs", rule=R.JOB_RUN)
    def start(job_id: str):
        with uploads.received(request.environ, runs.job(job_id), runs.store, _body) as body:  # files too
            R.recheck()
            run = runs.start(job_id, body.get("params", {}), confirmed=body.get("confirm") is True,
                             user=R.current_user().name)
        response.status = 202
        return {"run": run.public()}

    @app.post("/api/jobs/<job_id>/preview", rule=R.JOB_VIEW)
    def preview(job_id: str):
        """What a start with these values would run, validated as a start is; nothing is recorded."""
        job = runs.job(job_id)
        raw = uploads.stand_ins(job, _body().get("params", {}))  # a file is described, not sent
        values = runs.choices.validate(job, raw)  # lists from commands too
        return preview_of(job, values)

    @app.get("/api/runs", rule=R.SIGNED_IN)
    def history():
        user = R.current_user()
        visible = None if user.admin else runs.rights.visible_job_ids(user)  # admins: removed jobs' runs too
        found = in_pool(runs.store.runs, request.query.get("job") or None, request.query.get("state") or None,
                        _int_query("limit", 50, high=500), _int_query("before", None),
                        request.query.get("user") or None, visible)
        return {"runs": [public(r) for r in found]}

    @app.get("/api/runs/<run_id:int>", rule=R.RUN_VIEW)
    def one(run_id: int):
        return public(R.target_run())

    @app.post("/api/runs/<run_id:int>/cancel", rule=R.RUN_STOP)
    def cancel(run_id: int):
        response.status = 202
        return {"run": runs.cancel(run_id, R.current_user().name)}

    @app.post("/api/runs/<run_id:int>/rerun", rule=R.RUN_RERUN)
    def rerun(run_id: int):
        job = runs.job(R.target_run()["job"])
        with uploads.received(request.environ, job, runs.store, _body) as body:  # a file is sent again
            R.recheck()
            run = runs.rerun(run_id, body.get("params", {}), confirmed=body.get("confirm") is True,
                             user=R.current_user().name)
        response.status = 202
        return {"run": run.public()}

    @app.get("/api/runs/<run_id:int>/log", rule=R.RUN_VIEW)
    def log(run_id: int):
        record = R.target_run()
        response.content_type = "text/plain; charset=utf-8"
        response.set_header("Content-Disposition", f'attachment; filename="{record["job"]}-run-{run_id}.log"')
        return _log_lines(runs, run_id)

    @app.get("/api/runs/<run_id:int>/events", rule=R.RUN_VIEW)
    def run_events(run_id: int):
        header = request.get_header("Last-Event-ID")
        after = _whole(header or request.query.get("after") or "0", "Last-Event-ID" if header else "after", 0, MAX_INT)
        return _stream(sse.run_events(runs, run_id, after, request.environ.get(DIRECT), _holds()))

    @app.get("/api/events", rule=R.SIGNED_IN)
    def all_events():
        user = R.current_user()
        return _stream(sse.changes(runs, lambda record: runs.rights.can_view_run(user, record), _holds()))

    @app.get("/api/audit", rule=R.ADMIN)
    def audit_log():
        try:
            filters = audit.filters_of(request.query)
        except ValueError as exc:
            raise _json(400, {"error": str(exc)}) from None
        before, limit = _int_query("before", None), _int_query("limit", 100, high=audit.MAX_LIMIT)
        return {"entries": in_pool(lambda: runs.audit.query(**filters, before=before, limit=limit))}

    if runs is not None and runs.audit is not None:
        runs.audit.current_address = _client_address

    add_routes(app, authn, _body, _json)  # /api/session, /api/me, /api/tokens
    add_choice_routes(app, runs, _json)  # /api/jobs/<id>/params/<name>/choices
    add_approval_routes(app, runs, _body, _json)  # approve, reject, /api/approvals
    reload.add_routes(app, runs)  # /api/reload
    artifact_routes.add_routes(app, runs)  # /api/runs/<id>/artifacts
    metrics.add_routes(app, runs)  # /metrics
    openapi.add_routes(app)  # /api/openapi.json
    R.check_routes(app)
    return app


def _client_address() -> str | None:
    """The address of the client being served (behind a trusted proxy, the proxy's client), for
    the audit log; None outside a request (a run's own greenlet, when it times out)."""
    try:
        environ = request.environ
    except RuntimeError:
        return None
    return client_address(environ)


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
