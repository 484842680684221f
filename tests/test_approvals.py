"""The two-person rule, on a real server: a job with `approve_by` waits for a second person.

Users are told apart as a reverse proxy does it (`auth = header`, the proxy at 127.0.0.1), as in
tests/test_route_matrix.py. ann and alan request, the ops team (dave, omar) approves; dave may
also request, and so can never approve his own runs; otto sees nothing of these jobs.
"""

from __future__ import annotations

import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from server import catalog as C
from tests.helpers import BIN, wait_for

ENDED = {"succeeded", "failed", "cancelled", "timed_out", "interrupted", "rejected", "expired"}
LOST = "the server restarted before approval; secrets are not kept: request the run again"
SECRET = "s3cret-value-42"
JOBS = """
    [pushbutton]
    auth = header
    trusted_proxies = 127.0.0.1
    admins = olga
    max_concurrent_runs = 1
    [team:devs]
    members = ann, alan
    [team:ops]
    members = dave, omar
    [team:others]
    members = otto
    [job:deploy]
    shell = yes
    command = printf 'version=%s\\n' "$PB_VERSION"; test "$PB_TOKEN" = "{secret}" && echo secret-arrived
    param.version.type = text
    param.token.type = secret
    run_by = team:devs, dave
    approve_by = team:ops
    [job:quick]
    command = true
    run_by = team:devs
    approve_by = team:ops
    approve_within = 1s
    [job:busy]
    command = sleep 60
    run_by = team:devs
    [job:other]
    command = true
    run_by = team:others
    """.replace("{secret}", SECRET)


@pytest.fixture
def server(pushbutton, write_jobs):
    return pushbutton(write_jobs(JOBS))


def as_user(pb, name: str) -> httpx.Client:
    return httpx.Client(base_url=pb.url, headers={"X-Forwarded-User": name}, timeout=30)


def request(client: httpx.Client, job: str = "deploy", **params) -> dict:
    if job == "deploy":
        params = {"version": "v1.2", "token": SECRET, **params}
    res = client.post(f"/api/jobs/{job}/runs", json={"params": params})
    assert res.status_code == 202, res.text
    return res.json()["run"]


def ended(pb, run_id: int, timeout: float = 30) -> dict:
    olga = as_user(pb, "olga")
    return wait_for(lambda: (run := olga.get(f"/api/runs/{run_id}").json())["state"] in ENDED and run, timeout)


def audit(pb, action: str) -> list[dict]:
    return as_user(pb, "olga").get("/api/audit", params={"action": action}).json()["entries"]


def test_a_guarded_run_waits_without_running_then_an_approver_lets_it_run_what_was_requested(server):
    ann, omar, olga = as_user(server, "ann"), as_user(server, "omar"), as_user(server, "olga")
    run = request(ann)
    assert run["state"] == "awaiting_approval"
    assert run["approval"] == {"approvers": ["team:ops"], "state": "waiting", "by": None, "at": None, "comment": None}
    assert run["params"] == {"version": "v1.2", "token": "********"} and run["started"] is None
    assert [r["id"] for r in omar.get("/api/approvals").json()["runs"]] == [run["id"]]
    assert ann.get("/api/approvals").json()["runs"] == []  # the requester is no approver of it
    assert olga.get("/api/approvals").json()["runs"] == []  # nor is an admin not named in approve_by
    # parameters sent with an approval change nothing: what was approved is what runs
    res = omar.post(f"/api/runs/{run['id']}/approve", json={"comment": "looks right", "params": {"version": "evil"}})
    assert res.status_code == 202, res.text
    assert res.json()["run"]["state"] in ("queued", "running", "succeeded")
    done = ended(server, run["id"])
    assert done["state"] == "succeeded"
    assert {k: done["approval"][k] for k in ("state", "by", "comment")} == {
        "state": "approved", "by": "omar", "comment": "looks right"}
    assert done["approval"]["at"].endswith("Z")
    assert omar.get("/api/approvals").json()["runs"] == []
    log = wait_for(lambda: "secret-arrived" in (text := olga.get(f"/api/runs/{run['id']}/log").text) and text)
    assert log.splitlines() == ["version=v1.2", "secret-arrived"]
    entries = wait_for(lambda: audit(server, "run.approve"))
    assert [(e["user"], e["target"], e["detail"]) for e in entries] == [
        ("omar", "job:deploy", {"run": run["id"], "comment": "looks right"})]
    assert [e["user"] for e in audit(server, "run.start")] == ["ann"]


def test_an_awaiting_run_takes_no_concurrency_slot(server):
    ann, omar = as_user(server, "ann"), as_user(server, "omar")
    waiting = request(ann)  # max_concurrent_runs = 1
    busy = request(ann, "busy")
    assert wait_for(lambda: as_user(server, "olga").get(f"/api/runs/{busy['id']}").json()["state"] == "running")
    assert omar.post(f"/api/runs/{waiting['id']}/approve").json()["run"]["state"] == "queued"  # the slot is busy's
    assert ann.post(f"/api/runs/{busy['id']}/cancel").status_code == 202
    assert ended(server, waiting["id"])["state"] == "succeeded"


def test_a_rejected_run_ends_rejected_without_running_and_cannot_be_approved_after(server):
    ann, dave, omar = as_user(server, "ann"), as_user(server, "dave"), as_user(server, "omar")
    run = request(ann)
    res = dave.post(f"/api/runs/{run['id']}/reject", json={"comment": "not on a Friday"})
    assert res.status_code == 202, res.text
    done = res.json()["run"]
    assert (done["state"], done["started"], done["exit_code"]) == ("rejected", None, None)
    assert {k: done["approval"][k] for k in ("state", "by", "comment")} == {
        "state": "rejected", "by": "dave", "comment": "not on a Friday"}
    late = omar.post(f"/api/runs/{run['id']}/approve")
    assert late.status_code == 409 and "rejected" in late.json()["error"]
    assert as_user(server, "olga").get(f"/api/runs/{run['id']}/log").text == ""
    assert [e["user"] for e in wait_for(lambda: audit(server, "run.reject"))] == ["dave"]


def test_an_unanswered_run_expires_and_approving_it_then_is_a_conflict(server):
    ann, omar = as_user(server, "ann"), as_user(server, "omar")
    run = request(ann, "quick")
    done = ended(server, run["id"], timeout=10)
    assert done["state"] == "expired" and done["started"] is None
    assert done["approval"]["state"] == "expired" and done["approval"]["by"] is None
    res = omar.post(f"/api/runs/{run['id']}/approve")
    assert res.status_code == 409 and "expired" in res.json()["error"]
    assert [(e["user"], e["detail"]) for e in wait_for(lambda: audit(server, "run.expire"))] == [
        (None, {"run": run["id"]})]


def test_the_requester_cannot_approve_not_even_through_their_own_api_token(server):
    dave, omar = as_user(server, "dave"), as_user(server, "omar")
    run = request(dave)  # dave may run it and is in team:ops, the approvers
    assert dave.get("/api/approvals").json()["runs"] == []
    for action in ("approve", "reject"):
        res = dave.post(f"/api/runs/{run['id']}/{action}")
        assert res.status_code == 403, res.text
    token = dave.post("/api/tokens", json={"name": "ci"}).json()["token"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as robot:
        assert robot.get("/api/me").json()["user"] == "dave", robot.get("/api/me").text
        assert robot.post(f"/api/runs/{run['id']}/approve").status_code == 403
    assert as_user(server, "olga").post(f"/api/runs/{run['id']}/approve").status_code == 403  # admin, not named
    assert as_user(server, "alan").post(f"/api/runs/{run['id']}/approve").status_code == 403  # a runner
    assert omar.get(f"/api/runs/{run['id']}").json()["state"] == "awaiting_approval"
    assert dave.post(f"/api/runs/{run['id']}/cancel").status_code == 202  # the requester may withdraw it
    assert ended(server, run["id"])["state"] == "cancelled"
    assert omar.post(f"/api/runs/{run['id']}/approve").status_code == 409


def test_approving_a_run_the_user_may_not_see_answers_as_for_a_missing_run(server):
    run = request(as_user(server, "ann"))
    otto = as_user(server, "otto")
    for action in ("approve", "reject"):
        seen = otto.post(f"/api/runs/{run['id']}/{action}")
        gone = otto.post(f"/api/runs/{run['id'] + 1000}/{action}")
        assert seen.status_code == gone.status_code == 404
    assert otto.get("/api/approvals").json()["runs"] == []


def test_an_approve_and_a_reject_at_once_decide_exactly_once(server):
    ann, dave, omar = as_user(server, "ann"), as_user(server, "dave"), as_user(server, "omar")
    for _ in range(5):
        run = request(ann)
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda who, action, run_id=run["id"]: who.post(f"/api/runs/{run_id}/{action}"),
                                    (dave, omar), ("approve", "reject")))
        assert sorted(a.status_code for a in answers) == [202, 409], [a.text for a in answers]
        winner = next(a for a in answers if a.status_code == 202).json()["run"]
        done = ended(server, run["id"])
        assert done["approval"] == winner["approval"]
        assert done["state"] == ("succeeded" if winner["approval"]["state"] == "approved" else "rejected")


def test_a_long_comment_or_one_that_is_not_text_is_refused(server):
    run = request(as_user(server, "ann"))
    omar = as_user(server, "omar")
    assert omar.post(f"/api/runs/{run['id']}/approve", json={"comment": "x" * 2001}).status_code == 400
    assert omar.post(f"/api/runs/{run['id']}/approve", json={"comment": 7}).status_code == 400
    assert omar.get(f"/api/runs/{run['id']}").json()["state"] == "awaiting_approval"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_a_restart_while_awaiting_ends_the_run_interrupted_since_its_secret_is_gone(server, sig):
    run = request(as_user(server, "ann"))
    server.stop(sig)
    server.start()
    done = as_user(server, "olga").get(f"/api/runs/{run['id']}").json()
    assert (done["state"], done["message"], done["approval"]["state"]) == ("interrupted", LOST, "interrupted")
    assert as_user(server, "omar").post(f"/api/runs/{run['id']}/approve").status_code == 409
    assert as_user(server, "omar").get("/api/approvals").json()["runs"] == []


def test_the_events_stream_carries_changes_into_and_out_of_awaiting_approval(server):
    from tests.helpers import parse_sse, sse_lines

    ann, omar = as_user(server, "ann"), as_user(server, "omar")
    with omar.stream("GET", "/api/events") as res:
        events = parse_sse(sse_lines(res))
        assert next(events).data == {"active": []}
        run = request(ann)
        first = next(events).data
        assert (first["id"], first["state"]) == (run["id"], "awaiting_approval")
        omar.post(f"/api/runs/{run['id']}/reject")
        assert next(events).data["state"] == "rejected"


def check_warnings(write_jobs, extra: str) -> list[str]:
    text = "[team:ops]\nmembers = dave, omar\n[team:devs]\nmembers = ann\n[job:a]\ncommand = x\n" + extra
    return [w.message for w in C.load(write_jobs(text)).warnings]


def test_check_validates_approvers_and_warns_when_the_rule_needs_no_second_person(write_jobs):
    with pytest.raises(C.CatalogError, match=r"approve_by: team:nobody names no \[team:nobody\]"):
        C.load(write_jobs("[job:a]\ncommand = x\napprove_by = team:nobody\n"))
    with pytest.raises(C.CatalogError, match="approve_within: 'soon' is not"):
        C.load(write_jobs("[job:a]\ncommand = x\napprove_by = dave\napprove_within = soon\n"))
    assert check_warnings(write_jobs, "run_by = team:devs\napprove_by = team:ops\napprove_within = 4h\n") == []
    everyone = "everyone who may run this job may also approve it"
    assert everyone in check_warnings(write_jobs, "run_by = team:devs\napprove_by = *\n")[0]
    assert everyone in check_warnings(write_jobs, "run_by = team:ops\napprove_by = team:ops\n")[0]
    lone = check_warnings(write_jobs, "run_by = team:ops\napprove_by = dave\n")
    assert [w.split(": ", 1)[1] for w in lone] == [
        "the only approver, dave, may also run this job: their own runs can never be approved"]
    assert "does nothing" in check_warnings(write_jobs, "run_by = team:devs\napprove_within = 1h\n")[0]


def test_the_terminal_refuses_a_guarded_job_instead_of_waiting_for_an_approval_it_cannot_get(server):
    done = subprocess.run([BIN, "run", "deploy", "--jobs", str(server.jobs), "--data-dir", str(server.data_dir),
                           "--param", "version=v1"], env={**os.environ, "PB_TOKEN": SECRET},
                          capture_output=True, text=True, timeout=60)
    # (before it, jobs.ini's warning that header sign-in trusts loopback without a proxy secret)
    assert (done.returncode, done.stderr.strip().splitlines()[-1]) == (
        2, "pushbutton: deploy needs approval by team:ops: request it on the server")
    assert as_user(server, "olga").get("/api/runs").json()["runs"] == []


def reload(pb, text: str | None) -> None:
    """Save a new jobs.ini (None: keep it) and apply it now (as an admin's POST /api/reload does)."""
    if text is not None:
        tmp = pb.jobs.with_name("next.ini")
        tmp.write_text(text)
        os.replace(tmp, pb.jobs)
    res = as_user(pb, "olga").post("/api/reload")
    assert res.status_code == 200 and not res.json().get("problems"), res.text


def test_a_cancelled_waiting_run_says_so_in_its_approval(server):
    run = request(as_user(server, "ann"))
    assert as_user(server, "ann").post(f"/api/runs/{run['id']}/cancel").status_code == 202
    done = ended(server, run["id"])
    assert (done["state"], done["approval"]["state"], done["stopped_by"]) == ("cancelled", "cancelled", "ann")


def test_a_reload_that_removes_a_waiting_runs_job_or_its_approve_by_ends_it_instead_of_stranding_it(server):
    """Rights follow the new file: nobody could approve these any more, and no expiry was set."""
    gone, unguarded, guarded = (request(as_user(server, "ann")) for _ in range(3))
    # deploy loses approve_by, and a copy keeps it under a new id: the runs still belong to `deploy`
    reload(server, JOBS.replace("    approve_by = team:ops\n    [job:quick]", "    [job:quick]", 1))
    reload(server, None)  # not cancelled at once (a half-written file?): after 30 s or at the next reload
    for run in (gone, unguarded, guarded):
        done = ended(server, run["id"])
        assert (done["state"], done["approval"]["state"]) == ("cancelled", "cancelled")
        assert done["message"] == ("jobs.ini changed before anyone decided: its job no longer asks for approval; "
                                   "nothing ran, start it again")
    assert "secret-arrived" not in as_user(server, "olga").get(f"/api/runs/{gone['id']}/log").text
    reload(server, JOBS)
    waiting = request(as_user(server, "ann"))
    reload(server, JOBS.replace("[job:deploy]", "[job:deploy-v2]"))
    reload(server, None)
    assert ended(server, waiting["id"])["message"].startswith("jobs.ini changed before anyone decided: its job was "
                                                               "removed")
    assert as_user(server, "omar").get("/api/approvals").json()["runs"] == []


def test_an_approval_whose_body_arrives_after_a_reload_took_the_right_is_refused(server):
    """The rule was checked when the headers came; the comment came after a new jobs.ini had taken
    dave out of the ops team. The approval must not count."""
    import socket
    from urllib.parse import urlsplit

    run = request(as_user(server, "ann"))
    url = urlsplit(server.url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(f"POST /api/runs/{run['id']}/approve HTTP/1.1\r\nHost: {url.netloc}\r\n"
                     "X-Forwarded-User: dave\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n".encode())
        reload(server, JOBS.replace("members = dave, omar", "members = omar"))
        assert as_user(server, "dave").post(f"/api/runs/{run['id']}/approve").status_code == 403  # a fresh one
        sock.sendall(b"{}")
        answer = sock.recv(65536).decode()
    assert answer.split(" ", 2)[1] in ("403", "404"), answer
    assert as_user(server, "olga").get(f"/api/runs/{run['id']}").json()["state"] == "awaiting_approval"


def test_run_again_never_sends_a_masked_value_after_a_secret_became_text(server):
    run = request(as_user(server, "ann"))
    assert as_user(server, "omar").post(f"/api/runs/{run['id']}/approve").status_code == 202
    assert ended(server, run["id"])["state"] == "succeeded"
    reload(server, JOBS.replace("param.token.type = secret", "param.token.type = text"))
    again = as_user(server, "ann").post(f"/api/runs/{run['id']}/rerun", json={"params": {}})
    assert again.status_code == 202, again.text
    assert again.json()["run"]["params"].get("token") in (None, "")  # not "********"


def test_an_approval_once_shutdown_began_is_refused_and_nothing_runs(write_jobs, tmp_path):
    """Shutdown has stopped every run and is waiting for them: an approval then would queue a run
    that executes outside its stop-and-wait. It is refused, as a start is."""
    import gevent

    from server.run_errors import Conflict
    from server.runs import Runs
    from server.store import Store

    runs = Runs(C.load(write_jobs("[job:a]\ncommand = sleep 30\napprove_by = bob\n")), Store(tmp_path / "data"))
    try:
        run = runs.start("a", {}, user="ann")
        runs.closing = True  # as Runs.shutdown does first
        with pytest.raises(Conflict, match="shutting down"):
            runs.decide(run.id, "bob", True)
        gevent.sleep(0.3)
        assert run.state == "awaiting_approval" and run.process is None and not runs.queue
    finally:
        runs.shutdown(timeout=5)
        runs.store.close()
