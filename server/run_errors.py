"""What asking for a job or a run can fail with; api.py maps each to its HTTP status."""

from __future__ import annotations


class NotFound(LookupError):
    pass


def no_job(job_id: str) -> NotFound:
    """The one answer for a job that is missing or hidden from the user: they must not differ."""
    return NotFound(f"no job {job_id!r}")


def no_run(run_id: int) -> NotFound:
    return NotFound(f"no run {run_id}")


class Conflict(RuntimeError):
    pass


class ConfirmationRequired(Exception):
    """The job asks a question before it starts and the caller has not answered it.

    The server, not the page, enforces `confirm`: every way to start a run (API, Run again, the
    CLI) must carry an explicit yes. `question` is the job's text with the given values filled in.
    """

    def __init__(self, question: str):
        super().__init__(question)
        self.question = question
