"""`GET /metrics`: what an operator's Prometheus scrapes, in its text format (prometheus_client).

Counters and histograms are fed by hooks (a run's state changes, the store's committed batches,
failed notifications); gauges are read when scraped, from the live state, so they cannot drift.
Each server has its own registry: two servers in one process (tests, the window) never mix.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

FINAL = frozenset(("succeeded", "failed", "cancelled", "timed_out", "interrupted", "rejected", "expired"))
DURATIONS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600)
WRITES = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)


class Metrics:
    """The job's label is `job_id`: Prometheus sets `job` on every series to the scrape job's name,
    and would rename ours `exported_job`, out of the alert rules' reach."""

    def __init__(self, runs):
        self.registry = registry = CollectorRegistry()
        self.started = Counter("pushbutton_runs_started", "Runs that began executing, by job",
                               ["job_id"], registry=registry)
        self.finished = Counter("pushbutton_runs_finished", "Runs that ended, by job and final state",
                                ["job_id", "state"], registry=registry)
        self.duration = Histogram("pushbutton_run_duration_seconds", "From start of execution to the end, by job",
                                  ["job_id"], buckets=DURATIONS, registry=registry)
        self.writes = Histogram("pushbutton_history_write_seconds", "Time to commit one batch of history writes "
                                "(events are shown only once committed)", buckets=WRITES, registry=registry)
        self.history_failures = Counter("pushbutton_history_write_failures", "Runs stopped because their "
                                        "history could not be written (a full disk, say)", registry=registry)
        self.notify_failures = Counter("pushbutton_notifications_failed", "Notifications not delivered after "
                                       "their retries, by [notify:NAME]", ["notifier"], registry=registry)
        state = Gauge("pushbutton_runs", "Runs of this server now, by state", ["state"], registry=registry)
        for name in ("queued", "running", "awaiting_approval"):
            state.labels(name).set_function(lambda name=name: sum(r.state == name for r in list(runs.active.values())))
        clients = Gauge("pushbutton_sse_clients", "Open Server-Sent Events streams, by stream",
                        ["stream"], registry=registry)
        for name in ("run", "changes"):
            clients.labels(name).set_function(lambda name=name: runs.streams[name])
        runs.on_state.append(self.state_changed)
        runs.on_catalog.append(self.catalog_changed)
        self.catalog_changed(runs.catalog)

    def catalog_changed(self, catalog) -> None:
        """Every job's and notifier's series exist from the start, at 0: `increase()` counts
        nothing for a series' first sample, so a first failure would otherwise alert no one."""
        for job in catalog.jobs:
            self.started.labels(job)
            self.duration.labels(job)
            for state in FINAL:
                self.finished.labels(job, state)
        for name in catalog.notifiers:
            self.notify_failures.labels(name)

    def recovered(self, jobs: list[str]) -> None:
        """Runs a stopped server left active, now `interrupted` (store.recover): ended too."""
        for job in jobs:
            self.finished.labels(job, "interrupted").inc()

    def state_changed(self, run) -> None:
        job = run.job.id
        if run.state == "running":
            self.started.labels(job).inc()
        elif run.state in FINAL:
            self.finished.labels(job, run.state).inc()
            started, finished = run.record.get("started"), run.record.get("finished")
            if started and finished:
                self.duration.labels(job).observe(max(0.0, finished - started))

    def write_committed(self, seconds: float) -> None:
        self.writes.observe(seconds)

    def scrape(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def add_routes(app, runs) -> None:
    from bottle import HTTPResponse

    from server.auth import rules as R

    @app.get("/metrics", rule=R.ADMIN)
    def scrape():
        """Admins only: the figures name every job. A scraper uses an admin's personal API token."""
        body, content_type = runs.metrics.scrape()
        return HTTPResponse(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})
