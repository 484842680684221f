"""Choices from a command (`param.NAME.choices_from`): real commands behind a real server.

Listing (argv, workdir, env, no shell), dependent lists (`{other}`), failures (exit code, stderr's
end, time-out, too much output), the cache and coalescing, the check of a value at start and in
the preview, and what `check` refuses.
"""

from __future__ import annotations

import os
import textwrap
import threading
import time
from pathlib import Path

import pytest

from server import catalog as C
from tests.helpers import alive, wait_for


def script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body).lstrip())
    path.chmod(0o755)
    return path


def listing(pb, job: str, name: str, **inputs):
    return pb.client.get(f"/api/jobs/{job}/params/{name}/choices", params=inputs)


def choices(pb, job: str, name: str, **inputs) -> list[str]:
    res = listing(pb, job, name, **inputs)
    assert res.status_code == 200, res.text
    return res.json()["choices"]


def start(pb, job: str, **params):
    return pb.client.post(f"/api/jobs/{job}/runs", json={"params": params})


def problems(write_jobs, text: str) -> list[str]:
    path = write_jobs(text)
    with pytest.raises(C.CatalogError) as info:
        C.load(path)
    return [str(p).replace(str(path), "FILE") for p in info.value.problems]


def test_one_choice_per_line_from_argv_run_in_the_workdir_with_the_jobs_env(pushbutton, write_jobs, tmp_path):
    (tmp_path / "releases").mkdir()
    script(tmp_path / "releases", "list.sh", """
        printf '  v1.2  \\n\\n\\t\\nv1.3\\nv1.2\\n'
        basename "$PWD"
        echo "$STAGE"
        """)
    pb = pushbutton(write_jobs("""
        [job:deploy]
        command = echo {release} {word}
        workdir = releases
        env.STAGE = blue
        param.release.type = choice
        param.release.choices_from = ./list.sh
        param.word.type = multichoice
        param.word.choices_from = printf '%s\\n' a;b $HOME `id` "two words"
        """))
    listed = listing(pb, "deploy", "release")
    assert listed.status_code == 200 and listed.headers["cache-control"] == "no-store"
    assert listed.json()["choices"] == ["v1.2", "v1.3", "releases", "blue"]  # stripped, no blanks, once each
    assert listed.json()["computed_at"].endswith("Z")
    # argv, never a shell: what a shell would expand reaches printf as written
    assert choices(pb, "deploy", "word") == ["a;b", "$HOME", "`id`", "two words"]
    job = next(j for j in pb.client.get("/api/jobs").json()["jobs"] if j["id"] == "deploy")
    assert [p["choices_from"] for p in job["params"]] == [{"inputs": []}, {"inputs": []}]
    assert "list.sh" not in str(job)  # the form learns that a list comes from a command, not the command


def test_a_dependent_list_gets_the_other_value_as_one_argument_and_in_env(pushbutton, write_jobs, tmp_path):
    script(tmp_path, "dbs.sh", """
        echo "argc=$#"
        echo "$1-main"
        echo "env=$PB_REGION"
        """)
    pb = pushbutton(write_jobs("""
        [job:backup]
        command = echo -- {region} {db}
        param.region.type = text
        param.db.type = choice
        param.db.choices_from = ./dbs.sh {region}
        """))
    assert choices(pb, "backup", "db", region="eu west") == ["argc=1", "eu west-main", "env=eu west"]
    hostile = "$(touch pwned); `touch pwned2` | x"
    assert choices(pb, "backup", "db", region=hostile) == ["argc=1", f"{hostile}-main", f"env={hostile}"]
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()
    assert choices(pb, "backup", "db", region="zürich") == ["argc=1", "zürich-main", "env=zürich"]
    # the input is checked as its own field is, and must be there
    empty = listing(pb, "backup", "db")
    assert empty.status_code == 400
    assert empty.json()["fields"] == {"region": "fill this in first: the choices of db depend on it"}
    assert listing(pb, "backup", "db", region="a\nb").json()["fields"] == {"region": "must be a single line"}


def test_a_chained_lists_input_must_be_one_of_its_own_current_list(pushbutton, write_jobs, tmp_path):
    """db's list depends on region, itself a list from a command: a request for db with a region
    its list does not hold is refused before db's command runs with it."""
    script(tmp_path, "regions.sh", "echo eu\necho us\n")
    script(tmp_path, "dbs.sh", 'echo "$1" >> asked; echo "$1-main"\n')
    pb = pushbutton(write_jobs("""
        [job:backup]
        command = echo {region} {db}
        param.region.type = choice
        param.region.choices_from = ./regions.sh
        param.db.type = choice
        param.db.choices_from = ./dbs.sh {region}
        """))
    assert choices(pb, "backup", "db", region="eu") == ["eu-main"]
    made_up = listing(pb, "backup", "db", region="mars")
    assert made_up.status_code == 400
    assert made_up.json()["fields"] == {"region": "'mars' is not one of the current choices"}
    assert (tmp_path / "asked").read_text() == "eu\n"  # the command never ran for mars


def test_a_preview_or_start_never_runs_a_dependent_list_with_a_made_up_input(pushbutton, write_jobs, tmp_path):
    """The same rule at preview and start: lists are checked inputs first, and db's command does
    not run with a region its own list does not hold (nor does a list further down the chain)."""
    script(tmp_path, "regions.sh", "echo eu\necho us\n")
    script(tmp_path, "dbs.sh", 'r="${1#--region=}"; echo "db $r" >> asked; echo "$r-main"\n')
    script(tmp_path, "tables.sh", 'echo "tables $1" >> asked; echo "$1.t"\n')
    pb = pushbutton(write_jobs("""
        [job:restore]
        command = echo {table} {db} {region}
        param.table.type = choice
        param.table.choices_from = ./tables.sh {db}
        param.db.type = choice
        param.db.choices_from = ./dbs.sh --region={region}
        param.region.type = choice
        param.region.choices_from = ./regions.sh
        """))
    values = {"region": "../../secret", "db": "../../secret-main", "table": "../../secret-main.t"}
    for path in ("/api/jobs/restore/preview", "/api/jobs/restore/runs"):
        res = pb.client.post(path, json={"params": values})
        assert res.status_code == 400 and res.json()["fields"] == {"region": "not one of the current choices"}
    assert not (tmp_path / "asked").exists()  # neither db's nor table's command ran
    ok = pb.client.post("/api/jobs/restore/preview", json={"params": {"region": "eu", "db": "eu-main",
                                                                      "table": "eu-main.t"}})
    assert ok.status_code == 200, ok.text
    assert (tmp_path / "asked").read_text() == "db eu\ntables eu-main\n"


def test_a_dependent_lists_cache_keeps_multichoice_inputs_apart(pushbutton, write_jobs):
    """envs=['a,b'] (one choice holding a comma) and envs=['a','b'] run the command with different
    argv: they are two cache entries, not one."""
    pb = pushbutton(write_jobs("""
        [job:j]
        command = echo {db}
        param.envs.type = multichoice
        param.envs.choices_from = printf 'a,b\\na\\nb\\n'
        param.db.type = choice
        param.db.choices_from = sh -c 'for a; do echo "db-$a"; done' sh {envs}
        """))
    one = pb.client.get("/api/jobs/j/params/db/choices", params=[("envs", "a,b")])
    assert one.json()["choices"] == ["db-a,b"], one.text
    two = pb.client.get("/api/jobs/j/params/db/choices", params=[("envs", "a"), ("envs", "b")])
    assert two.json()["choices"] == ["db-a", "db-b"]
    res = start(pb, "j", envs=["a", "b"], db="db-a,b")
    assert res.status_code == 400 and res.json()["fields"] == {"db": "not one of the current choices"}


def test_a_value_leading_an_argument_of_the_choices_command_may_not_start_with_a_dash(pushbutton, write_jobs, tmp_path):
    """`{region}` follows `--` in the job's command but begins an argument of the choices
    command: there too a value could become an option, so it is refused everywhere."""
    script(tmp_path, "dbs.sh", 'echo "$1-main"\n')
    pb = pushbutton(write_jobs("""
        [job:backup]
        command = echo -- {region} {db}
        param.region.type = text
        param.db.type = choice
        param.db.choices_from = ./dbs.sh {region}
        [job:plain]
        command = echo -- {region}
        param.region.type = text
        """))
    refused = listing(pb, "backup", "db", region="-rf")
    assert refused.status_code == 400 and "must not start with '-'" in refused.json()["fields"]["region"]
    assert "must not start with '-'" in start(pb, "backup", region="-rf").json()["fields"]["region"]
    assert start(pb, "plain", region="-rf").status_code == 202  # the same value where it cannot lead


def test_a_failing_command_answers_502_with_its_exit_code_and_the_end_of_its_stderr(pushbutton, write_jobs, tmp_path):
    script(tmp_path, "fail.sh", """
        echo partial
        for i in 1 2 3 4 5 6 7; do echo "err line $i" >&2; done
        exit 3
        """)
    pb = pushbutton(write_jobs("""
        [job:a]
        command = echo {x} {y}
        param.x.type = choice
        param.x.choices_from = ./fail.sh
        param.y.type = choice
        param.y.choices_from = ./no-such-script
        """))
    res = listing(pb, "a", "x")
    assert res.status_code == 502
    assert res.json() == {"error": "the choices command failed (exit 3)",
                          "detail": [f"err line {i}" for i in range(3, 8)]}
    missing = listing(pb, "a", "y")
    assert missing.status_code == 502 and "cannot start" in missing.json()["error"]
    # a failure is not kept: the next request runs the command again (Retry works once it is fixed)
    script(tmp_path, "fail.sh", "echo fixed\n")
    assert choices(pb, "a", "x") == ["fixed"]


def test_a_command_past_its_timeout_answers_504_and_its_processes_are_gone(pushbutton, write_jobs, tmp_path):
    script(tmp_path, "slow.sh", """
        sleep 60 &
        echo $! > child.pid
        echo $$ > slow.pid
        echo waiting for the database >&2
        wait
        """)
    pb = pushbutton(write_jobs("""
        [job:a]
        command = echo {x}
        param.x.type = choice
        param.x.choices_from = ./slow.sh
        param.x.choices_timeout = 1s
        """))
    answers = []
    worker = threading.Thread(target=lambda: answers.append(listing(pb, "a", "x")))
    began = time.monotonic()
    worker.start()
    wait_for(lambda: (tmp_path / "slow.pid").exists())
    for _ in range(20):  # the server keeps answering while the command hangs
        hub = time.monotonic()
        assert pb.client.get("/healthz").status_code == 200
        assert time.monotonic() - hub < 0.5
    worker.join(30)
    assert time.monotonic() - began < 10
    assert answers[0].status_code == 504
    assert answers[0].json() == {"error": "the choices command did not finish within 1 s",
                                 "detail": ["waiting for the database"]}
    for name in ("slow.pid", "child.pid"):
        pid = int((tmp_path / name).read_text())
        wait_for(lambda pid=pid: not alive(pid), timeout=5)


@pytest.mark.parametrize(("body", "error"), [
    ("head -c 3000000 /dev/zero | tr '\\0' 'x'; echo; sleep 60", "printed more than 1024 KiB"),
    ("seq 1 10001", "listed more than 10000 choices"),
])
def test_too_much_output_is_an_error_not_a_cut_list(pushbutton, write_jobs, tmp_path, body, error):
    script(tmp_path, "many.sh", body + "\n")
    pb = pushbutton(write_jobs("""
        [job:a]
        command = echo {x}
        param.x.type = choice
        param.x.choices_from = ./many.sh
        """))
    began = time.monotonic()
    res = listing(pb, "a", "x")
    assert res.status_code == 502 and error in res.json()["error"]
    assert time.monotonic() - began < 8  # killed at the cap, not left to its sleep or the time-out


def test_requests_at_once_run_the_command_once_and_the_list_is_kept_for_choices_cache(
        pushbutton, write_jobs, tmp_path):
    script(tmp_path, "count.sh", """
        echo "$1" >> runs.log
        sleep 1
        echo "$1-a"
        """)
    pb = pushbutton(write_jobs("""
        [job:kept]
        command = echo {region} {x}
        param.region.type = text
        param.x.type = choice
        param.x.choices_from = ./count.sh {region}
        param.x.choices_cache = 3s
        [job:fresh]
        command = echo {region} {x}
        param.region.type = text
        param.x.type = choice
        param.x.choices_from = ./count.sh {region}
        param.x.choices_cache = 0
        """))
    runs_log = tmp_path / "runs.log"
    answers: list[list[str]] = []
    threads = [threading.Thread(target=lambda: answers.append(choices(pb, "kept", "x", region="eu")))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert answers == [["eu-a"]] * 6
    assert runs_log.read_text().split() == ["eu"]  # six requests, one run
    first = listing(pb, "kept", "x", region="eu").json()
    assert runs_log.read_text().split() == ["eu"]  # from the cache...
    assert choices(pb, "kept", "x", region="us") == ["us-a"]  # ...per input value
    assert runs_log.read_text().split() == ["eu", "us"]
    time.sleep(3.2)
    later = listing(pb, "kept", "x", region="eu").json()
    assert runs_log.read_text().split() == ["eu", "us", "eu"]  # ...until it is older than choices_cache
    assert later["computed_at"] > first["computed_at"]
    runs_log.unlink()
    for _ in range(2):
        assert choices(pb, "fresh", "x", region="eu") == ["eu-a"]
    assert runs_log.read_text().split() == ["eu", "eu"]  # choices_cache = 0: every request runs it


def test_a_start_and_a_preview_take_only_a_value_of_the_current_list(pushbutton, write_jobs, tmp_path):
    (tmp_path / "envs.txt").write_text("staging\nproduction\n")
    script(tmp_path, "envs.sh", """
        [ -f broken ] && { echo "db down" >&2; exit 2; }
        cat envs.txt
        """)
    script(tmp_path, "hosts.sh", 'echo "$1-1"; echo "$1-2"\n')
    pb = pushbutton(write_jobs("""
        [job:deploy]
        command = echo {env} {hosts}
        param.env.type = choice
        param.env.required = yes
        param.env.choices_from = ./envs.sh
        param.env.choices_cache = 0
        param.hosts.type = multichoice
        param.hosts.choices_from = ./hosts.sh {env}
        """))
    ok = start(pb, "deploy", env="staging", hosts=["staging-2"])
    assert ok.status_code == 202, ok.text
    assert pb.output(ok.json()["run"]["id"]) == ["staging staging-2"]
    made_up = start(pb, "deploy", env="qa")
    assert made_up.status_code == 400 and made_up.json()["fields"] == {"env": "not one of the current choices"}
    wrong = start(pb, "deploy", env="staging", hosts=["staging-1", "production-1"])
    assert wrong.json()["fields"] == {"hosts": "'production-1' is not one of the current choices"}
    preview = pb.client.post("/api/jobs/deploy/preview", json={"params": {"env": "qa"}})
    assert preview.status_code == 400 and preview.json()["fields"] == {"env": "not one of the current choices"}
    # the list as it is now, not as the form showed it
    (tmp_path / "envs.txt").write_text("production\n")
    assert start(pb, "deploy", env="staging").json()["fields"] == {"env": "not one of the current choices"}
    (tmp_path / "broken").touch()
    failed = start(pb, "deploy", env="production")
    assert failed.status_code == 400
    assert failed.json()["fields"] == {"env": "the current choices could not be listed: "
                                              "the choices command failed (exit 2)"}
    assert [r["id"] for r in pb.client.get("/api/runs").json()["runs"]] == [ok.json()["run"]["id"]]


def test_a_remote_jobs_choices_command_runs_on_the_server(pushbutton, write_jobs, tmp_path):
    pb = pushbutton(write_jobs("""
        [host:far]
        address = 192.0.2.1
        [job:remote]
        command = echo {x}
        targets = host:far
        param.x.type = choice
        param.x.choices_from = hostname
        """))
    assert choices(pb, "remote", "x") == [os.uname().nodename]


def test_a_shell_jobs_choices_script_gets_other_values_in_env_only(pushbutton, write_jobs):
    pb = pushbutton(write_jobs("""
        [job:sh]
        shell = yes
        command = echo "$PB_REGION $PB_DB"
        param.region.type = text
        param.db.type = choice
        param.db.choices_from = for n in 1 2; do echo "$PB_REGION-$n"; done
        """))
    job = next(j for j in pb.client.get("/api/jobs").json()["jobs"] if j["id"] == "sh")
    assert job["params"][1]["choices_from"] == {"inputs": ["region"]}
    assert choices(pb, "sh", "db", region="$(id) eu") == ["$(id) eu-1", "$(id) eu-2"]


def test_only_a_parameter_with_choices_from_has_a_list(pushbutton, write_jobs):
    pb = pushbutton(write_jobs("""
        [job:a]
        command = echo {x} {y}
        param.x.type = choice
        param.x.choices = a, b
        param.y.type = choice
        param.y.choices_from = echo y
        """))
    assert listing(pb, "a", "x").status_code == 400  # a list, but not from a command
    assert listing(pb, "a", "nope").status_code == 404
    assert listing(pb, "nope", "y").status_code == 404
    assert choices(pb, "a", "y") == ["y"]


@pytest.mark.parametrize(("text", "expected"), [
    ("command = x {a} {b}\nparam.a.type = choice\nparam.a.choices_from = ls {b}\n"
     "param.b.type = choice\nparam.b.choices_from = ls {a}\n",
     "FILE:4: [job:j] param.a.choices_from: choices_from lists depend on each other in a loop: a -> b -> a"),
    ("command = x {a}\nparam.a.type = choice\nparam.a.choices_from = ls {a}\n",
     "FILE:4: [job:j] param.a.choices_from: choices_from lists depend on each other in a loop: a -> a"),
    ("command = x {a}\nparam.a.type = choice\nparam.a.choices_from = ls {nope}\n",
     "FILE:4: [job:j] param.a.choices_from: {nope} names no parameter"),
    ("command = x {a}\nparam.a.type = choice\nparam.a.choices_from = ls {key}\nparam.key.type = secret\n",
     "FILE:4: [job:j] param.a.choices_from: secret {key} cannot feed a choices command"),
    ("shell = yes\ncommand = x\nparam.a.type = choice\nparam.a.choices_from = ls $PB_KEY\nparam.key.type = secret\n",
     "FILE:5: [job:j] param.a.choices_from: secret $PB_KEY cannot feed a choices command"),
    ("shell = yes\ncommand = x\nparam.a.type = choice\nparam.a.choices_from = ls {b}\nparam.b.type = text\n",
     "FILE:5: [job:j] param.a.choices_from: shell = yes: the choices command gets other parameters only as"),
    ("command = x {a}\nparam.a.type = text\nparam.a.choices_from = ls\n",
     "FILE:4: [job:j] param.a.choices_from: choices_from only applies to choice and multichoice, not text"),
    ("command = x {a}\nparam.a.type = choice\nparam.a.choices = p, q\nparam.a.choices_from = ls\n",
     "FILE:5: [job:j] param.a.choices_from: give choices or choices_from, not both"),
    ("command = x {a}\nparam.a.type = choice\nparam.a.choices_from = ls 'open\n",
     "FILE:4: [job:j] param.a.choices_from: cannot split choices_from: No closing quotation"),
    ("command = x {a}\nparam.a.type = choice\nparam.a.choices_timeout = 5s\n",
     "FILE:4: [job:j] param.a.choices_timeout: choices_timeout and choices_cache need choices_from"),
    ("command = x {a}\nparam.a.type = choice\nparam.a.choices_from = ls\nparam.a.choices_timeout = 0\n",
     "FILE:5: [job:j] param.a.choices_timeout: must be longer than 0s"),
    ("command = x {a}\nparam.a.type = choice\nparam.a.choices_from = ls\nparam.a.choices_cache = soon\n",
     "FILE:5: [job:j] param.a.choices_cache: 'soon' is not a duration"),
], ids=["loop", "self", "unknown", "secret", "shell-secret", "shell-placeholder", "not-a-choice", "both",
        "unsplittable", "no-command", "timeout", "cache"])
def test_check_refuses_loops_unknown_names_secrets_and_misplaced_keys(write_jobs, text, expected):
    found = problems(write_jobs, "[job:j]\n" + text)
    assert any(p.startswith(expected) for p in found), found


def test_choices_from_keys_are_read(write_jobs):
    job = C.load(write_jobs("""
        [job:j]
        command = x {a} {b}
        param.b.type = text
        param.a.type = multichoice
        param.a.choices_timeout = 30s
        param.a.choices_cache = 5m
        param.a.choices_from = ./list --region {b}
        param.a.default = x, y
        """)).jobs["j"]
    source = job.params[1].choices_from
    assert (source.argv, source.inputs, source.timeout, source.cache) == (["./list", "--region", "{b}"], ["b"], 30, 300)
    assert job.params[1].default == ["x", "y"]  # checked against the list when a run starts


def test_at_most_four_choices_commands_run_at_once(pushbutton, write_jobs, tmp_path):
    """New input values each run the command; a burst of them takes turns instead of forking
    without bound for whoever may see the job."""
    script(tmp_path, "busy.sh", """
        mkdir -p running
        touch "running/$1"
        ls running | wc -l >> widths.log
        sleep 0.5
        rm "running/$1"
        echo "$1"
        """)
    pb = pushbutton(write_jobs("""
        [job:a]
        command = echo {n} {x}
        param.n.type = int
        param.x.type = choice
        param.x.choices_from = ./busy.sh {n}
        """))
    answers: dict[int, list[str]] = {}
    threads = [threading.Thread(target=lambda n=n: answers.__setitem__(n, choices(pb, "a", "x", n=n)))
               for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert answers == {n: [str(n)] for n in range(10)}
    widths = [int(w) for w in (tmp_path / "widths.log").read_text().split()]
    assert len(widths) == 10 and 2 <= max(widths) <= 4  # in parallel, four at most
