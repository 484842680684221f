"""The command preview (`POST /api/jobs/<id>/preview`, server/preview.py) against real processes:
for every parameter type and every place a value can go (the cases of tests/values.py), the
preview's argv is byte for byte the argv the started process has (its /proc/PID/cmdline), a value
a start refuses is refused by the preview with the same fields, and secrets never show.
The same property on a remote host, with the remote command line: tests/ssh/test_remote_preview.py.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter

import pytest
from hypothesis import HealthCheck, event, given, settings

from tests import values as V
from tests.helpers import Pushbutton, lines_of

# The process's own argv as hex (NUL-separated), then a line "."; `; echo .` also keeps dash from
# exec-ing od in its place (then /proc/$$ would be od's).
DUMP = "od -An -tx1 -v /proc/$$/cmdline; echo ."
DUMP_ARGS = f"sh -c '{DUMP}' sh"


def jobs_ini(extra: str = "") -> str:
    """tests/values.py's jobs (a job per type, place and allow_dash), each dumping its argv."""
    out = []
    for type_ in V.TYPED:
        for place in V.places(type_):
            for allow in (False, True):
                if place == "shell":
                    command = f"command = {DUMP}\nshell = yes\n"
                else:
                    command = f"command = {DUMP_ARGS} {V.PLACES[place] or ''}\n"
                section = f"[job:{V.job_id(type_, place, allow)}]\n{command}{extra}param.x.type = {type_}\n"
                if "choice" in type_:
                    section += f"param.x.choices = {', '.join(V.choices(place, allow))}\n"
                if allow:
                    section += "param.x.allow_dash = yes\n"
                out.append(section)
    return "\n".join(out)


def dumped_argv(lines: list[str]) -> list[bytes]:
    """The argv a DUMP printed (hex of NUL-terminated elements, up to the "." line)."""
    raw = bytes.fromhex("".join(lines[:lines.index(".")]).replace(" ", ""))
    assert raw.endswith(b"\0"), raw
    return raw[:-1].split(b"\0")


def check_preview(pb: Pushbutton, type_: str, place: str, allow: bool, raw) -> tuple[dict, dict] | None:
    """The property for one value: preview, then start with the same body. Both refuse it with the
    same fields, or the preview's argv is the started process's argv and the run keeps the
    preview. Returns (preview, run) when it ran."""
    job, body = V.job_id(type_, place, allow), {"params": {"x": raw}}
    shown = pb.client.post(f"/api/jobs/{job}/preview", json=body)
    started = pb.client.post(f"/api/jobs/{job}/runs", json=body)
    if started.status_code == 400:
        assert shown.status_code == 400 and shown.json() == started.json(), (raw, shown.text, started.text)
        event("refused alike")
        return None
    event("ran")
    assert started.status_code == 202 and shown.status_code == 200, (raw, shown.text, started.text)
    preview, run_id = shown.json(), started.json()["run"]["id"]
    lines = lines_of(pb.events(run_id), "stdout")
    run = pb.run(run_id)
    assert run["state"] == "succeeded", (run, lines)
    assert dumped_argv(lines) == [arg.encode("utf-8", "surrogateescape") for arg in preview["argv"]], raw
    assert run["preview"] == preview
    return preview, run


@pytest.fixture(scope="module")
def preview_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("preview")
    jobs = folder / "jobs.ini"
    jobs.write_text(jobs_ini())
    pb = Pushbutton(jobs, folder / "data", folder / "server.log").start()
    yield pb
    pb.stop()


def test_the_preview_argv_of_every_type_is_exactly_what_the_process_receives_or_both_refuse_alike(preview_server):
    outcomes = Counter()

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=V.cases())
    def check(case):
        got = check_preview(preview_server, *case)
        outcomes["ran" if got else "refused"] += 1
        if got is not None:
            preview, _ = got
            assert preview["targets"] == [] and preview["remote"] is None
            assert preview["workdir"] == str(preview_server.jobs.parent)
            assert preview["shell"] == (case[1] == "shell")
            assert "PB_X" in preview["env"]

    check()
    enough_of_both(outcomes)


def enough_of_both(outcomes: Counter) -> None:
    """The property compared argvs, not only refusals: a server that refused every value would
    pass it otherwise."""
    total = sum(outcomes.values())
    assert outcomes["ran"] >= total // 4 and outcomes["refused"] >= 1, outcomes


def test_bad_values_give_the_preview_the_same_fields_as_a_start_and_record_nothing(pushbutton, write_jobs):
    pb = pushbutton(write_jobs("""
        [job:deploy]
        command = deploy {env} {count}
        param.env.type = choice
        param.env.choices = staging, production
        param.env.required = yes
        param.count.type = int
        param.count.max = 5
        """))
    for params in ({}, {"env": "moon", "count": 9}, {"env": "staging", "nope": 1}, {"env": "-x"}):
        shown = pb.client.post("/api/jobs/deploy/preview", json={"params": params})
        started = pb.client.post("/api/jobs/deploy/runs", json={"params": params})
        assert shown.status_code == started.status_code == 400, params
        assert shown.json() == started.json() and shown.json()["fields"], params
    assert pb.client.post("/api/jobs/deploy/preview", json={"params": {"env": "staging"}}).json()["argv"] == [
        "deploy", "staging", ""]
    assert pb.client.get("/api/runs").json()["runs"] == []  # a preview runs and records nothing


def test_a_secret_never_appears_in_a_preview_and_env_names_exactly_the_variables_set(pushbutton, write_jobs):
    secret = "Zq-preview-secret-7f3a"
    pb = pushbutton(write_jobs("""
        [job:login]
        command = sh -c 'env; echo "user=$1"' sh {user}
        env.GREETING = hello
        param.user.type = text
        param.token.type = secret
        """))
    body = {"params": {"user": "ann", "token": secret}}
    shown = pb.client.post("/api/jobs/login/preview", json=body)
    assert shown.status_code == 200, shown.text
    assert secret not in shown.text
    preview = shown.json()
    assert preview["env"] == ["GREETING", "PB_ARTIFACTS", "PB_TOKEN", "PB_USER", "PUSHBUTTON_RUN_ID",
                              "PYTHONUNBUFFERED"]
    assert preview["argv"] == ["sh", "-c", 'env; echo "user=$1"', "sh", "ann"]
    run_id = pb.client.post("/api/jobs/login/runs", json=body).json()["run"]["id"]
    out = pb.output(run_id)
    run = pb.wait(run_id)
    assert run["preview"] == preview and secret not in json.dumps(run)
    assert set(preview["env"]) <= {line.split("=", 1)[0] for line in out}  # every name listed is set
    assert "user=ann" in out


def test_runs_from_before_previews_show_none(pushbutton, write_jobs):
    """A run stored without a preview (from before this column) reads `"preview": null`."""
    pb = pushbutton(write_jobs("""
        [job:hi]
        command = echo hi
        """))
    old = pb.start_run("hi")["id"]
    pb.wait(old)
    pb.stop()
    db = sqlite3.connect(pb.data_dir / "history.sqlite3")
    db.execute("UPDATE runs SET preview = NULL")
    db.commit()
    db.close()
    pb.start()
    assert pb.run(old)["preview"] is None
    assert pb.start_run("hi")["preview"]["argv"] == ["echo", "hi"]
