"""The two-person rule's routes: approve or reject a run awaiting approval, and the runs waiting
for this user's decision (server/approvals.py holds the rule itself).

Added to the app by `make_app` (server/api.py), whose helpers read the body (`body`: bounded,
JSON) and shape error answers (`answer`).
"""

from __future__ import annotations

from bottle import response

from server.auth import rules as R
from server.runs import MAX_COMMENT


def add_routes(app, runs, body, answer) -> None:
    def comment() -> str | None:
        """The decision's optional comment: text of at most MAX_COMMENT characters."""
        text = body().get("comment")
        if text is not None and (not isinstance(text, str) or len(text) > MAX_COMMENT):
            raise answer(400, {"error": f"comment must be text of at most {MAX_COMMENT} characters"})
        return text or None

    def decide(run_id: int, approved: bool) -> dict:
        said = comment()
        R.recheck()  # the comment may have come late, after a reload took the right
        response.status = 202
        return {"run": runs.decide(run_id, R.current_user().name, approved, said)}

    @app.post("/api/runs/<run_id:int>/approve", rule=R.RUN_APPROVE)
    def approve(run_id: int):
        return decide(run_id, True)

    @app.post("/api/runs/<run_id:int>/reject", rule=R.RUN_APPROVE)
    def reject(run_id: int):
        return decide(run_id, False)

    @app.get("/api/approvals", rule=R.SIGNED_IN)
    def approvals():
        """The runs waiting for this user's decision, oldest first."""
        user = R.current_user()
        return {"runs": [run.public() for run in runs.awaiting() if runs.rights.can_approve(user, run.record)]}
