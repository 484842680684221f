"""For operators: `pushbutton backup` while the server works, `GET /metrics`, and the server's
log (a line per request and per run start/end, JSON with --log-format json)."""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time

from server.backup import backup
from server.store import Store
from tests.auth_helpers import add_user, local_jobs, sign_in
from tests.conftest import ROOT
from tests.helpers import BIN, TOKEN, wait_for

FLOOD = """
[job:flood]
command = seq 1 300000

[job:hello]
command = echo hello {who}
param.who.type = text

[job:secret]
command = sh -c 'echo done'
param.key.type = secret
"""


def test_a_backup_taken_during_a_flood_is_whole_consistent_and_restores(pushbutton, write_jobs, tmp_path):
    pb = pushbutton(write_jobs(FLOOD))
    first = pb.start_run("hello", who="before")
    pb.wait(first["id"])
    flooding = pb.start_run("flood")
    target = tmp_path / "backup" / "history.sqlite3"
    target.parent.mkdir()
    wait_for(lambda: pb.run(flooding["id"])["state"] == "running")
    done = subprocess.run([BIN, "backup", str(target), "--jobs", str(pb.jobs), "--data-dir", str(pb.data_dir)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "run(s)" in done.stdout
    assert target.stat().st_mode & 0o777 == 0o600
    assert not list(target.parent.glob(".*partial"))
    with sqlite3.connect(target) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        copied = dict(conn.execute("SELECT id, state FROM runs"))
    assert copied[first["id"]] == "succeeded"
    assert flooding["id"] in copied  # as it was at that moment: running, or already ended
    pb.wait(flooding["id"], timeout=60)
    pb.stop()

    restored = tmp_path / "restored"
    restored.mkdir(mode=0o700)
    (restored / "history.sqlite3").write_bytes(target.read_bytes())
    again = pushbutton(pb.jobs, data_dir=restored)
    assert again.run(first["id"])["state"] == "succeeded"
    assert again.output(first["id"]) == ["hello before"]
    assert again.run(flooding["id"])["state"] in ("running", "succeeded", "interrupted")
    if copied[flooding["id"]] == "running":  # restored without its server: recovered, never left running
        assert again.run(flooding["id"])["state"] == "interrupted"


def test_a_backup_of_a_large_history_ends_while_a_run_keeps_writing(pushbutton, write_jobs, tmp_path):
    """Copied in steps, every commit between two steps restarted the copy: it never ended."""
    pb = pushbutton(write_jobs("""
        [job:big]
        command = seq 8000000

        [job:drip]
        command = sh -c 'while :; do echo drop; sleep 0.002; done'
    """))
    assert pb.wait(pb.start_run("big")["id"], timeout=120)["state"] == "succeeded"
    drip = pb.start_run("drip")
    wait_for(lambda: pb.run(drip["id"])["state"] == "running")
    time.sleep(1)  # its lines are being committed, hundreds a second
    began = time.monotonic()
    done = subprocess.run([BIN, "backup", str(tmp_path / "copy.sqlite3"), "--data-dir", str(pb.data_dir)],
                          capture_output=True, text=True, timeout=60)
    took = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    assert pb.run(drip["id"])["state"] == "running"  # it wrote all along
    assert pb.client.post(f"/api/runs/{drip['id']}/cancel").status_code == 202
    assert took < 20, took
    assert (tmp_path / "copy.sqlite3").stat().st_size > 20 * 2**20


def test_a_backup_onto_the_history_itself_or_without_history_fails_and_says_why(write_jobs, tmp_path):
    jobs = write_jobs(FLOOD)
    missing = subprocess.run([BIN, "backup", str(tmp_path / "b.sqlite3"), "--jobs", str(jobs),
                              "--data-dir", str(tmp_path / "nothing")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1
    assert "no history" in missing.stderr
    assert not (tmp_path / "b.sqlite3").exists()
    (tmp_path / "data").mkdir()
    sqlite3.connect(tmp_path / "data" / "history.sqlite3").close()
    nowhere = subprocess.run([BIN, "backup", str(tmp_path / "typo" / "b.sqlite3"), "--jobs", str(jobs),
                              "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, timeout=60)
    assert (nowhere.returncode, nowhere.stderr) == (
        1, f"pushbutton: backup failed: no folder {tmp_path / 'typo'} to write b.sqlite3 in\n")


def test_backup_and_audit_work_while_jobs_ini_is_broken_or_missing(pushbutton, write_jobs, tmp_path):
    """They read the history alone: a cron backup must not stop while someone edits jobs.ini."""
    jobs = write_jobs(FLOOD)
    pb = pushbutton(jobs)
    pb.wait(pb.start_run("hello", who="there")["id"])
    jobs.write_text("[job:broken\ncommand = \n")
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    for n, where in enumerate((["--jobs", str(jobs)], [])):  # a broken file; none at all (cwd has none)
        target = tmp_path / f"copy{n}.sqlite3"
        done = subprocess.run([BIN, "backup", str(target), *where, "--data-dir", str(pb.data_dir)], cwd=elsewhere,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        with sqlite3.connect(target) as db:
            assert db.execute("SELECT count(*) FROM runs").fetchone() == (1,)
        audit = subprocess.run([BIN, "audit", *where, "--data-dir", str(pb.data_dir)], cwd=elsewhere,
                               capture_output=True, text=True, timeout=60)
        assert audit.returncode == 0, audit.stderr
        actions = [json.loads(line)["action"] for line in audit.stdout.splitlines()]
        assert actions[0] == "run.start" and set(actions) <= {"run.start", "config.error"}  # the server saw the edit


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    key = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{key} not in metrics:\n{text}")


def test_metrics_count_runs_by_job_and_state_and_show_live_queues_and_streams(pushbutton, write_jobs):
    pb = pushbutton(write_jobs("""
        [pushbutton]
        max_concurrent_runs = 1

        [job:slow]
        command = sleep 30

        [job:ok]
        command = true

        [job:bad]
        command = false
    """))
    for job in ("ok", "ok", "bad"):
        pb.wait(pb.start_run(job)["id"])
    slow = pb.start_run("slow")
    queued = pb.start_run("ok")
    wait_for(lambda: pb.run(slow["id"])["state"] == "running")
    opened = threading.Event()

    def follow():
        with pb.client.stream("GET", f"/api/runs/{slow['id']}/events", timeout=60) as res:
            for _ in res.iter_bytes():
                opened.set()

    threading.Thread(target=follow, daemon=True).start()
    assert opened.wait(10)
    res = pb.client.get("/metrics")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/plain")
    text = res.text
    assert _metric(text, "pushbutton_runs_started_total", job_id="ok") == 2
    assert _metric(text, "pushbutton_runs_finished_total", job_id="ok", state="succeeded") == 2
    assert _metric(text, "pushbutton_runs_finished_total", job_id="bad", state="failed") == 1
    assert _metric(text, "pushbutton_run_duration_seconds_count", job_id="ok") == 2
    assert _metric(text, "pushbutton_runs", state="running") == 1
    assert _metric(text, "pushbutton_runs", state="queued") == 1
    assert _metric(text, "pushbutton_sse_clients", stream="run") >= 1
    assert _metric(text, "pushbutton_history_write_seconds_count") > 0
    pb.client.post(f"/api/runs/{slow['id']}/cancel")
    pb.wait(queued["id"])
    text = pb.client.get("/metrics").text
    assert _metric(text, "pushbutton_runs_finished_total", job_id="slow", state="cancelled") == 1
    assert _metric(text, "pushbutton_runs", state="queued") == 0


def test_every_jobs_and_notifiers_series_is_there_at_0_and_runs_a_crash_ended_count_as_interrupted(
        pushbutton, write_jobs):
    """A series that first appears at 1 is no increase to Prometheus: a first failure would alert
    no one. Runs a killed server left running end `interrupted` at the next start, counted."""
    pb = pushbutton(write_jobs("""
        [job:slow]
        command = sleep 60

        [notify:ops]
        urls = json://127.0.0.1:9/hook
    """))
    text = pb.client.get("/metrics").text
    assert _metric(text, "pushbutton_runs_finished_total", job_id="slow", state="failed") == 0
    assert _metric(text, "pushbutton_runs_started_total", job_id="slow") == 0
    assert _metric(text, "pushbutton_notifications_failed_total", notifier="ops") == 0
    run = pb.start_run("slow")
    wait_for(lambda: pb.run(run["id"])["state"] == "running")
    pb.stop(signal.SIGKILL)
    pb.start()
    assert pb.run(run["id"])["state"] == "interrupted"
    text = pb.client.get("/metrics").text
    assert _metric(text, "pushbutton_runs_finished_total", job_id="slow", state="interrupted") == 1
    assert f"run {run['id']} of slow ended interrupted" in pb.log.read_text()


def test_metrics_need_an_admin(pushbutton, write_jobs):
    pb = pushbutton(write_jobs(local_jobs()))
    add_user(pb, "alice")
    add_user(pb, "bob")
    anonymous = sign_in(pb, "bob")
    anonymous.cookies.clear()
    assert anonymous.get("/metrics").status_code == 401
    assert sign_in(pb, "bob").get("/metrics").status_code == 403
    token = sign_in(pb, "alice").post("/api/tokens", json={"name": "prometheus"}).json()["token"]
    scraper = sign_in(pb, "bob")
    scraper.cookies.clear()
    res = scraper.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert res.status_code == 200
    assert "pushbutton_runs_started_total" in res.text or "pushbutton_runs_started" in res.text


def test_json_logs_have_a_line_per_request_and_per_run_start_and_end_without_tokens_or_secrets(
        pushbutton, write_jobs):
    pb = pushbutton(write_jobs(FLOOD), "--log-format", "json")
    pb.client.get("/", params={"token": TOKEN})
    run = pb.client.post("/api/jobs/secret/runs", json={"params": {"key": "hunter2-very-secret"}}).json()["run"]
    pb.wait(run["id"])
    pb.stop()
    text = pb.log.read_text()
    assert TOKEN not in text
    assert "hunter2-very-secret" not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert lines and len(lines) == len([line for line in text.splitlines() if line.strip()])
    requests = [line for line in lines if line["logger"] == "pushbutton.access"]
    index = next(line for line in requests if line["path"] == "/")
    assert index["method"] == "GET" and index["status"] == 303 and index["ms"] >= 0
    started = next(line for line in requests if line["path"] == "/api/jobs/secret/runs")
    assert started["status"] == 202 and started["user"]
    ran = [line for line in lines if line.get("run") == run["id"]]
    assert [line["state"] for line in ran] == ["running", "succeeded"]
    assert ran[-1]["exit_code"] == 0 and ran[-1]["job"] == "secret"
    assert all({"time", "level", "message"} <= set(line) for line in lines)


def test_a_request_line_the_server_cannot_parse_is_logged_without_its_query_or_credentials(pushbutton, write_jobs):
    pb = pushbutton(write_jobs(FLOOD))
    host, port = pb.url.split("//")[1].split("/")[0].split(":")
    for request in (f"GET /?token={TOKEN} HTTP/1.1 junk\r\n\r\n", f"GET /?token={TOKEN} HTTP/9.9\r\n\r\n",
                    f"GET / HTTP/1.1\r\nAuthorization Bearer {TOKEN}\r\n\r\n"):
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(request.encode())
            assert conn.recv(1024).startswith(b"HTTP/1.1 400")
    pb.stop()
    text = pb.log.read_text()
    assert "Invalid" in text  # logged, as gevent does
    assert TOKEN not in text


def test_text_logs_are_the_default_and_name_each_request(pushbutton, write_jobs):
    pb = pushbutton(write_jobs(FLOOD))
    pb.client.get("/api/jobs")
    pb.stop()
    text = pb.log.read_text()
    assert "pushbutton: GET /api/jobs 200" in text
    assert not any(line.startswith("{") for line in text.splitlines())


def test_under_systemd_text_log_lines_carry_their_priority_for_the_journal(pushbutton, write_jobs, tmp_path,
                                                                           monkeypatch):
    """systemd names the journal's stream in JOURNAL_STREAM; lines then start with `<N>`, so that
    `journalctl -p warning` finds warnings. (Here the "journal" is the test's log file.)"""
    log = tmp_path / "server.log"
    log.touch()
    monkeypatch.setenv("JOURNAL_STREAM", f"{log.stat().st_dev}:{log.stat().st_ino}")
    pb = pushbutton(write_jobs("[job:a]\ncommand = echo x={x}\nparam.x.allow_dash = yes\n"))
    pb.client.get("/api/jobs")
    pb.stop()
    lines = log.read_text().splitlines()
    assert any(line.startswith("<4>pushbutton: ") and "allow_dash has no effect" in line for line in lines), lines
    assert "<6>pushbutton: GET /api/jobs 200" in "\n".join(lines)
    logged = [line for line in lines if "pushbutton:" in line]
    assert logged and all(re.match(r"<[2-7]>pushbutton: ", line) for line in logged), logged


def test_the_backup_copies_in_one_step_as_operations_md_says(monkeypatch, tmp_path):
    """docs/operations.md said the copy went 4 MiB at a time; server/backup.py copies in one step
    (steps restarted at every commit of a busy server and never ended)."""
    steps = []

    class Tracing(sqlite3.Connection):
        def backup(self, target, *, pages=-1, **kwargs):
            steps.append(pages)
            return super().backup(target, pages=pages, **kwargs)

    Store(tmp_path / "d").close()
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: connect(*a, factory=Tracing, **k))
    backup(tmp_path / "d", tmp_path / "copy.sqlite3")
    assert steps == [-1]  # every page at once
    doc = " ".join((ROOT / "docs" / "operations.md").read_text().split())
    assert "online backup API, in one step inside one read transaction" in doc and "at a time" not in doc
