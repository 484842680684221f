"""GET /api/jobs/<id>/params/<name>/choices: a list from a command (server/choices.py) for the form.

Added to the app by `make_app` (server/api.py), whose helper shapes error answers (`answer`). The
rule is `job.view`: whoever sees the form sees its lists. The list's inputs come in the query
(`?other=value`, repeated for a multichoice), each checked as its own field is at start.
"""

from __future__ import annotations

from bottle import request, response

from server.auth import rules as R
from server.choices import ChoicesError
from server.run_record import iso


def add_routes(app, runs, answer) -> None:
    @app.get("/api/jobs/<job_id>/params/<param_name>/choices", rule=R.JOB_VIEW)
    def choices(job_id: str, param_name: str):
        job = runs.job(job_id)
        p = next((p for p in job.params if p.name == param_name), None)
        if p is None:
            return answer(404, {"error": f"job {job_id!r} has no parameter {param_name!r}"})
        if p.choices_from is None:
            return answer(400, {"error": f"parameter {param_name!r} has no choices_from"})
        query = request.query.decode()  # UTF-8, not WSGI's latin-1
        raw = {name: query.getall(name) if other.type == "multichoice" else query.get(name)
               for other in job.params if (name := other.name) in query}
        try:
            listed = runs.choices.get(job, p, runs.choices.inputs(job, p, raw))
        except ChoicesError as exc:
            return answer(exc.status, exc.public())
        response.set_header("Cache-Control", "no-store")
        return {"choices": listed.choices, "computed_at": iso(listed.at)}
