"""The two-person rule: a run of a job with `approve_by` waits, holding no slot, until someone
allowed approves it (on to the queue, with the very values requested), rejects it, or its
`approve_within` runs out (`expired`).

A mixin of `Runs` (server/runs.py): it shares the runs' state and their one hub.
"""

from __future__ import annotations

import time

import gevent

from server import runs
from server.run_errors import Conflict
from server.run_record import iso
from server.store import AWAITING

ORPHAN_GRACE = 30.0  # seconds a waiting run's job stays gone (or unguarded) before the run is cancelled


class Approvals:
    _orphans_seen: frozenset[int] = frozenset()  # runs the file in force left without an approver
    _orphans_timer: gevent.Greenlet | None = None  # cancels them after ORPHAN_GRACE

    def decide(self, run_id: int, user: str, approved: bool, comment: str | None = None) -> dict:
        """Approve (on to the queue, with the very values requested) or reject a run awaiting
        approval; anything else is a Conflict. Checked and set with no yield in between: of an
        approve and a reject at once, one decides and the other gets the Conflict. Rights are the
        caller's (rule run.approve). Refused once shutdown began, as a start is: the run could
        not run, and its secrets are about to be lost."""
        if self.closing:
            raise Conflict("the server is shutting down")
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
        forever. It ends `cancelled`, nothing having run, once the files in force have left it so for
        ORPHAN_GRACE, or at the next reload that still does; not at once, since a file written in two
        steps can be applied half-written for a moment, and a cancel cannot be undone."""
        if self._orphans_timer is not None:
            self._orphans_timer.kill(block=False)
        self._end_orphans(self._orphans_seen)  # the file in force now still leaves them so: confirmed
        self._orphans_seen = frozenset(run.id for run, _ in self._orphans(catalog))
        self._orphans_timer = (gevent.spawn_later(ORPHAN_GRACE, self._end_orphans, self._orphans_seen)
                               if self._orphans_seen else None)

    def _end_orphans(self, ids: frozenset[int]) -> None:
        """Cancel the runs of `ids` that the jobs.ini in force leaves without an approver."""
        for run, why in self._orphans(self.catalog):
            if run.id in ids:
                approval = {**run.record["approval"], "state": "cancelled", "at": iso(time.time())}
                self._finish(run, "cancelled", approval=approval,
                             message=f"jobs.ini changed before anyone decided: {why}; nothing ran, start it again")

    def _orphans(self, catalog) -> list[tuple[runs.Run, str]]:
        """The runs awaiting approval that `catalog` leaves nobody to approve, and why."""
        out = []
        for run in self.awaiting():
            job = catalog.jobs.get(run.job.id)
            if job is None or not job.approve_by:
                out.append((run, "its job was removed" if job is None else "its job no longer asks for approval"))
        return out

    def awaiting(self) -> list[runs.Run]:
        return [run for run in self.active.values() if run.state == AWAITING]
