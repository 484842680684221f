"""The rule every route declares, and the Bottle plugin that enforces it before the handler runs.

A route says what it needs with `rule=` in its config (`@app.get(path, rule=JOB_VIEW)`); a route
without one is refused by `check_routes` when the app is made (and answers 500 if added later), so
no route is ever open by omission. The job or run a rule is about comes from the path
(`<job_id>`, `<run_id>`); one the user may not see is reported exactly as a missing one, so the
answer never tells a hidden job from no job. Routes that list things (`signed_in`) filter what
they list with `Rights` themselves.
"""

from __future__ import annotations

import bottle
from bottle import request

from server.auth.identity import User
from server.run_errors import no_job, no_run

PUBLIC = "public"  # no sign-in: /healthz, assets, the page, POST /api/session
SIGNED_IN = "signed_in"  # any signed-in user; lists are filtered to what the user may see
JOB_VIEW = "job.view"  # the job of <job_id> is visible to the user
JOB_RUN = "job.run"  # ... and the user may run it
RUN_VIEW = "run.view"  # the run of <run_id> belongs to a job the user may see
RUN_RERUN = "run.rerun"  # ... and the user may run that job
RUN_STOP = "run.stop"  # ... and the user started it (or is an admin)
RUN_APPROVE = "run.approve"  # ... and the job's approve_by names the user, who did not request it
ADMIN = "admin"
RULES = (PUBLIC, SIGNED_IN, JOB_VIEW, JOB_RUN, RUN_VIEW, RUN_RERUN, RUN_STOP, RUN_APPROVE, ADMIN)

USER_KEY = "pushbutton.user"  # environ: the request's User, or None (anonymous)
RUN_KEY = "pushbutton.run"  # environ: the run record a run.* rule resolved
CHECKED_KEY = "pushbutton.checked"  # environ: what `recheck` needs to check the route's rule again
RULE_CONFIG = "pushbutton.rule"  # where a route's config keeps its rule (Route.rule is its path)


class SignInRequired(Exception):
    """Anonymous on a route that needs a user: 401. `auth` (the server's method) tells the page
    whether a password form can help."""

    def __init__(self, auth: str = "token"):
        super().__init__("sign in")
        self.auth = auth


class Forbidden(Exception):
    """The user sees the job or run but may not do this to it: 403."""


def current_user() -> User | None:
    return request.environ.get(USER_KEY)


def recheck() -> None:
    """The route's rule again, once its handler has read the body: a slow upload or a comment sent
    late leaves time for a new jobs.ini to take the right (rights follow it at once), and the
    action must not come after that. Teams are worked out again from the file in force now."""
    rules, rule, route, kwargs = request.environ[CHECKED_KEY]
    user = current_user()
    if user.method not in ("token", "cli"):  # the launch token's holder is no one's team member
        user = rules.runs.rights.user_for(user.name, user.groups, user.method)
    rules.check(rule, user, route, kwargs)


def target_run() -> dict:
    """The run record the route's run.* rule found (and checked)."""
    return request.environ[RUN_KEY]


def check_routes(app: bottle.Bottle) -> None:
    """Raise unless every route of `app` declares one of RULES."""
    missing = [f"{r.method} {r.rule}" for r in app.routes if r.config.get(RULE_CONFIG) not in RULES]
    if missing:
        raise ValueError(f"routes without a rule (one of {', '.join(RULES)}): {', '.join(missing)}")


class Rules:
    """Bottle plugin: the route's rule, checked against the request's user, before the handler.

    Installed after the error plugin, so its NotFound (hidden = missing), SignInRequired and
    Forbidden become answers in the same one place as every other error.
    """

    name = "rules"
    api = 2

    def __init__(self, runs):
        self.runs = runs  # server.runs.Runs: its catalog, rights, audit and records

    def apply(self, callback, route):
        rule = route.config.get(RULE_CONFIG)
        if rule not in RULES:
            raise ValueError(f"route {route.method} {route.rule} declares no rule")
        if rule == PUBLIC:
            return callback

        def wrapper(*args, **kwargs):
            user = current_user()
            if user is None:
                raise SignInRequired(self.runs.catalog.settings.auth)
            self.check(rule, user, route, kwargs)
            request.environ[CHECKED_KEY] = (self, rule, route, kwargs)
            return callback(*args, **kwargs)

        return wrapper

    def check(self, rule: str, user: User, route, kwargs: dict) -> None:
        runs, rights = self.runs, self.runs.rights
        if rule == ADMIN and not user.admin:
            self.refuse(user, route, rule, "", Forbidden("admins only"))
        elif rule in (JOB_VIEW, JOB_RUN):
            job_id = kwargs["job_id"]
            job = runs.job(job_id)  # NotFound if missing
            if not rights.can_view(user, job):
                self.refuse(user, route, rule, f"job:{job_id}", no_job(job_id))
            if rule == JOB_RUN and not rights.can_run(user, job):
                self.refuse(user, route, rule, f"job:{job_id}", Forbidden("you may view this job but not run it"))
        elif rule in (RUN_VIEW, RUN_RERUN, RUN_STOP, RUN_APPROVE):
            run_id = kwargs["run_id"]
            record = runs.get(run_id)  # NotFound if missing
            target = f"run:{run_id}"
            if not rights.can_view_run(user, record):
                self.refuse(user, route, rule, target, no_run(run_id))
            if rule == RUN_RERUN and not rights.can_run(user, runs.catalog.jobs.get(record["job"])):
                self.refuse(user, route, rule, target, Forbidden("you may view this job but not run it"))
            if rule == RUN_STOP and not rights.can_stop(user, record):
                self.refuse(user, route, rule, target, Forbidden("you may stop only the runs you started"))
            if rule == RUN_APPROVE and not rights.can_approve(user, record):
                self.refuse(user, route, rule, target, Forbidden(
                    "you may not decide on this run: only those named in approve_by, and never who requested it"))
            request.environ[RUN_KEY] = record

    def refuse(self, user: User, route, rule: str, target: str, error: Exception):
        audit = getattr(self.runs, "audit", None)
        if audit is not None:
            audit.record("refused", user.name, target=target, ok=False,
                         detail={"route": f"{route.method} {route.rule}", "rule": rule})
        raise error
