"""`confirm` is enforced by the server: a job that asks starts only on an explicit `"confirm": true`,
from the API and from Run again alike; otherwise 428 with the question, and nothing runs."""

from __future__ import annotations

import time

import pytest

NOT_YES = ["yes", 1, "true", [True], {"answer": True}, None, False]


@pytest.fixture
def pb(pushbutton, write_jobs, tmp_path):
    """`touch` leaves a file behind if the job's process ever started."""
    return pushbutton(write_jobs(f"""
        [job:wipe]
        command = touch {tmp_path}/ran-{{target}}
        confirm = Really wipe {{target}} ({{{{all}}}} of it, {{keep}} kept)?
        param.target.type = choice
        param.target.choices = alpha, beta
        param.target.required = yes
        param.keep.type = int
        param.keep.default = 3
        param.keep.min = 0

        [job:plain]
        command = touch {tmp_path}/ran-plain
        """))


def started(pb, tmp_path) -> list[str]:
    time.sleep(0.3)  # a process started by mistake would have touched its file by now
    return sorted(p.name for p in tmp_path.glob("ran-*"))


def test_a_job_that_asks_is_refused_with_its_filled_in_question_and_nothing_runs(pb, tmp_path):
    res = pb.client.post("/api/jobs/wipe/runs", json={"params": {"target": "beta"}})
    assert res.status_code == 428
    assert res.json() == {"error": "confirmation required", "confirm": "Really wipe beta ({all} of it, 3 kept)?"}
    assert pb.client.get("/api/runs").json()["runs"] == []
    assert started(pb, tmp_path) == []


@pytest.mark.parametrize("answer", NOT_YES, ids=repr)
def test_only_the_json_boolean_true_counts_as_yes(pb, tmp_path, answer):
    res = pb.client.post("/api/jobs/wipe/runs", json={"params": {"target": "alpha"}, "confirm": answer})
    assert res.status_code == 428 and res.json()["confirm"] == "Really wipe alpha ({all} of it, 3 kept)?"
    assert pb.client.get("/api/runs").json()["runs"] == []
    assert started(pb, tmp_path) == []


def test_bad_parameters_are_reported_before_the_question(pb, tmp_path):
    res = pb.client.post("/api/jobs/wipe/runs", json={"params": {"target": "gamma", "keep": -1}})
    assert res.status_code == 400
    assert res.json()["fields"] == {"target": "must be one of: alpha, beta", "keep": "must be at least 0"}
    assert started(pb, tmp_path) == []


def test_with_confirm_true_the_job_runs(pb, tmp_path):
    res = pb.client.post("/api/jobs/wipe/runs", json={"params": {"target": "alpha"}, "confirm": True})
    assert res.status_code == 202, res.text
    assert pb.wait(res.json()["run"]["id"])["state"] == "succeeded"
    assert started(pb, tmp_path) == ["ran-alpha"]


def test_run_again_asks_again_with_the_values_it_would_use(pb, tmp_path):
    first = pb.client.post("/api/jobs/wipe/runs", json={"params": {"target": "alpha", "keep": 5}, "confirm": True})
    run_id = first.json()["run"]["id"]
    pb.wait(run_id)
    (tmp_path / "ran-alpha").unlink()
    for body in ({}, {"params": {}}, {"params": {"target": "beta"}, "confirm": "yes"}):
        res = pb.client.post(f"/api/runs/{run_id}/rerun", json=body)
        assert res.status_code == 428, body
        expected = "beta" if body.get("params") else "alpha"
        assert res.json()["confirm"] == f"Really wipe {expected} ({{all}} of it, 5 kept)?"
    assert [r["id"] for r in pb.client.get("/api/runs").json()["runs"]] == [run_id]
    assert started(pb, tmp_path) == []
    again = pb.client.post(f"/api/runs/{run_id}/rerun", json={"confirm": True})
    assert again.status_code == 202, again.text
    assert pb.wait(again.json()["run"]["id"])["params"] == {"target": "alpha", "keep": 5}
    assert started(pb, tmp_path) == ["ran-alpha"]


@pytest.mark.parametrize("body", [{"params": {}}, {"params": {}, "confirm": False},
                                  {"params": {}, "confirm": "yes"}, {"params": {}, "confirm": True}], ids=repr)
def test_a_job_that_does_not_ask_ignores_the_field(pb, tmp_path, body):
    res = pb.client.post("/api/jobs/plain/runs", json=body)
    assert res.status_code == 202, res.text
    pb.wait(res.json()["run"]["id"])
    rerun = pb.client.post(f"/api/runs/{res.json()['run']['id']}/rerun", json=body)
    assert rerun.status_code == 202, rerun.text
    pb.wait(rerun.json()["run"]["id"])
    assert started(pb, tmp_path) == ["ran-plain"]
