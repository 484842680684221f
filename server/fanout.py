"""One run on its remote targets: every host's SSH session under its group's `parallel` cap, each
host's outcome, and the run's outcome as the worst of its hosts'.

A host that cannot be reached fails alone; the others run to their end. Host changes (and the
progress they make) reach the run record at most every FLUSH_DELAY, so a fan-out to 100 hosts does
not make hundreds of state and progress events.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import gevent
from gevent.lock import Semaphore

from server.catalog import Job, Target
from server.events import in_pool
from server.executors.agent import RunAgent
from server.executors.askpass import Asker, Askpass, ssh_env
from server.executors.host_keys import alias
from server.executors.remote_files import RemoteFiles
from server.executors.ssh import Outcome, SshProcess
from server.executors.ssh_client import new_workdir
from server.executors.ssh_shared import SHARED
from server.output import Emit, Masker, OutputStream, cancel_timer

log = logging.getLogger("pushbutton")
FLUSH_DELAY = 0.05
# Worst last; a stop reason outranks any result, as it does for a local run.
RANK = ("succeeded", "failed", "timed_out", "cancelled", "interrupted")


def initial_hosts(job: Job) -> list[dict]:
    return [{"name": t.host.name, "state": "queued", "exit_code": None, "error": None} for t in job.targets]


def worst(hosts: list[dict]) -> str:
    """The run's state: a host that never reached a final state counts as failed."""
    ranks = [RANK.index(h["state"]) if h["state"] in RANK else 1 for h in hosts]
    return RANK[max(ranks, default=1)]


def exit_code(hosts: list[dict]) -> int | None:
    """0 when every host exited 0; else the first host's non-zero code; None if a failure had none."""
    codes = [h["exit_code"] for h in hosts]
    if codes and all(c == 0 for c in codes):
        return 0
    return next((c for c in codes if c not in (0, None)), None)


def summary(hosts: list[dict]) -> str | None:
    bad = [h for h in hosts if h["state"] == "failed"]
    if not bad:
        return None
    if len(hosts) == 1:
        return bad[0]["error"]
    reasons = [f"{h['name']} ({_why(h)})" for h in bad]
    return f"{len(bad)} of {len(hosts)} hosts failed: " + ", ".join(reasons)


# A host whose command never started because no SSH session could be had: shown as unreachable
# (the page's hosts.js uses the same prefixes of ssh_client.explain's reasons).
UNREACHABLE = ("refused:", "unreachable:", "timed out:", "auth failed:", "host key")


SHOWN_ORDER = ("succeeded", "failed", "unreachable", "timed_out", "cancelled", "interrupted", "running",
               "connecting", "queued")  # hosts.js's ORDER


def shown_state(host: dict) -> str:
    """The state people see: a failed host that was never reached is `unreachable`."""
    error = host.get("error") or ""
    if host["state"] == "failed" and host["exit_code"] is None and error.startswith(UNREACHABLE):
        return "unreachable"
    return host["state"]


def host_lines(hosts: list[dict]) -> list[str]:
    """One line per host (`name  state  exit N  error`), then the count per state."""
    width = max((len(h["name"]) for h in hosts), default=0)
    lines = []
    counts: dict[str, int] = {}
    for h in hosts:
        state = shown_state(h)
        counts[state] = counts.get(state, 0) + 1
        code = "-" if h["exit_code"] is None else str(h["exit_code"])
        lines.append(f"{h['name']:<{width}}  {state:<11}  exit {code:<3}  {h['error'] or ''}".rstrip())
    lines.append(" · ".join(f"{counts[s]} {s}" for s in SHOWN_ORDER if s in counts))
    return lines


def _why(host: dict) -> str:
    return host["error"].split(":", 1)[0] if host["error"] else f"exit {host['exit_code']}"


class Fanout:
    def __init__(self, job: Job, argv: list[str], env: dict[str, str], secrets: list[str], emit: Emit,
                 progress: Callable[[float, str], None], changed: Callable[[list[dict]], None],
                 reason: Callable[[], str | None], wait: Callable[[], None] | None = None,
                 asker: Asker | None = None, files: list[Path] = ()):
        self.job = job
        self.files = RemoteFiles(files)  # uploads, copied to each host before its command
        self.argv = argv
        self.env = env
        self.secrets = secrets
        self.emit = emit
        self.progress = progress
        self.changed = changed
        self.reason = reason  # the run's stop reason, once it is being stopped
        self.wait = wait  # backpressure: holds a host's reader while the event log's disk is behind
        self.hosts = initial_hosts(job)
        self.asker = asker  # the window's: ssh may ask a person for a passphrase or password
        self.askpass: Askpass | None = None
        self.agent: RunAgent | None = None  # with the askpass: one passphrase question per key and run
        self.procs: dict[int, SshProcess] = {}
        self.stopping = False
        self.done = 0
        self._reported = 0
        self._timer: gevent.Greenlet | None = None

    def run(self) -> None:
        workdir = in_pool(new_workdir)  # control sockets and ssh logs
        slots: dict[str, Semaphore] = {}
        try:
            if self.asker is not None and os.name == "posix":
                hosts = [t.host for t in self.job.targets]
                self.askpass = Askpass(self.asker, workdir, [h.name for h in hosts],
                                       {alias(h): h.address for h in hosts if h.host_keys})
                self.askpass.open()  # a local bind and a tiny file: no need for the threadpool
                if any(t.host.identity for t in self.job.targets):
                    agent = RunAgent(workdir, self.askpass, self.job.timeout and self.job.timeout + 60)
                    self.agent = agent if agent.start() else None
            workers = []
            for index, target in enumerate(self.job.targets):
                slot = slots.setdefault(target.group, Semaphore(target.parallel)) if target.group else None
                workers.append(gevent.spawn(self._host, index, target, slot, workdir))
            gevent.joinall(workers)
        finally:
            if self.agent is not None:
                self.agent.stop()
            if self.askpass is not None:
                self.askpass.close()
            in_pool(shutil.rmtree, workdir, True)
            self._flush()

    def stop(self) -> None:
        """Hosts not started yet never start (nor end copying files); running ones have their
        remote group killed."""
        self.stopping = True
        self.files.stop()
        if self.agent is not None:
            self.agent.interrupt()
        for proc in list(self.procs.values()):
            proc.stop()

    def public_hosts(self) -> list[dict]:
        return [dict(h) for h in self.hosts]

    # -- one host ---------------------------------------------------------------------------

    def _host(self, index: int, target: Target, slot: Semaphore | None, workdir: Path) -> None:
        if slot is not None:
            slot.acquire()
        try:
            self._run_host(index, target, workdir)
        finally:
            left = self.files.remove(index)  # bounded, and ended by a stop
            if left:  # the host's outcome stands: the folder is only clutter on the host
                left = Masker(self.secrets).mask(left)
                log.warning("run on %s: %s", target.host.name, left)
                self.emit("output", {"stream": "stderr", "host": target.host.name, "lines": [f"pushbutton: {left}"]})
            if slot is not None:
                slot.release()

    def _run_host(self, index: int, target: Target, workdir: Path) -> None:
        record = self.hosts[index]
        if self.stopping:
            self._stopped(record)
            return
        self._set(record, state="connecting")  # until the wrapper on the host starts the command
        agent = self._agent_for(index, target)  # may ask a person
        if self.stopping:  # stopped while the dialog was open
            self._stopped(record)
            return
        extra = {"host": target.host.name}
        error = self.files.copy(index, target.host, workdir, ssh_env(self.askpass, index, agent))  # uploads, if any
        if self.stopping:  # stopped while the files were copied: the command never starts
            self._stopped(record)
            return
        cancelled = self.askpass.cancelled.get(index) if error and self.askpass else None
        if cancelled:
            error = f"auth failed: cancelled at the {cancelled} prompt"
        if error:  # the host fails as an unreachable one does
            self.emit("output", {"stream": "stderr", **extra, "lines": [f"pushbutton: {error}"]})
            self.done += 1
            self._set(record, state="failed", error=error)
            return
        argv, env = self.files.command(index, self.argv, self.env)  # uploads: the host's copies
        proc = self.procs[index] = SshProcess(target.host, argv, env, self.job.grace, workdir, index,
                                              self.askpass, on_start=lambda: self._set(record, state="running"),
                                              agent=agent)
        single = len(self.hosts) == 1  # a lone host's ::progress lines drive the run's bar
        streams = [OutputStream(name, self.emit, self.secrets, self.progress if single else None, extra=extra,
                                wait=self.wait) for name in ("stdout", "stderr")]
        try:
            outcome = proc.run(*streams)
        except Exception as exc:  # a bug must fail this host, not leave it running
            log.exception("host %s crashed", target.host.name)
            outcome = Outcome(None, f"error: internal error: {exc}", False)
        finally:
            self.procs.pop(index, None)
        if outcome.error:  # ssh's or the host's own words: masked like output before anyone sees them
            outcome.error = Masker(self.secrets).mask(outcome.error)
        if outcome.error:
            self.emit("output", {"stream": "stderr", **extra, "lines": [f"pushbutton: {outcome.error}"]})
        if proc.stopping:
            state = self.reason() or "cancelled"
        else:
            state = "succeeded" if outcome.error is None and outcome.exit_code == 0 else "failed"
        self.done += 1
        self._set(record, state=state, exit_code=outcome.exit_code, error=outcome.error)

    def _stopped(self, record: dict) -> None:
        """A host the stop reached before its command started: final, and counted as done."""
        self.done += 1
        self._set(record, state=self.reason() or "cancelled")

    def _agent_for(self, index: int, target: Target) -> Path | None:
        """The run's agent with this host's key loaded (asking for its passphrase once per run),
        unless a connection to the host is still open from an earlier run: it needs no key."""
        if self.agent is None or SHARED.standing(target.host):
            return None
        return self.agent.socket_for(target.host.identity, index)

    def _set(self, record: dict, **fields) -> None:
        record.update(fields)
        if self._timer is None:
            self._timer = gevent.spawn_later(FLUSH_DELAY, self._flush)

    def _flush(self) -> None:
        self._timer = cancel_timer(self._timer)
        self.changed(self.public_hosts())
        if len(self.hosts) > 1 and self.done != self._reported:  # one progress event per batch of hosts
            self._reported = self.done
            self.progress(100.0 * self.done / len(self.hosts), f"{self.done}/{len(self.hosts)} hosts done")
