"""The two-person rule: a run of a job with `approve_by` waits, holding no slot, until someone
allowed approves it (on to the queue, with the very values requested), rejects it, or its
`approve_within` runs out (`expired`).

A mixin of `Runs` (server/runs.py): it shares the runs' state and their one hub.
"""

from __future__ import annotations

import time

from server import runs
from server.run_errors import Conflict
from server.run_record import iso
from server.store import AWAITING


class Approvals:
    def decide(self, run_id: int, user: str, approved: bool, comment: str | None = None) -> dict:
        """Approve (on to the queue, with the very values requested) or reject a run awaiting
        approval; anything else is a Conflict. Checked and set with no yield in between: of an
        approve and a reject at once, one decides and the other gets the Conflict. Rights are the
        caller's (rule run.approve)."""
        run = self.active.get(run_id)
        if run is None or run.state != AWAITING:
            state = run.state if run is not None else self.get(run_id)["state"]
            raise Conflict(f"run {run_id} is not awaiting approval: it is {state}")
        approval = {**run.record["approval"], "state": "approved" if approved else "rejected", "by": user,
                    "at": iso(time.time()), "comment": comment}
        self._audit("run.approve" if approved else "run.reject", user, run, {"comment": comment})
        if approved:
            if run.expiry is not None:
                run.expiry.kill(block=False)
            self.queue.append(run)
            self._update(run, state="queued", approval=approval)
            self._schedule()
        else:
            self._finish(run, "rejected", approval=approval)
        return run.public()

    def _expire(self, run: runs.Run) -> None:
        if run.state == AWAITING:
            run.expiry = None  # this very greenlet: _finish must not kill it
            approval = {**run.record["approval"], "state": "expired", "at": iso(time.time())}
            self._audit("run.expire", "", run, {})
            self._finish(run, "expired", approval=approval, message="nobody approved it in time")

    def orphaned_approvals(self, catalog) -> None:
        """A new jobs.ini that removed a waiting run's job, or its `approve_by`: nobody could approve
        the run any more (rights follow the new file) and without `approve_within` it would wait
        forever. It ends `cancelled`, nothing having run; the requester starts it again if wanted."""
        for run in self.awaiting():
            job = catalog.jobs.get(run.job.id)
            if job is not None and job.approve_by:
                continue
            why = "its job was removed" if job is None else "its job no longer asks for approval"
            approval = {**run.record["approval"], "state": "cancelled", "at": iso(time.time())}
            self._finish(run, "cancelled", approval=approval,
                         message=f"jobs.ini changed before anyone decided: {why}; nothing ran, start it again")

    def awaiting(self) -> list[runs.Run]:
        return [run for run in self.active.values() if run.state == AWAITING]
