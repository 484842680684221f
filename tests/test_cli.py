"""The `pushbutton` command: check, run, and headless start-up."""

from __future__ import annotations

import select
import socket
import subprocess

from tests.conftest import ROOT
from tests.helpers import BIN, TOKEN


def pb(*args: str, cwd=None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([BIN, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def test_check_ok_prints_a_one_line_summary():
    out = pb("check", "--jobs", str(ROOT / "jobs.ini"))
    assert out.returncode == 0
    assert out.stdout.count("\n") == 1 and "OK, 5 job(s): deploy, report, disk-check, backup, greet" in out.stdout


def test_check_prints_file_line_problems_and_exits_2(write_jobs):
    path = write_jobs("[job:a]\ncommand = x {y}\nbogus = 1\n")
    out = pb("check", "--jobs", str(path))
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        f"{path}:2: [job:a] command: {{y}} names no parameter ({{{{ }}}} write literal braces)",
        f"{path}:3: [job:a] bogus: unknown key",
    ]


def test_a_bad_jobs_ini_never_starts_a_server(write_jobs, tmp_path):
    path = write_jobs("[job:a]\ncommand = x\ntimeout = soon\n")
    out = pb("--headless", "--jobs", str(path), "--port", "0", "--data-dir", str(tmp_path / "d"))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == f"{path}:3: [job:a] timeout: 'soon' is not a duration like 90s, 30m or 1h"


def test_no_jobs_ini_says_where_it_looked(tmp_path):
    env_cmd = ["env", f"XDG_CONFIG_HOME={tmp_path}/cfg", BIN, "check"]
    out = subprocess.run(env_cmd, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2
    assert f"looked in: {tmp_path}/jobs.ini, {tmp_path}/cfg/pushbutton/jobs.ini" in out.stderr


def test_run_in_terminal_streams_output_and_exits_with_the_jobs_status(tmp_path):
    data = str(tmp_path / "d")
    ok = pb("run", "report", "-p", "rows=2", "-p", "regions=south,west", "--jobs", str(ROOT / "jobs.ini"),
            "--data-dir", data)
    assert ok.returncode == 0
    assert "south row 2: 74\nwest row 1: 37\n" in ok.stdout
    assert "warning: west has late data" in ok.stderr and "[100%] Region west" in ok.stderr
    failed = pb("run", "disk-check", "--jobs", str(ROOT / "jobs.ini"), "--data-dir", data)
    assert failed.returncode == 3 and "97% full" in failed.stderr
    bad = pb("run", "deploy", "-p", "tag=latest", "--jobs", str(ROOT / "jobs.ini"), "--data-dir", data)
    assert bad.returncode == 2 and "parameter tag: must match" in bad.stderr
    unknown = pb("run", "nope", "--jobs", str(ROOT / "jobs.ini"), "--data-dir", data)
    assert unknown.returncode == 2 and "no job 'nope'" in unknown.stderr


def test_terminal_runs_are_kept_in_history(pushbutton, tmp_path):
    data = tmp_path / "d"
    out = pb("run", "greet", "-p", "name=ann", "--jobs", str(ROOT / "jobs.ini"), "--data-dir", str(data))
    assert out.returncode == 0
    server = pushbutton(ROOT / "jobs.ini", data_dir=data)
    runs = server.client.get("/api/runs").json()["runs"]
    assert [(r["job"], r["state"], r["params"]) for r in runs] == [("greet", "succeeded", {"name": "ann"})]


def test_headless_prints_exactly_one_line_with_a_fresh_token_each_launch(tmp_path):
    urls = []
    for _ in range(2):
        proc = subprocess.Popen([BIN, "--headless", "--jobs", str(ROOT / "jobs.ini"), "--port", "0",
                                 "--data-dir", str(tmp_path / "d")], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        try:
            assert select.select([proc.stdout], [], [], 30)[0]
            line = proc.stdout.readline()
            assert line.startswith("Pushbutton serving on http://127.0.0.1:") and "/?token=" in line
            urls.append(line)
        finally:
            proc.terminate()
            assert proc.wait(30) == 0
        assert proc.stdout.read() == ""  # exactly one line, then nothing
    assert urls[0].split("token=")[1] != urls[1].split("token=")[1]


def test_a_busy_port_is_a_clear_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = pb("--headless", "--jobs", str(ROOT / "jobs.ini"), "--port", str(port), "--token", TOKEN,
                 "--data-dir", str(tmp_path / "d"))
    assert out.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in out.stderr

