"""The audit log: runs started, stopped and rerun are recorded with who, what and from where; the
API and `pushbutton audit` filter and page it; no secret ever reaches it; it is kept exactly as
long as the runs."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from server.auth.audit import Audit, parse_time
from server.auth.identity import os_user
from server.store import Store
from tests.helpers import BIN, wait_for

SECRET = "s3cret-value-never-audited"
JOBS = """
    [job:slow]
    command = sleep 30

    [job:keyed]
    command = sh -c 'echo using the key'
    param.region.type = text
    param.key.type = secret
    param.key.required = yes
    """
DAY = 86400


def entries(pb, **query) -> list[dict]:
    res = pb.client.get("/api/audit", params=query)
    assert res.status_code == 200, res.text
    return res.json()["entries"]


def wait_entries(pb, count: int, **query) -> list[dict]:
    """Entries are written behind the answer (never on the hub): wait until `count` are there."""
    return wait_for(lambda: (found := entries(pb, **query)) and len(found) >= count and found)


def cli_audit(jobs: Path, data: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BIN, "audit", "--jobs", str(jobs), "--data-dir", str(data), *args],
                          capture_output=True, text=True, timeout=60)


def cli_run(jobs: Path, data: Path, job: str, env: dict | None = None, *args: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([BIN, "run", job, "--jobs", str(jobs), "--data-dir", str(data), *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})


def test_runs_started_stopped_and_rerun_are_recorded_with_user_target_and_address(pushbutton, write_jobs):
    pb = pushbutton(write_jobs(JOBS))
    slow = pb.start_run("slow")
    assert pb.client.post(f"/api/runs/{slow['id']}/cancel").status_code == 202
    keyed = pb.start_run("keyed", region="eu", key=SECRET)
    res = pb.client.post(f"/api/runs/{keyed['id']}/rerun", json={"params": {"key": SECRET}})
    assert res.status_code == 202
    rerun = res.json()["run"]

    found = wait_entries(pb, 4)
    assert [(e["action"], e["target"], e["detail"]["run"]) for e in found] == [  # newest first
        ("run.rerun", "job:keyed", rerun["id"]), ("run.start", "job:keyed", keyed["id"]),
        ("run.stop", "job:slow", slow["id"]), ("run.start", "job:slow", slow["id"])]
    assert {e["user"] for e in found} == {os_user()}  # auth = token: the one user is the OS user
    assert {e["address"] for e in found} == {"127.0.0.1"}
    assert all(e["ok"] for e in found)
    assert found[0]["detail"] == {"run": rerun["id"], "rerun_of": keyed["id"],
                                  "params": {"region": "eu", "key": "********"}}
    assert found[1]["detail"]["params"] == {"region": "eu", "key": "********"}
    moments = [dt.datetime.fromisoformat(e["time"]) for e in found]
    assert moments == sorted(moments, reverse=True) and all(abs(time.time() - m.timestamp()) < 60 for m in moments)


def test_runs_from_the_terminal_are_recorded_as_the_cli_user_and_a_timeout_as_nobodys_stop(
        pushbutton, write_jobs, tmp_path):
    jobs = write_jobs(JOBS + """
    [job:quick]
    command = sleep 5
    timeout = 1s
    """)
    data = tmp_path / "data"
    assert cli_run(jobs, data, "quick").returncode == 124  # timed out: the server stopped it, no user did
    pb = pushbutton(jobs, data_dir=data)
    (entry,) = entries(pb)
    assert (entry["user"], entry["action"], entry["target"], entry["address"]) == (
        f"cli:{os_user()}", "run.start", "job:quick", None)


def test_filters_by_user_action_and_time_and_pages_newest_first(pushbutton, write_jobs, tmp_path):
    jobs, data = write_jobs(JOBS), tmp_path / "data"
    assert cli_run(jobs, data, "keyed", {"PB_KEY": SECRET}).returncode == 0
    pb = pushbutton(jobs, data_dir=data)
    for _ in range(3):
        run = pb.start_run("slow")
        pb.client.post(f"/api/runs/{run['id']}/cancel")
    everything = wait_entries(pb, 7)
    assert len(everything) == 7

    assert [e["user"] for e in entries(pb, user=f"cli:{os_user()}")] == [f"cli:{os_user()}"]
    assert len(entries(pb, user=os_user())) == 6
    assert entries(pb, user="nobody") == []
    assert {e["action"] for e in entries(pb, action="run.stop")} == {"run.stop"}
    assert len(entries(pb, action="run.stop,run.start")) == 7
    assert entries(pb, action="signin") == []

    pages, before = [], None
    while True:
        page = entries(pb, limit=3, **({"before": before} if before else {}))
        if not page:
            break
        pages.append(page)
        before = page[-1]["id"]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [e["id"] for p in pages for e in p] == [e["id"] for e in everything]

    newest = everything[0]["time"]
    same_ms = [e for e in everything if e["time"] == newest]  # a start and its stop may share one
    assert entries(pb, since=newest) == same_ms  # ISO, inclusive: that millisecond, nothing older
    assert entries(pb, since=str(int(time.time()) + 60)) == []  # epoch seconds
    assert len(entries(pb, since="1h", until=newest)) == 7
    assert entries(pb, until="2000-01-01") == []


def test_bad_filters_are_a_400(pushbutton, write_jobs):
    pb = pushbutton(write_jobs(JOBS))
    for query in ({"action": "run.begin"}, {"action": "run.start,nope"}, {"since": "yesterday"},
                  {"until": "2026-13-01"}, {"since": "7 days"}, {"limit": "ten"}, {"before": str(2**64)}):
        res = pb.client.get("/api/audit", params=query)
        assert res.status_code == 400 and res.json()["error"], query


def test_the_log_is_for_those_holding_the_token_only(pushbutton, write_jobs):
    pb = pushbutton(write_jobs(JOBS))
    assert pb.client.get("/api/audit").status_code == 200  # auth = token: the holder is the admin
    assert pb.client.get("/api/audit", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_only_admins_read_the_log_and_users_and_refusals_are_recorded_as_who_did_them(pushbutton, write_jobs):
    pb = pushbutton(write_jobs("""
        [pushbutton]
        auth = header
        trusted_proxies = 127.0.0.1
        admins = team:ops

        [team:ops]
        members = carol

        [job:slow]
        command = sleep 30
        run_by = bob
        """))

    def as_user(name: str | None, method: str, path: str, **kwargs):
        headers = {"X-Forwarded-For": "203.0.113.9", **({"X-Forwarded-User": name} if name else {})}
        return httpx.request(method, pb.url + path, headers=headers, timeout=30, **kwargs)

    run = as_user("bob", "POST", "/api/jobs/slow/runs", json={}).json()["run"]
    assert as_user("bob", "GET", "/api/audit").status_code == 403
    assert as_user(None, "GET", "/api/audit").status_code == 401
    assert as_user("carol", "POST", f"/api/runs/{run['id']}/cancel").status_code == 202

    def read():
        res = as_user("carol", "GET", "/api/audit")
        assert res.status_code == 200, res.text
        return len(res.json()["entries"]) >= 3 and res.json()["entries"]

    stop, refused, start = wait_for(read)
    assert (start["user"], start["action"], start["target"]) == ("bob", "run.start", "job:slow")
    assert (refused["user"], refused["action"], refused["ok"]) == ("bob", "refused", False)
    assert refused["detail"] == {"route": "GET /api/audit", "rule": "admin"}
    assert (stop["user"], stop["action"], stop["detail"]) == ("carol", "run.stop", {"run": run["id"]})
    assert {e["address"] for e in (stop, refused, start)} == {"203.0.113.9"}  # the proxy's client


def test_the_cli_prints_json_lines_oldest_first_with_filters(pushbutton, write_jobs, tmp_path):
    jobs, data = write_jobs(JOBS), tmp_path / "data"
    pb = pushbutton(jobs, data_dir=data)
    first = pb.start_run("slow")
    pb.client.post(f"/api/runs/{first['id']}/cancel")
    pb.start_run("keyed", key=SECRET)
    api = wait_entries(pb, 3)

    out = cli_audit(jobs, data)  # while the server runs: the history is shared safely
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines == api[::-1]
    assert [e["action"] for e in lines] == ["run.start", "run.stop", "run.start"]

    assert len(cli_audit(jobs, data, "--since", "7d").stdout.splitlines()) == 3
    assert cli_audit(jobs, data, "--since", "2999-01-01").stdout == ""
    only = cli_audit(jobs, data, "--action", "run.stop", "--user", os_user()).stdout.splitlines()
    assert [json.loads(line)["action"] for line in only] == ["run.stop"]
    bad = cli_audit(jobs, data, "--since", "last week")
    assert bad.returncode == 2 and "not a time" in bad.stderr and bad.stdout == ""
    nowhere = cli_audit(jobs, tmp_path / "typo")
    assert nowhere.returncode == 2 and "no history" in nowhere.stderr and not (tmp_path / "typo").exists()


def test_no_secret_reaches_the_log_in_the_database_files_the_api_or_the_cli(pushbutton, write_jobs, tmp_path):
    jobs, data = write_jobs(JOBS), tmp_path / "data"
    assert cli_run(jobs, data, "keyed", {"PB_KEY": SECRET}).returncode == 0
    pb = pushbutton(jobs, data_dir=data)
    run = pb.start_run("keyed", region="eu", key=SECRET)
    pb.client.post(f"/api/runs/{run['id']}/rerun", json={"params": {"key": SECRET}})
    wait_entries(pb, 3)
    api = pb.client.get("/api/audit").text
    cli = cli_audit(jobs, data)
    assert cli.returncode == 0 and len(cli.stdout.splitlines()) == 3
    pb.stop()
    stored = b"".join(path.read_bytes() for path in data.rglob("*") if path.is_file())
    for text in (api, cli.stdout):
        assert SECRET not in text and "********" in text
    assert SECRET not in cli.stderr
    assert stored and SECRET.encode() not in stored and b"s3cret" not in stored


def test_a_detail_naming_a_credential_is_masked_whoever_records_it(tmp_path):
    store = Store(tmp_path / "data")
    audit = Audit(store)
    audit.record("signin.failed", "bob", detail={"password": SECRET, "via": {"Token": SECRET}, "method": "local"},
                 address="10.0.0.7", ok=False)
    audit.record("token.create", "bob", detail={"name": "ci", "secret": SECRET})
    store.close()
    assert SECRET.encode() not in (tmp_path / "data" / "history.sqlite3").read_bytes()
    store = Store(tmp_path / "data")
    try:
        created, failed = Audit(store).query()
    finally:
        store.close()
    assert failed["detail"] == {"password": "********", "via": {"Token": "********"}, "method": "local"}
    assert (failed["ok"], failed["address"], failed["user"]) == (False, "10.0.0.7", "bob")
    assert created["detail"] == {"name": "ci", "secret": "********"}
    with pytest.raises(ValueError):
        Audit(store).record("sign.in", "bob")


def _age(store: Store, days_ago: float) -> None:
    """Make every run and audit entry so far `days_ago` old."""
    then = time.time() - days_ago * DAY

    def work(conn):
        conn.execute("UPDATE runs SET created = ?, started = ?, finished = ?", (then, then, then))
        conn.execute("UPDATE audit SET time = ?", (then,))

    store.call(work)


@pytest.mark.parametrize("days, kept", [(5, False), (0, True)])
def test_entries_are_pruned_with_the_runs_and_kept_when_retention_is_0(pushbutton, write_jobs, tmp_path, days, kept):
    jobs = write_jobs(f"[pushbutton]\nretention_days = {days}\n" + JOBS)
    data = tmp_path / "data"
    pb = pushbutton(jobs, data_dir=data)
    old = pb.start_run("slow")
    pb.client.post(f"/api/runs/{old['id']}/cancel")
    pb.wait(old["id"])
    wait_entries(pb, 2)
    pb.stop()
    store = Store(data)
    _age(store, 10)  # older than the retention period
    store.close()

    pb = pushbutton(jobs, data_dir=data)  # prunes at start
    fresh = pb.start_run("slow")
    found = wait_for(lambda: (page := entries(pb)) and page[0]["detail"]["run"] == fresh["id"] and page)
    assert [e["detail"]["run"] for e in found] == ([fresh["id"], old["id"], old["id"]] if kept else [fresh["id"]])
    runs = [r["id"] for r in pb.client.get("/api/runs").json()["runs"]]
    assert runs == ([fresh["id"], old["id"]] if kept else [fresh["id"]])  # the same cut for both


def test_times_are_iso_dates_epoch_seconds_or_ages():
    now = 1_800_000_000.0
    assert parse_time("2026-01-01") == dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
    assert parse_time("2026-01-01T12:00:00+02:00") == dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC).timestamp()
    assert parse_time("2026-01-01T10:00:00Z") == dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC).timestamp()
    assert parse_time("1767225600") == 1767225600.0
    assert parse_time("7d", now) == now - 7 * DAY
    assert parse_time("1d12h", now) == now - 1.5 * DAY
    assert parse_time("30m", now) == now - 1800
    for bad in ("", "-7d", "7 d", "soon", "2026-02-30", "d", "7w"):
        with pytest.raises(ValueError):
            parse_time(bad, now)
