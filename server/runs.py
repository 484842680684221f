"""Runs: validate, queue under the concurrency limits, execute, stop, and record.

Everything here lives on one gevent hub (the server thread's, or the terminal's for
`pushbutton run`). A run's story is its event log: every state change, progress report and
batch of output is an event, stored before anyone sees it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import gevent
import gevent.lock
from gevent.queue import Full, Queue

from server import params as P
from server.approvals import Approvals
from server.auth.rights import Rights
from server.catalog import Catalog, Job
from server.choices import Choices
from server.environment import inherited
from server.events import EventLog, in_pool, store_call
from server.executors.askpass import Asker
from server.executors.local import LocalProcess, StartError, run_marker
from server.fanout import Fanout, initial_hosts
from server.fanout import exit_code as hosts_exit_code
from server.fanout import summary as hosts_summary
from server.fanout import worst as worst_host
from server.files import artifacts, uploads
from server.files.ready import ReadyFolders
from server.output import OutputStream
from server.preview import command_of, preview
from server.rerun import values_again
from server.run_errors import ConfirmationRequired, Conflict, no_job, no_run
from server.run_record import FINAL, iso, public
from server.store import APPROVAL_LOST, AWAITING, Store

log = logging.getLogger("pushbutton")
MAX_COMMENT = 2000
FINAL_RETRY = 1.0  # seconds between two tries at storing a run's final record (see `_kept`)


class Run:
    """A run that is queued or running in this process."""

    def __init__(self, run_id: int, job: Job, values: dict[str, P.Value], record: dict, store: Store):
        self.id = run_id
        self.job = job
        self.values = values  # secrets included: memory only, for the life of the run
        self.record = record
        self.log = EventLog(store, run_id)
        self.stop_reason: str | None = None
        self.ending = False  # its process is done; its artifacts are being indexed: too late to stop
        self.process: LocalProcess | Fanout | None = None
        self.expiry: gevent.Greenlet | None = None  # ends it `expired` while it awaits approval

    @property
    def state(self) -> str:
        return self.record["state"]

    def public(self) -> dict:
        return public(self.record)


class Runs(Approvals):
    def __init__(self, catalog: Catalog, store: Store, asker: Asker | None = None):
        self.catalog = catalog
        self.asker = asker  # the window's dialog for ssh's passphrase/password prompts; headless: None
        self.store = store
        self.rights = Rights(catalog)
        self.audit = None  # server.auth.audit.Audit, where the server keeps one
        self.reloader = None  # server.reload.Reloader, where the server watches jobs.ini
        self.scheduler = None  # server.schedules.Scheduler, where the server fires [schedule:NAME]s
        self.active: dict[int, Run] = {}
        self.logs: dict[int, EventLog] = {}  # active runs, and ended ones until all is stored
        self._indexing = gevent.lock.Semaphore()  # artifacts indexed one run at a time: _execute
        self.ended: dict[int, Run] = {}  # ended here, their last writes not yet committed: read them here
        self.queue: list[Run] = []
        self.watchers: dict[Queue, Callable[[dict], bool]] = {}  # each with what its reader may see
        self.closing = False
        self._workers: set[gevent.Greenlet] = set()
        self.on_end: list[Callable[[Run], None]] = []  # called once a run's end is stored (notifications)
        self.on_catalog: list[Callable[[Catalog], None]] = []  # called with each reloaded catalog
        uploads.attach(self)  # a run's uploaded files go when it ends
        self.on_state: list[Callable[[Run], None]] = []  # called at each change of a run's state (metrics, log)
        self.metrics = None  # server.metrics.Metrics, where the server keeps them
        self.streams: Counter[str] = Counter()  # open SSE streams by kind (server/sse.py)
        self.begun = 0  # runs recorded and streams opened so far: server/memory.py looks for quiet
        self.rights_changed = 0  # new jobs.ini files applied: open run streams end (server/sse.py)
        self.credentials_changed = 0  # sessions or tokens ended: open streams check theirs (server/sse.py)
        self.choices = Choices()  # lists from commands (param.NAME.choices_from), checked at start
        self.ready = ReadyFolders(store, lambda: self.catalog.settings.max_concurrent_runs)  # run folders made ahead

    def replace_catalog(self, catalog: Catalog) -> None:
        """A reloaded jobs.ini: new runs use it, runs already started keep the Job they started
        with; whatever follows the catalog (schedules, ...) hears of it through `on_catalog`."""
        self.catalog = catalog
        self.rights.catalog = catalog  # the one Rights everyone holds (the Authenticator too) follows
        self.orphaned_approvals(catalog)
        for hook in list(self.on_catalog):
            hook(catalog)
        self._schedule()

    def _unwritable(self, run) -> None:
        """A run whose history cannot be written (a full disk) is stopped, and counted."""
        if self.metrics is not None:
            self.metrics.history_failures.inc()
        self.stop(run, "failed")

    # -- starting ---------------------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        try:
            return self.catalog.jobs[job_id]
        except KeyError:
            raise no_job(job_id) from None

    def start(self, job_id: str, raw: dict[str, Any], confirmed: bool = False, user: str = "",
              rerun_of: int | None = None) -> Run:
        """Validate (raises params.ParamsError), ask (raises ConfirmationRequired unless
        `confirmed`), record as queued (started by `user`), schedule; nothing is recorded or
        started when it raises. Rights are the caller's to check (server/auth/rules.py). A job
        with `approve_by` records the run `awaiting_approval` instead: it holds its values (secrets
        too, in memory only) and no slot until `decide`."""
        job = self.job(job_id)
        values = self.choices.validate(job, raw)  # P.validate, and lists from commands as they are now
        if job.confirm and not confirmed:
            raise ConfirmationRequired(P.substitute(job.confirm, P.masked(job.params, values)))
        if self.closing:
            raise Conflict("the server is shutting down")
        record = {"job": job.id, "state": AWAITING if job.approve_by else "queued",
                  "params": P.masked(job.params, values),
                  "created": time.time(), "owner": self.store.owner, "started": None,
                  "finished": None, "exit_code": None, "progress": None, "message": None,
                  "hosts": initial_hosts(job), "user": user or None, "stopped_by": None,
                  "approval": {"approvers": list(job.approve_by), "state": "waiting", "by": None, "at": None,
                               "comment": None} if job.approve_by else None,
                  "preview": preview(job, values)}
        record["id"] = store_call(self.store, Store.insert_run, record)
        self.begun += 1
        unmoved = uploads.adopt(self.store, job, values, record)  # its files move into its folder, or why not
        run = Run(record["id"], job, values, record, self.store)
        self.active[run.id] = run
        self.logs[run.id] = run.log
        self._changed(run)
        if unmoved:  # recorded, but it cannot run without its files: it ends at once, as a cancel would
            self._finish(run, "failed", message=unmoved)
        elif not job.approve_by:
            self.queue.append(run)
        elif job.approve_within:
            run.expiry = gevent.spawn_later(job.approve_within, self._expire, run)
        if self.closing:  # shutdown began while it was being recorded, past its stop-and-wait: ends here
            self.stop(run, "interrupted")
        self._schedule()
        self._audit("run.rerun" if rerun_of else "run.start", user, run,
                    {"params": record["params"], **({"rerun_of": rerun_of} if rerun_of else {})})
        return run

    def rerun(self, run_id: int, raw: dict[str, Any], confirmed: bool = False, user: str = "") -> Run:
        """Same parameters again, secrets given again (server/rerun.py). A job with `confirm`
        asks again: the values may differ and the world may have moved on."""
        old = self.get(run_id)
        job = self.job(old["job"])
        return self.start(job.id, values_again(old, job, raw), confirmed, user, rerun_of=run_id)

    def _schedule(self) -> None:
        """Start queued runs the limits allow; none once shutdown began (nothing would stop them)."""
        if self.closing:
            return
        limit = self.catalog.settings.max_concurrent_runs
        running = [r for r in self.active.values() if r.state == "running"]
        for run in list(self.queue):
            if len(running) >= limit:
                return
            cap = self.catalog.jobs.get(run.job.id, run.job).concurrency  # a reloaded limit applies to the queue
            if cap is not None and sum(r.job.id == run.job.id for r in running) >= cap:
                continue
            self.queue.remove(run)
            running.append(run)
            self._update(run, state="running", started=time.time())
            worker = gevent.spawn(self._execute, run)
            self._workers.add(worker)
            worker.link(self._workers.discard)

    # -- executing --------------------------------------------------------------------------

    def _execute(self, run: Run) -> None:
        """Build argv and env once, run locally or on the targets, under the job's timeout."""
        job = run.job
        command = command_of(job, run.values, run.id,  # what the preview showed (server/preview.py)
                             artifacts.prepare(self.ready, run.id, bool(job.targets)))
        argv, env = command.argv, command.env
        secrets = P.secret_values(job.params, run.values)
        run.log.on_failure = lambda: self._unwritable(run)  # its history cannot be written
        if run.log.failure:  # already, while it was queued: nothing runs that could not be kept
            self._unwritable(run)
        timer = gevent.spawn_later(job.timeout, self.stop, run, "timed_out") if job.timeout else None
        try:
            execute = self._execute_remote if job.targets else self._execute_local
            state, fields = execute(run, argv, env, secrets)
        finally:
            run.ending = True
            if timer is not None:
                timer.kill(block=False)
        if run.log.failure:
            fields["message"] = run.log.failure
        # One run with files at a time, up to its end in memory: each counts the others' against
        # artifacts_max_total (runs ending together each kept files the cap had room for once).
        files = not job.targets and not artifacts.empty(self.store.dir, run.id)
        with self._indexing if files else contextlib.nullcontext():
            self._finish(run, state, **fields, artifacts=artifacts.collect(self, run))  # in its end record

    def _execute_local(self, run: Run, argv: list[str], env: dict, secrets: list[str]) -> tuple[str, dict]:
        job = run.job
        streams = [OutputStream(name, run.log.emit, secrets, self._progress_of(run), wait=run.log.wait_writable)
                   for name in ("stdout", "stderr")]
        run.process = LocalProcess(argv, {**inherited(), **env}, str(job.workdir), run_marker(self.store.owner, run.id),
                                   job.grace)
        code: int | None = None
        try:
            if run.stop_reason is None:  # not stopped before this greenlet first ran
                code = run.process.run(*streams)
        except StartError as exc:
            streams[1].feed(f"{exc}\n".encode())
            streams[1].close()
            code = exc.exit_code
        except Exception as exc:  # a bug must not leave the run "running" forever
            log.exception("run %s crashed", run.id)
            streams[1].feed(f"pushbutton: internal error: {exc}\n".encode())
            streams[1].close()
        return run.stop_reason or ("succeeded" if code == 0 else "failed"), {"exit_code": code}

    def _execute_remote(self, run: Run, argv: list[str], env: dict, secrets: list[str]) -> tuple[str, dict]:
        """The same argv and environment as a local run, on every target over SSH."""
        fanout = Fanout(run.job, argv, env, secrets, run.log.emit,
                        self._progress_of(run), lambda hosts: self._update(run, hosts=hosts),
                        lambda: run.stop_reason, run.log.wait_writable, self.asker, uploads.paths(run.values))
        run.process = fanout
        if run.stop_reason:  # stopped before this greenlet first ran
            fanout.stop()
        try:
            fanout.run()
        except Exception:  # a bug must not leave the run "running" forever
            log.exception("run %s crashed", run.id)
        hosts = fanout.public_hosts()
        message = hosts_summary(hosts)
        return run.stop_reason or worst_host(hosts), {"exit_code": hosts_exit_code(hosts), "hosts": hosts,
                                                      **({"message": message} if message else {})}

    def _progress_of(self, run: Run):
        def progress(percent: float, message: str) -> None:
            run.record.update(progress=percent, message=message or run.record["message"])
            self.store.submit_here(Store.update_run, run.id, {"progress": percent, "message": run.record["message"]})
            run.log.emit("progress", {"percent": percent, "message": message})

        return progress

    def _update(self, run: Run, **fields: Any) -> None:
        run.record.update(fields)
        kept = self._kept(run.id, fields) if fields.get("state") in FINAL else None
        self.store.submit_here(Store.update_run, run.id, fields, callback=kept)  # with the run's events
        self._changed(run)
        if "state" in fields:
            for hook in self.on_state:
                hook(run)

    def _kept(self, run_id: int, fields: dict) -> Callable:
        """The writer's callback for a run's final record: on an error, the record is stored again
        FINAL_RETRY seconds later, until SQLite takes it. A full disk may refuse it (often the
        reason the run ended), and the run would then read `running` once space returns."""
        loop = gevent.get_hub().loop

        def stored(_, error: BaseException | None) -> None:  # on the writer thread
            if error is not None:
                loop.run_callback_threadsafe(gevent.spawn_later, FINAL_RETRY, self._store_final, run_id, fields)

        return stored

    def _store_final(self, run_id: int, fields: dict) -> None:
        self.store.submit(Store.update_run, run_id, fields, callback=self._kept(run_id, fields))

    def _changed(self, run: Run) -> None:
        record = run.public()
        run.log.emit("state", record)
        for watcher, sees in list(self.watchers.items()):
            if not sees(record):
                continue
            try:
                watcher.put_nowait(record)
            except Full:  # a client that stopped reading: drop it, it will reconnect
                self.watchers.pop(watcher, None)

    def _audit(self, action: str, user: str, run: Run, detail: dict) -> None:
        """Into the audit log (server/auth/audit.py): the job as target, the run in the detail."""
        if self.audit is not None:
            self.audit.record(action, user or None, target=f"job:{run.job.id}", detail={"run": run.id, **detail})

    def _finish(self, run: Run, state: str, **fields: Any) -> None:
        if run.expiry is not None:
            run.expiry.kill(block=False)
        self._update(run, state=state, finished=time.time(), **fields)
        run.log.emit("end", run.public())
        self.active.pop(run.id, None)
        self.ended[run.id] = run
        gevent.spawn(self._forget, run)
        self._schedule()

    def _forget(self, run: Run) -> None:
        while not run.log.finished:
            run.log.wait(run.log.committed, 60)
        if not run.log.failure:  # else its last records may be missing from SQLite: memory answers
            self.logs.pop(run.id, None)
            self.ended.pop(run.id, None)
        for hook in list(self.on_end):
            try:
                hook(run)
            except Exception:  # a hook's failure is its own, never the run's
                log.exception("after run %s ended", run.id)

    # -- stopping ---------------------------------------------------------------------------

    def stop(self, run: Run, reason: str, by: str = "") -> None:
        """Cancel, time out or interrupt: a queued run ends at once, a running one once its
        whole process tree is gone. `by`: who cancelled it (recorded as `stopped_by`). One awaiting
        approval ends at once; at shutdown its secrets, held in memory only, are gone for good."""
        if run.state == AWAITING:
            self._stopped_by(run, by)
            approval = {**run.record["approval"], "state": reason, "at": iso(time.time())}  # no longer waiting
            self._finish(run, reason, approval=approval,
                         **({"message": APPROVAL_LOST} if reason == "interrupted" else {}))
        elif run.state == "queued":
            self.queue.remove(run)
            self._stopped_by(run, by)
            self._finish(run, reason)
        elif run.state == "running" and run.stop_reason is None and not run.ending:
            run.stop_reason = reason
            self._stopped_by(run, by)
            if run.process is not None:
                run.process.stop()

    def _stopped_by(self, run: Run, by: str) -> None:
        """Recorded at once, shown with the run's next state (its end); a stop by someone (the
        API's cancel, ^C in `pushbutton run`) goes into the audit log."""
        if by:
            run.record["stopped_by"] = by
            self.store.submit_here(Store.update_run, run.id, {"stopped_by": by})
            self._audit("run.stop", by, run, {})

    def cancel(self, run_id: int, user: str = "") -> dict:
        run = self.active.get(run_id)
        if run is None:
            record = self.get(run_id)
            raise Conflict(f"run {run_id} already ended: {record['state']}")
        if run.ending:  # a stop now would change nothing, yet say it did ("stopped by")
            raise Conflict(f"run {run_id} has already finished: its end is being recorded")
        self.stop(run, "cancelled", user)
        return run.public()

    def shutdown(self, reason: str = "interrupted", timeout: float | None = None) -> None:
        """Refuse new runs; stop every active one as a cancel would; wait for them to end."""
        self.closing = True
        for run in list(self.queue):
            self.stop(run, reason)
        for run in list(self.active.values()):
            self.stop(run, reason)
        gevent.joinall(list(self._workers), timeout=timeout)

    # -- reading ----------------------------------------------------------------------------

    def get(self, run_id: int) -> dict:
        """The run's record: from memory while it is active or its end is not yet stored (a read of
        SQLite then could still see it queued or running), else from the store."""
        run = self.active.get(run_id) or self.ended.get(run_id)
        if run is not None:
            return run.record
        record = in_pool(self.store.run, run_id)
        if record is None:
            raise no_run(run_id)
        return record

    def event_log(self, run_id: int) -> EventLog | None:
        """The live log of a run of this process; None once all of it is stored."""
        return self.logs.get(run_id)

    def watch(self, sees: Callable[[dict], bool] = lambda record: True) -> Queue:
        """A queue of every run's state changes that `sees(public record)` lets through: a
        reader's queue never holds a run it may not see."""
        watcher: Queue = Queue(maxsize=1000)
        self.watchers[watcher] = sees
        return watcher

    def unwatch(self, watcher: Queue) -> None:
        self.watchers.pop(watcher, None)
