"""Notifications (`[notify:NAME]`): a run's end reaches real receivers started here (an SMTP server
for `mailto://`, an HTTP server for `json://`), says what history says and nothing secret, only for
the states and jobs asked for, and a dead or hanging receiver delays nothing and is audited."""

from __future__ import annotations

import email
import email.policy
import json
import re
import socket
import subprocess
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import gevent
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from server import catalog as C
from server import notify as N
from server.catalog_notify import NOTIFY_KEYS
from server.store import Store
from tests.helpers import BIN, wait_for

ROOT = Path(__file__).resolve().parent.parent
SECRET = "hunter2-very-secret"
SMTP_PASSWORD = "smtp-pa55word-xyz"
HOOK_TOKEN = "tok3n-in-the-path-42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    """aiosmtpd handler: every message as parsed e-mail."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.logins: list[tuple[bytes, bytes]] = []

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        self.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=True)

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def texts(self) -> list[str]:
        return [m.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")
                for m in self.messages]


@pytest.fixture
def smtp():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port(), authenticator=box.authenticate,
                            auth_require_tls=False)
    controller.start()
    box.port = controller.port
    yield box
    controller.stop()


class Hooks(ThreadingHTTPServer):
    """An HTTP receiver recording (path, JSON body) of every POST."""

    daemon_threads = True

    def __init__(self):
        self.received: list[tuple[str, dict]] = []
        self.delay = 0.0  # seconds before each answer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                time.sleep(self.server.delay)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.server.received.append((self.path.split("?")[0], json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.port = self.server_address[1]

    def at(self, path: str) -> list[dict]:
        return [body for p, body in self.received if p == path]


@pytest.fixture
def hooks():
    server = Hooks()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def hanging():
    """A port that accepts connections (the kernel's backlog) and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s.getsockname()[1]
    s.close()


JOBS = """
    [job:deploy]
    title = Deploy web
    shell = yes
    command = i=1; while [ $i -le 50 ]; do echo "line $i"; i=$((i+1)); done
              printf '\\033[31mred\\033[0m key=%s\\n' "$PB_KEY"
              head -c 5000 /dev/zero | tr '\\0' x; echo
              echo last line; exit $PB_CODE
    param.code.type = int
    param.code.default = 3
    param.key.type = secret

    [job:other]
    command = true
"""


def jobs_ini(write_jobs, notify: str) -> Path:
    """jobs.ini with `notify` (sections, dedented) followed by the jobs above."""
    return write_jobs(textwrap.dedent(notify).lstrip() + textwrap.dedent(JOBS))


def audit(pb, action="notify.failed") -> list[dict]:
    return pb.client.get("/api/audit", params={"action": action}).json()["entries"]


# -- what a message says ---------------------------------------------------------------------

def test_a_failed_run_is_mailed_and_posted_with_what_history_says_and_no_secret(write_jobs, pushbutton, smtp,
                                                                                 hooks):
    jobs = jobs_ini(write_jobs, f"""
        [pushbutton]
        public_url = https://ops.example.com/pb

        [notify:ops]
        urls = mailto://u:{SMTP_PASSWORD}@127.0.0.1:{smtp.port}?from=pb@test.example&to=ops@test.example
               json://127.0.0.1:{hooks.port}/hook
        """)
    pb = pushbutton(jobs)
    run = pb.start_run("deploy", key=SECRET)
    run = pb.wait(run["id"])
    assert run["state"] == "failed"
    mail = wait_for(lambda: smtp.texts(), timeout=20)[0]
    posted = wait_for(lambda: hooks.at("/hook"), timeout=20)[0]
    assert posted["type"] == "failure"
    assert posted["title"] == f"Pushbutton: Deploy web failed (run {run['id']})"
    assert smtp.messages[0]["Subject"] == posted["title"]
    assert smtp.logins == [(b"u", SMTP_PASSWORD.encode())]  # the URL's credentials are used, never shown
    for body in (mail, posted["message"]):
        assert SECRET not in body and "********" in body  # masked in the store, so here
        assert f"Run: {run['id']} (job deploy)" in body
        assert "State: failed" in body and "Exit code: 3" in body
        assert f"Started by: {run['user']}" in body and run["user"]
        assert re.search(r"Duration: \d+\.\d s", body)
        assert f"Link: https://ops.example.com/pb/#/runs/{run['id']}" in body
        tail = body.split("of output:\n", 1)[1].splitlines()
        assert len(tail) <= 40 and tail[-1] == "last line"
        assert "line 50" in tail and "line 1" not in tail  # the last lines, capped
        assert "red key=********" in tail and "\x1b" not in body  # terminal colours out: plain text
        long_line = next(t for t in tail if t.startswith("xxx"))
        assert long_line == "x" * 300 + "…"  # one line cannot fill the message
        assert len(body.encode()) < 6000
    # Delivered, and named in the log in Apprise's privacy form.
    log = wait_for(lambda: "notified ops (mailto://u:****@" in pb.log.read_text() and pb.log.read_text())
    assert SMTP_PASSWORD not in log and SECRET not in log


def test_without_public_url_a_message_has_no_link(write_jobs, pushbutton, hooks):
    jobs = jobs_ini(write_jobs, f"""
        [notify:hook]
        urls = json://127.0.0.1:{hooks.port}/hook
        """)
    pb = pushbutton(jobs)
    run = pb.wait(pb.start_run("deploy")["id"])
    body = wait_for(lambda: hooks.at("/hook"), timeout=20)[0]["message"]
    assert f"Run: {run['id']}" in body and "Link:" not in body and "#/runs/" not in body


# -- which runs ------------------------------------------------------------------------------

def test_on_picks_the_final_states_and_recovered_means_success_after_a_failure(write_jobs, pushbutton, hooks):
    jobs = jobs_ini(write_jobs, f"""
        [notify:default]
        urls = json://127.0.0.1:{hooks.port}/default

        [notify:recovery]
        urls = json://127.0.0.1:{hooks.port}/recovery
        on = recovered

        [notify:all]
        urls = json://127.0.0.1:{hooks.port}/all
        on = succeeded, failed, cancelled, timed_out, interrupted, rejected, expired
        """)
    pb = pushbutton(jobs)
    states = []
    for count, code in enumerate((0, 3, 0, 0), 1):  # ok, fails, recovers, ok again
        run = pb.wait(pb.start_run("deploy", code=code)["id"])
        states.append(run["state"])
        wait_for(lambda n=count: len(hooks.at("/all")) == n, timeout=20)  # every end, one at a time
    assert states == ["succeeded", "failed", "succeeded", "succeeded"]
    wait_for(lambda: hooks.at("/default") and hooks.at("/recovery"), timeout=20)  # each sent on its own thread
    time.sleep(1)  # and no other: one sent by mistake has arrived by now
    assert [b["title"].split(": ", 1)[1] for b in hooks.at("/default")] == ["Deploy web failed (run 2)"]
    recovered = hooks.at("/recovery")
    assert [b["title"].split(": ", 1)[1] for b in recovered] == ["Deploy web succeeded again (run 3)"]
    assert recovered[0]["type"] == "success"


def test_jobs_limits_a_notifier_to_the_jobs_it_names(write_jobs, pushbutton, hooks):
    jobs = jobs_ini(write_jobs, f"""
        [notify:deploys]
        urls = json://127.0.0.1:{hooks.port}/deploys
        on = succeeded, failed
        jobs = deploy

        [notify:everything]
        urls = json://127.0.0.1:{hooks.port}/everything
        on = succeeded, failed
        """)
    pb = pushbutton(jobs)
    other = pb.wait(pb.start_run("other")["id"])
    wait_for(lambda: hooks.at("/everything"), timeout=20)
    deploy = pb.wait(pb.start_run("deploy")["id"])
    wait_for(lambda: len(hooks.at("/everything")) == 2 and hooks.at("/deploys"), timeout=20)
    time.sleep(0.5)  # no other: one sent by mistake has arrived by now
    assert [b["title"] for b in hooks.at("/deploys")] == [f"Pushbutton: Deploy web failed (run {deploy['id']})"]
    assert f"(run {other['id']})" in hooks.at("/everything")[0]["title"]


# -- receivers that fail -----------------------------------------------------------------------

def test_a_dead_or_hanging_receiver_delays_no_run_and_no_other_target_and_is_audited(write_jobs, pushbutton,
                                                                                       hooks, hanging):
    closed = free_port()
    jobs = jobs_ini(write_jobs, f"""
        [notify:dead]
        urls = json://u:{SMTP_PASSWORD}@127.0.0.1:{closed}/{HOOK_TOKEN}

        [notify:hangs]
        urls = json://127.0.0.1:{hanging}/hang?cto=1&rto=1

        [notify:fine]
        urls = json://127.0.0.1:{hooks.port}/fine
        on = failed, succeeded
        """)
    pb = pushbutton(jobs)
    started = time.monotonic()
    first = pb.wait(pb.start_run("deploy")["id"])  # failed: all three notifiers
    second = pb.wait(pb.start_run("deploy", code=0)["id"])
    assert (first["state"], second["state"]) == ("failed", "succeeded")
    assert time.monotonic() - started < 5  # neither run waited for a receiver
    wait_for(lambda: len(hooks.at("/fine")) == 2, timeout=5)  # the good target did not wait either
    assert time.monotonic() - started < 6
    failed = wait_for(lambda: len(audit(pb)) == 2 and audit(pb), timeout=40)
    by_notifier = {e["detail"]["notifier"]: e for e in failed}
    assert set(by_notifier) == {"dead", "hangs"}
    for entry in failed:
        assert entry["ok"] is False
        assert entry["target"] == "job:deploy" and entry["detail"]["run"] == first["id"]
        assert entry["detail"]["attempts"] == 3 and entry["detail"]["reason"]
    assert by_notifier["dead"]["detail"]["url"] == f"json://u:****@127.0.0.1:{closed}/..."
    everything = json.dumps(failed) + pb.log.read_text()
    assert SMTP_PASSWORD not in everything and HOOK_TOKEN not in everything
    assert pb.client.get(f"/api/runs/{first['id']}").json()["state"] == "failed"  # the run's own record is untouched
    metrics = pb.client.get("/metrics").text
    assert 'pushbutton_notifications_failed_total{notifier="dead"} 1.0' in metrics
    assert 'pushbutton_notifications_failed_total{notifier="hangs"} 1.0' in metrics


def dripping_receiver():
    """A receiver that answers a byte every 0.1 s and never ends: Apprise's read time-out is per
    recv, so an attempt at it never returns and its pool thread is held until `stop` is set."""
    listener, stop = socket.create_server(("127.0.0.1", 0)), threading.Event()

    def serve(conn):
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
            while not stop.wait(0.1):
                conn.sendall(b"x")

    def accept():
        while not stop.is_set():
            try:
                threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return listener, stop


class Recorder:
    def __init__(self):
        self.entries: list[tuple] = []

    def record(self, action, user, **fields):
        self.entries.append((action, fields["detail"]))


def test_a_target_that_never_finishes_answering_holds_one_pool_thread_not_every_retry_and_run(
        monkeypatch, hooks):
    """Limits lowered (60 s, 2 s and 10 s in production): the receiver is real, not mocked."""
    monkeypatch.setattr(N, "ATTEMPT_LIMIT", 0.5)
    monkeypatch.setattr(N, "PAUSES", (0.05, 0.05))
    listener, stop = dripping_receiver()
    audit = Recorder()
    runs = SimpleNamespace(on_end=[], metrics=None, audit=audit)
    notes = N.Notifications(runs)
    slow = f"json://127.0.0.1:{listener.getsockname()[1]}/hook?rto=5&cto=2"
    fine = f"json://127.0.0.1:{hooks.port}/fine"
    try:
        for run_id in (1, 2, 3):  # three failed runs notify it: 9 attempts
            notes._spawn(notes._deliver, run(run_id), "slow", slow, "json://...", "t", "b", "failure")
        gevent.sleep(1.5)  # every attempt given up: the old code held all 4 threads, for good
        notes._spawn(notes._deliver, run(4), "fine", fine, "json://...", "t", "b", "success")
        deadline = time.monotonic() + 5
        while not hooks.at("/fine") and time.monotonic() < deadline:
            gevent.sleep(0.05)
        assert len(hooks.at("/fine")) == 1, "another target waited behind the hanging one's threads"
        while len(audit.entries) < 3 and time.monotonic() < deadline:
            gevent.sleep(0.05)
        assert sorted((action, d["run"], d["attempts"]) for action, d in audit.entries) == \
            [("notify.failed", i, 3) for i in (1, 2, 3)]
        assert all("previous attempt still has not ended" in d["reason"] for _, d in audit.entries)
    finally:
        stop.set()
        listener.close()
        notes.pool.kill()


def test_runs_ending_together_each_reach_a_slow_target_their_attempts_taking_turns(monkeypatch, hooks):
    """Six runs end at once, notifying one receiver that takes 0.2 s to answer: each message gets
    there. (Failing at once while another attempt ran would have lost all but the first few.)"""
    monkeypatch.setattr(N, "PAUSES", (0.05, 0.05))
    hooks.delay = 0.2
    audit = Recorder()
    notes = N.Notifications(SimpleNamespace(on_end=[], metrics=None, audit=audit))
    url = f"json://127.0.0.1:{hooks.port}/burst"
    try:
        for run_id in range(1, 7):
            notes._spawn(notes._deliver, run(run_id), "team", url, "json://...", f"run {run_id}", "b", "success")
        deadline = time.monotonic() + 10
        while len(hooks.at("/burst")) < 6 and time.monotonic() < deadline:
            gevent.sleep(0.05)
        assert sorted(body["title"] for body in hooks.at("/burst")) == [f"run {i}" for i in range(1, 7)]
        assert audit.entries == []
    finally:
        notes.pool.kill()


def run(run_id: int) -> SimpleNamespace:
    return SimpleNamespace(id=run_id, job=SimpleNamespace(id="deploy"))


# -- jobs.ini --------------------------------------------------------------------------------

def check(jobs: Path) -> subprocess.CompletedProcess:
    return subprocess.run([BIN, "check", "--jobs", str(jobs)], capture_output=True, text=True, timeout=60)


def test_check_names_bad_urls_states_and_jobs_by_line_and_never_prints_a_url_secret(write_jobs):
    jobs = write_jobs(f"""
        [pushbutton]
        public_url = ftp://ops.example.com/

        [job:a]
        command = true

        [notify:ops]
        urls = nosuch://{HOOK_TOKEN}
               mailto://u:{SMTP_PASSWORD}@127.0.0.1:25?from=not-an-address&to=ops@test.example
               json://127.0.0.1:9/ok
        on = failed, finished
        jobs = a, nope
        colour = red

        [notify:empty]
        on = failed
        """)
    out = check(jobs)
    assert out.returncode == 2
    text = out.stdout + out.stderr
    assert f"{jobs}:2: [pushbutton] public_url:" in text
    assert f"{jobs}:8: [notify:ops] urls: the 1st URL (nosuch://...) cannot be used: Apprise knows no nosuch://" in text
    assert f"{jobs}:8: [notify:ops] urls: the 2nd URL (mailto://...) cannot be used" in text
    assert "3rd URL" not in text
    assert f"{jobs}:11: [notify:ops] on: unknown state finished" in text
    assert f"{jobs}:12: [notify:ops] jobs: no job 'nope'" in text
    assert f"{jobs}:13: [notify:ops] colour: unknown key" in text
    assert f"{jobs}:15: [notify:empty]: urls is required" in text
    assert HOOK_TOKEN not in text and SMTP_PASSWORD not in text


def test_logs_and_the_audit_name_a_target_without_a_token_held_in_its_host_or_user_part(write_jobs):
    """An ntfy topic is its only credential, as is a user without a password on a webhook; a
    webhook's or mail server's host stays readable."""
    topic = "pb-ops-7f3c9a1e5d2b"
    catalog = C.load(write_jobs(f"""
        [job:a]
        command = true

        [notify:ops]
        urls = ntfys://{topic}
               json://{HOOK_TOKEN}@hooks.example.com/in
               json://u:{SMTP_PASSWORD}@hooks.example.com
               mailtos://alerts:{SMTP_PASSWORD}@smtp.example.com?to=ops@example.com
               slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#deploys
        """))
    assert catalog.notifiers["ops"].labels == [
        "ntfys://****", "json://****@hooks.example.com/...", "json://u:****@hooks.example.com/...",
        "mailtos://alerts:****@smtp.example.com/...", "slack://****"]


def test_a_good_notify_section_loads_with_its_defaults(write_jobs):
    catalog = C.load(write_jobs(f"""
        [pushbutton]
        public_url = https://ops.example.com/pb

        [job:a]
        command = true

        [notify:ops]
        urls = json://u:{SMTP_PASSWORD}@hooks.example.com/x form://hooks.example.com/y
        """))
    n = catalog.notifiers["ops"]
    assert catalog.settings.public_url == "https://ops.example.com/pb/"
    assert n.on == {"failed", "timed_out", "interrupted"} and n.jobs is None
    assert len(n.urls) == 2 and all(SMTP_PASSWORD not in label for label in n.labels)
    assert SMTP_PASSWORD not in repr(n)


def test_every_notify_key_and_public_url_is_documented():
    docs = (ROOT / "docs" / "jobs-ini.md").read_text()
    documented = set(re.findall(r"`([a-z_.A-Z]+)`", docs))
    assert not ({*NOTIFY_KEYS, "public_url"} - documented)
    assert (ROOT / "docs" / "notifications.md").is_file()


# -- the message, from a stored run ---------------------------------------------------------------

def test_the_tail_is_read_from_stored_events_newest_last_capped_and_names_remote_hosts(tmp_path):
    store = Store(tmp_path / "data")
    try:
        run_id = store.call(Store.insert_run, {"job": "j", "state": "running", "params": {}, "created": 0.0,
                                               "owner": store.owner})
        events = [(1, "state", "{}"),
                  (2, "output", json.dumps({"stream": "stdout", "lines": [f"early {i}" for i in range(100)]})),
                  (3, "progress", "{}"),
                  (4, "output", json.dumps({"stream": "stderr", "host": "web1", "lines": ["\x1b]0;title\x07oops\r"]})),
                  (5, "output", json.dumps({"stream": "stdout", "lines": ["y" * 2000, "z" * 2000, "end"]}))]
        store.call(Store.append_events, run_id, events)
        tail = store.read(N.output_tail, run_id)
    finally:
        store.close()
    assert tail[-4:] == ["[web1] oops", "y" * 300 + "…", "z" * 300 + "…", "end"]
    assert len(tail) == N.TAIL_LINES and tail[0] == "early 64"  # the newest 40 lines, oldest first
    assert sum(len(t.encode()) + 1 for t in tail) <= N.TAIL_BYTES


def test_the_message_names_hosts_files_and_who_stopped_it_in_plain_text():
    record = {"id": 7, "job": "deploy", "state": "cancelled", "exit_code": None, "user": "schedule:nightly",
              "stopped_by": "alice", "started": 100.0, "finished": 100.0 + 3725, "message": "1 of 2 hosts failed",
              "params": {"tag": "v1", "token": "********", "force": True, "envs": ["a", "b"]},
              "hosts": [{"name": "web1", "state": "failed", "exit_code": 2, "error": None},
                        {"name": "web2", "state": "cancelled", "exit_code": None, "error": "connection lost"}],
              "artifacts": [{"name": "report.csv", "size": 2048}, {"name": "raw.bin", "size": 5}]}
    title, body = N.message(record, "Deploy \x1b[1mweb\x1b[0m", [], "https://pb.example/", "Ops")
    assert title == "Ops: Deploy web was cancelled (run 7)"
    assert body.splitlines() == [
        "Deploy web was cancelled.", "", "Run: 7 (job deploy)", "State: cancelled",
        "Started by: schedule:nightly", "Stopped by: alice", "Duration: 1 h 2 min",
        "Parameters: tag=v1, token=********, force=yes, envs=a, b",
        "Host web1: failed, exit code 2", "Host web2: cancelled (connection lost)",
        "Message: 1 of 2 hosts failed", "Files: report.csv (2.0 KiB), raw.bin (5 bytes)",
        "Link: https://pb.example/#/runs/7"]
    _, queued = N.message({"id": 8, "job": "j", "state": "expired"}, "J", [], "", "Pushbutton")
    assert "Duration: did not start" in queued and "Link:" not in queued and "output" not in queued
