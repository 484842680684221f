"""Values too long for the system to run the command with (server/command_size.py) are refused by
field when they are given, before anything is recorded or started: Linux refuses one argument or
environment string over 128 KiB, and all of them together over ARG_MAX, with exit 126 "Argument
list too long". Through the API and through `pushbutton run` alike."""

from __future__ import annotations

import resource
import subprocess

from tests.helpers import BIN
from tests.test_cli import run_job, runs_recorded

ONE = 128 * 1024 - 1  # Linux's MAX_ARG_STRLEN, its NUL not counted

JOBS = """
    [job:count]
    command = sh -c 'printf %s "$1" | wc -c' sh {note}
    param.note.type = multiline
    [job:pair]
    command = sh -c 'printf %s "$1$2" | wc -c' sh {a} {b}
    param.a.type = multiline
    param.b.type = multiline
    """


def test_a_value_over_128_kib_is_refused_by_field_with_the_limit_and_what_to_do_and_nothing_runs(
        pushbutton, write_jobs):
    pb = pushbutton(write_jobs(JOBS))
    big = "x" * (ONE + 1)  # the refusal used to come as the run's exit 126
    for url in ("/api/jobs/count/runs", "/api/jobs/count/preview"):
        res = pb.client.post(url, json={"params": {"note": big}})
        assert res.status_code == 400, (url, res.status_code, res.text[:300])
        message = res.json()["fields"]["note"]
        assert message.startswith(f"too long: {ONE + 1:,} bytes"), message
        assert "131,063" in message and "file parameter" in message, message  # PB_NOTE= takes 8 of 131,071
    assert pb.client.get("/api/runs").json()["runs"] == []  # nothing recorded
    fits = pb.start_run("count", note="x" * 131_063)  # the longest value that runs
    assert pb.wait(fits["id"])["state"] == "succeeded"
    assert pb.output(fits["id"]) == ["131063"]


def test_pushbutton_run_refuses_a_value_from_a_file_over_128_kib_before_anything_starts(write_jobs, tmp_path):
    jobs, data = write_jobs(JOBS), tmp_path / "d"
    note = tmp_path / "note.txt"
    note.write_text("y" * 200_000 + "\n")
    out = run_job(jobs, data, "count", "-p", f"note=@{note}")
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert out.stderr.startswith("pushbutton: parameter note: too long: 200,000 bytes"), out.stderr
    assert "file parameter" in out.stderr and "Argument list too long" not in out.stderr
    assert out.stdout == ""
    assert not (data / "history.sqlite3").exists() or runs_recorded(data) == []


def small_stack() -> None:
    """1 MiB of stack: ARG_MAX, a quarter of it, is 256 KiB."""
    resource.setrlimit(resource.RLIMIT_STACK, (1 << 20, resource.getrlimit(resource.RLIMIT_STACK)[1]))


def test_values_that_together_pass_arg_max_are_refused_naming_them_with_the_machines_limit(write_jobs, tmp_path):
    jobs, data = write_jobs(JOBS), tmp_path / "d"
    for name in ("a", "b"):
        (tmp_path / name).write_text(name * 100_000)  # each fits alone, twice (argv and PB_NAME): 400 KB
    args = ["run", "pair", "-p", f"a=@{tmp_path / 'a'}", "-p", f"b=@{tmp_path / 'b'}", "--jobs", str(jobs),
            "--data-dir", str(data)]
    out = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                         preexec_fn=small_stack)
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.splitlines()
    assert [line.split(":")[0] for line in lines] == ["pushbutton", "pushbutton"], lines
    for name, line in zip("ab", lines, strict=True):
        assert line.startswith(f"pushbutton: parameter {name}: too long: 100,000 bytes"), line
        assert "262,144" in line and "ARG_MAX" in line and "file parameter" in line, line
    assert runs_recorded(data) == []
    ran = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert (ran.returncode, ran.stdout) == (0, "200000\n"), ran.stderr  # the usual stack: it runs
