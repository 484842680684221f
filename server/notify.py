"""A run's end, sent where jobs.ini's `[notify:NAME]` sections say (Apprise: e-mail, chat, webhooks).

It starts once the run's end is committed (`Runs.on_end`) and is built from the stored record and
output, so a message never says more, or other, than history does (secrets were masked before
anything was stored). Delivery runs on a small thread pool of its own. A thread cannot be stopped, and a receiver
that drips its answer defeats Apprise's read time-out (it is per recv), so an attempt given up
after ATTEMPT_LIMIT may hold its thread for good: a target's attempts take turns, and one that
finds the previous still running past ATTEMPT_LIMIT fails at once, so a hanging target holds one thread, never the hub,
the run, the hub's shared pool (SQLite reads) or the other targets' threads. Each target is tried
a few times with growing pauses; a failure is logged and audited with the URL as `label` names
it, and is never the run's.
"""

from __future__ import annotations

import logging
import re
import time

import gevent
import orjson
from gevent.event import AsyncResult
from gevent.threadpool import ThreadPool

from server.catalog_notify import Notifier, quiet_apprise, scrub
from server.events import in_pool

log = logging.getLogger("pushbutton")
POOL_SIZE = 4  # targets sent to at once; more wait their turn
PAUSES = (2.0, 10.0)  # before the 2nd and 3rd attempt
ATTEMPT_LIMIT = 60.0  # an attempt still running after this counts as failed (its thread goes on: `busy`)
TAIL_LINES = 40
TAIL_BYTES = 4000
LINE_CHARS = 300
RAN = ("succeeded", "failed", "timed_out", "interrupted")  # ends of runs that ran: what `recovered` compares
# Escape sequences (CSI, OSC, two-byte), then any other control character but tab and newline.
CONTROL_RE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-_])"
                        r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]")
LABELS = {"succeeded": "succeeded", "failed": "failed", "cancelled": "was cancelled", "timed_out": "timed out",
          "interrupted": "was interrupted", "rejected": "was rejected", "expired": "expired (not approved in time)"}


class Notifications:
    """Hooked to `runs.on_end` on the server's hub; `close` lets sends in flight finish."""

    def __init__(self, runs):
        self.runs = runs
        self.pool = ThreadPool(POOL_SIZE)
        self.pending: set[gevent.Greenlet] = set()
        self.busy: dict[str, tuple[AsyncResult, float]] = {}  # target URL: its attempt on a pool thread, begun
        quiet_apprise()
        runs.on_end.append(self.ended)

    def ended(self, run) -> None:
        catalog = self.runs.catalog  # the one in force when the run ended
        notifiers = [n for n in catalog.notifiers.values() if n.jobs is None or run.job.id in n.jobs]
        if notifiers:
            self._spawn(self._run_ended, run, notifiers, catalog.settings)

    def _spawn(self, fn, *args) -> None:
        g = gevent.spawn(fn, *args)
        self.pending.add(g)
        g.link(self.pending.discard)

    def _run_ended(self, run, notifiers: list[Notifier], settings) -> None:
        try:
            self._send_end(run, notifiers, settings)
        except Exception:  # reading history failed, say: logged, never the run's or the server's
            log.exception("run %s: notifications", run.id)

    def _send_end(self, run, notifiers: list[Notifier], settings) -> None:
        record = dict(run.record)
        state = record["state"]
        recovered = False
        if state == "succeeded" and any("recovered" in n.on for n in notifiers):
            recovered = in_pool(self.runs.store.read, previous_state, run.job.id, run.id) not in (None, "succeeded")
        wanted = [n for n in notifiers if n.wants(run.job.id, state, recovered)]
        if not wanted:
            return
        tail = in_pool(self.runs.store.read, output_tail, run.id)
        title, body = message(record, run.job.title or run.job.id, tail, settings.public_url, settings.title,
                              recovered)
        kind = "success" if state == "succeeded" else "failure" if state in RAN else "warning"
        for n in wanted:
            for url, label in zip(n.urls, n.labels, strict=True):
                self._spawn(self._deliver, run, n.name, url, label, title, body, kind)

    def _deliver(self, run, name: str, url: str, label: str, title: str, body: str, kind: str) -> None:
        reasons: list[str] = []
        for attempt in range(len(PAUSES) + 1):
            if attempt:
                gevent.sleep(PAUSES[attempt - 1])
            try:
                ok, reasons = self._attempt(url, title, body, kind)
            except gevent.Timeout:
                ok, reasons = False, [f"no answer within {ATTEMPT_LIMIT:g} s"]
            except Exception as exc:  # a plugin's bug is a failed delivery, not a crash
                ok, reasons = False, [scrub(f"{type(exc).__name__}: {exc}", url)]
            if ok:
                log.info("run %s: notified %s (%s)", run.id, name, label)
                return
        reason = "; ".join(dict.fromkeys(reasons)) or "the target refused it"
        log.warning("run %s: notification %s to %s failed after %d attempts: %s", run.id, name, label,
                    len(PAUSES) + 1, reason)
        if self.runs.metrics is not None:
            self.runs.metrics.notify_failures.labels(name).inc()
        if self.runs.audit is not None:
            self.runs.audit.record("notify.failed", None, target=f"job:{run.job.id}", ok=False,
                                   detail={"run": run.id, "notifier": name, "url": label, "reason": reason,
                                           "attempts": len(PAUSES) + 1})

    def _attempt(self, url: str, title: str, body: str, kind: str) -> tuple[bool, list[str]]:
        """One attempt on a pool thread, once the target's previous one (another run's, say) has
        ended: a target's attempts take turns. One still running ATTEMPT_LIMIT after it began is
        hung, and its thread cannot be stopped: then this one fails at once and takes no thread."""
        while (held := self.busy.get(url)) is not None and not held[0].ready():
            running, began = held
            if time.monotonic() - began >= ATTEMPT_LIMIT:
                return False, ["its previous attempt still has not ended"]
            running.wait(began + ATTEMPT_LIMIT - time.monotonic())
        result = self.pool.spawn(send, url, title, body, kind)
        self.busy[url] = (result, time.monotonic())
        try:
            return result.get(timeout=ATTEMPT_LIMIT)
        finally:
            if result.ready() and self.busy.get(url, (None,))[0] is result:
                del self.busy[url]

    def close(self, timeout: float) -> None:
        """At shutdown: wait up to `timeout` for runs that just ended to be notified."""
        deadline = time.monotonic() + timeout
        while (self.runs.ended or self.pending) and time.monotonic() < deadline:
            gevent.sleep(0.05)
        self.pool.kill()


def send(url: str, title: str, body: str, kind: str) -> tuple[bool, list[str]]:
    """One attempt, on a pool thread: (delivered, why not). A fresh plugin each time: Apprise
    throttles repeated sends through one object (5.5 s for e-mail)."""
    import apprise

    ap = apprise.Apprise()
    if not ap.add(url):
        return False, ["Apprise cannot use this URL"]
    result = ap.notify(body=body, title=title, notify_type=kind, body_format=apprise.NotifyFormat.TEXT)
    reasons = [scrub(entry.message, url) for entry in result.logs()
               if entry.level in ("WARNING", "ERROR", "CRITICAL") and "://" not in entry.message]
    return bool(result), reasons


def message(record: dict, job_title: str, tail: list[str], public_url: str, app_title: str,
            recovered: bool = False) -> tuple[str, str]:
    """(title, plain-text body) of a run's end, from its stored record and the last lines it printed."""
    state = record["state"]
    label = "succeeded again" if recovered else LABELS.get(state, state)
    title = clean(f"{app_title}: {job_title} {label} (run {record['id']})")
    lines = [f"{job_title} {label}.", "", f"Run: {record['id']} (job {record['job']})", f"State: {state}"]
    if record.get("exit_code") is not None:
        lines.append(f"Exit code: {record['exit_code']}")
    lines.append(f"Started by: {record.get('user') or 'unknown'}")
    if record.get("stopped_by"):
        lines.append(f"Stopped by: {record['stopped_by']}")
    lines.append(f"Duration: {duration(record)}")
    if record.get("params"):
        lines.append("Parameters: " + ", ".join(f"{k}={shown(v)}" for k, v in record["params"].items()))
    for host in record.get("hosts") or []:
        code = f", exit code {host['exit_code']}" if host.get("exit_code") is not None else ""
        lines.append(f"Host {host['name']}: {host.get('state')}{code}" + (f" ({host['error']})" if host.get("error")
                                                                           else ""))
    if record.get("message"):
        lines.append(f"Message: {record['message']}")
    artifacts = record.get("artifacts") or []
    if artifacts:
        lines.append("Files: " + ", ".join(f"{a['name']} ({size(a.get('size'))})" for a in artifacts[:20])
                     + (f" and {len(artifacts) - 20} more" if len(artifacts) > 20 else ""))
    if public_url:
        lines.append(f"Link: {public_url}#/runs/{record['id']}")
    if tail:
        lines += ["", f"Last {len(tail)} line{'s' * (len(tail) != 1)} of output:", *tail]
    return title, "\n".join(clean(line) for line in lines)


def output_tail(conn, run_id: int) -> list[str]:
    """The last TAIL_LINES lines of output (at most TAIL_BYTES, each cut to LINE_CHARS), read from
    the newest events back; a remote run's lines name their host."""
    out: list[str] = []
    used = 0
    rows = conn.execute("SELECT data FROM events WHERE run_id = ? AND type = 'output' ORDER BY seq DESC LIMIT 200",
                        (run_id,))
    for (data,) in rows:
        event = orjson.loads(data)
        prefix = f"[{event['host']}] " if event.get("host") else ""
        for line in reversed(event.get("lines") or []):
            line = clean(line)
            line = prefix + (line if len(line) <= LINE_CHARS else line[:LINE_CHARS] + "…")
            used += len(line.encode()) + 1
            if len(out) >= TAIL_LINES or used > TAIL_BYTES:
                return out[::-1]
            out.append(line)
    return out[::-1]


def previous_state(conn, job_id: str, run_id: int) -> str | None:
    """How the job's last run before `run_id` that ran to an end ended."""
    row = conn.execute(f"SELECT state FROM runs WHERE job = ? AND id < ? AND state IN ({', '.join('?' * len(RAN))}) "
                       "ORDER BY id DESC LIMIT 1", (job_id, run_id, *RAN)).fetchone()
    return row[0] if row else None


def clean(text: str) -> str:
    """Terminal escapes (colours, titles) and control characters out: a body is plain text."""
    return CONTROL_RE.sub("", text)


def duration(record: dict) -> str:
    if not record.get("started") or not record.get("finished"):
        return "did not start"
    s = max(0.0, record["finished"] - record["started"])
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(int(s), 60)
    return f"{m} min {s} s" if m < 60 else f"{m // 60} h {m % 60} min"


def shown(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)


def size(n) -> str:
    if not isinstance(n, int):
        return "?"
    if n < 1024:
        return f"{n} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            break
    return f"{n:.1f} {unit}"
