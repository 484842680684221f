"""The `pushbutton` command: check, run, and headless start-up."""

from __future__ import annotations

import hashlib
import os
import pty
import select
import socket
import sqlite3
import subprocess
import time

import httpx
import psutil

from tests.conftest import ROOT
from tests.helpers import BIN, TOKEN


def pb(*args: str, cwd=None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([BIN, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def test_check_ok_prints_a_one_line_summary():
    out = pb("check", "--jobs", str(ROOT / "jobs.ini"))
    assert out.returncode == 0
    assert out.stdout.count("\n") == 1
    assert "OK, 6 job(s): deploy, report, disk-check, backup, greet, import" in out.stdout


def test_check_prints_file_line_problems_and_exits_2(write_jobs):
    path = write_jobs("[job:a]\ncommand = x {y}\nbogus = 1\n")
    out = pb("check", "--jobs", str(path))
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        f"{path}:2: [job:a] command: {{y}} names no parameter ({{{{ }}}} write literal braces)",
        f"{path}:3: [job:a] bogus: unknown key",
    ]


def test_check_also_prints_the_warnings_of_a_file_with_errors_in_line_order(write_jobs):
    """Fixing the errors first and only then learning of the warnings took two rounds."""
    path = write_jobs("[pushbutton]\nauth = local\n[job:a]\ncommand = x {y}\nrun_by = *\n")
    out = pb("check", "--jobs", str(path))
    assert out.returncode == 2
    lines = out.stderr.splitlines()
    assert [line.split(": ", 2)[:2] for line in lines] == [[f"{path}:1", "warning"], [f"{path}:4", "[job:a] command"]]

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


def test_a_port_out_of_range_is_a_usage_error_not_a_traceback(tmp_path):
    for port in ("70000", "-1", "eighty"):
        out = pb("--headless", "--jobs", str(ROOT / "jobs.ini"), f"--port={port}", "--data-dir", str(tmp_path / "d"))
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.splitlines()[-1] == (f"pushbutton: error: argument --port: '{port}' is not a port: "
                                               "give 0 to 65535 (0 = any free one)")



# -- values off the command line, confirmation, the token --------------------------------------

SECRET_JOB = """
    [job:digest]
    command = sh -c 'printf "%s" "$PB_KEY" | sha256sum; printf "note=[%s] name=[%s]\\n" "$PB_NOTE" "$PB_NAME"'
    param.key.type = secret
    param.note.type = text
    param.name.type = text
    param.name.required = yes
    [job:wipe]
    command = echo wiped {target}
    confirm = Really wipe {target}?
    param.target.type = text
    param.target.default = db
    """


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def run_job(jobs, data, *args: str, stdin: str | None = None, env: dict | None = None):
    return subprocess.run([BIN, "run", *args, "--jobs", str(jobs), "--data-dir", str(data)], input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_values_come_from_a_file_stdin_or_the_environment_and_minus_p_wins(write_jobs, tmp_path):
    jobs, data = write_jobs(SECRET_JOB), tmp_path / "d"
    key_file = tmp_path / "key"
    key_file.write_text("from-a-file\n")
    out = run_job(jobs, data, "digest", "-p", f"key=@{key_file}", "-p", "note=@@at", "-p", "name=ann")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{sha('from-a-file')}  -\nnote=[@at] name=[ann]\n"  # one trailing newline dropped
    assert "warning" not in out.stderr

    out = run_job(jobs, data, "digest", "-p", "key=@-", "-p", "name=ann", stdin="from-stdin\n")
    assert out.stdout.startswith(f"{sha('from-stdin')}  -\n"), out.stderr

    env = {"PB_KEY": "from-the-env", "PB_NAME": "env-name", "PB_NOTE": "env-note"}
    out = run_job(jobs, data, "digest", "-p", "note=given", env=env)
    assert out.stdout == f"{sha('from-the-env')}  -\nnote=[given] name=[env-name]\n", out.stderr

    out = run_job(jobs, data, "digest", "-p", "key=typed-literally", "-p", "name=ann")
    assert out.returncode == 0 and out.stdout.startswith(sha("typed-literally"))
    warning = [line for line in out.stderr.splitlines() if "warning" in line]
    assert warning == ["pushbutton: warning: -p key=... shows the secret to every user of this machine (ps); "
                       "use -p key=@FILE, -p key=@- (standard input), PB_KEY, or leave it out to be asked"]


def test_a_secret_given_as_an_at_at_literal_is_warned_about_like_any_on_the_command_line(write_jobs, tmp_path):
    """-p key=@@VALUE is the literal @VALUE: as visible in ps as -p key=VALUE."""
    out = run_job(write_jobs(SECRET_JOB), tmp_path / "d", "digest", "-p", "key=@@typed-literally", "-p", "name=ann")
    assert out.returncode == 0 and out.stdout.startswith(sha("@typed-literally")), out.stderr
    assert "pushbutton: warning: -p key=... shows the secret to every user of this machine (ps)" in out.stderr


def test_values_that_cannot_be_read_start_nothing(write_jobs, tmp_path):
    jobs, data = write_jobs(SECRET_JOB), tmp_path / "d"
    cases = {
        (f"key=@{tmp_path}/missing",): f"-p key=@{tmp_path}/missing: cannot read it: No such file or directory",
        ("key=@",): "-p key=@: a file name (or - for standard input) must follow @",
        ("key=@-", "note=@-"): "only one -p NAME=@- can read standard input",
    }
    for pairs, message in cases.items():
        out = run_job(jobs, data, "digest", *[arg for pair in pairs for arg in ("-p", pair)], "-p", "name=x")
        assert (out.returncode, out.stdout, out.stderr) == (2, "", f"pushbutton: {message}\n")
    assert not (data / "history.sqlite3").exists()


def test_help_says_how_to_keep_values_off_the_command_line():
    text = pb("run", "--help").stdout
    for words in ("NAME=@FILE", "NAME=@-", "PB_<NAME>", "a prompt", "@@", "--yes", "(ps)"):
        assert words in text, words
    assert "--token-file" in pb("--help").stdout


class Terminal:
    """`pushbutton run` on a pseudo-terminal: stdin is a tty and /dev/tty its controlling terminal."""

    def __init__(self, *args: str):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child
            os.execv(BIN, [BIN, *args])
        self.seen = b""

    def expect(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.seen:
            assert select.select([self.fd], [], [], max(0, deadline - time.monotonic()))[0], self.seen
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # the child closed the terminal
                chunk = b""
            assert chunk, f"ended before {text!r}: {self.seen!r}"
            self.seen += chunk
        return self.seen.decode()

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\n")

    def exit_code(self) -> int:
        while True:  # drain, or the child may block on a full terminal
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.seen += chunk
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def test_a_terminal_is_asked_for_missing_required_values_and_secrets_without_echo(write_jobs, tmp_path):
    jobs, data = write_jobs(SECRET_JOB), tmp_path / "d"
    term = Terminal("run", "digest", "--jobs", str(jobs), "--data-dir", str(data))
    term.expect("Key (key): ")
    term.type("typed-in-secret")
    term.expect("Name (name): ")
    term.type("ann")
    assert term.exit_code() == 0
    seen = term.seen.decode()
    assert f"{sha('typed-in-secret')}  -" in seen and "name=[ann]" in seen
    assert "typed-in-secret" not in seen  # not echoed, and masked in the output
    assert "Note (note)" not in seen  # optional and not secret: not asked


def runs_recorded(data) -> list[tuple]:
    with sqlite3.connect(data / "history.sqlite3") as db:
        return db.execute("SELECT job, state FROM runs ORDER BY id").fetchall()


def test_a_confirmed_job_needs_a_yes_on_the_terminal_or_yes(write_jobs, tmp_path):
    jobs, data = write_jobs(SECRET_JOB), tmp_path / "d"
    out = run_job(jobs, data, "wipe", "-p", "target=cache")
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == "pushbutton: wipe asks: Really wipe cache?\npushbutton: not started; pass --yes to confirm\n"
    assert runs_recorded(data) == []

    for answer, code in (("n", 1), ("", 1), ("y", 0)):
        term = Terminal("run", "wipe", "--jobs", str(jobs), "--data-dir", str(data))
        term.expect("Really wipe db? [y/N] ")
        term.type(answer)
        assert term.exit_code() == code
        assert ("wiped db" in term.seen.decode()) == (code == 0)
    assert runs_recorded(data) == [("wipe", "succeeded")]

    for flag in ("--yes", "-y"):
        out = run_job(jobs, data, "wipe", flag)
        assert (out.returncode, out.stdout) == (0, "wiped db\n"), out.stderr
    assert runs_recorded(data) == [("wipe", "succeeded")] * 3


def test_headless_takes_its_token_from_a_file_or_the_environment_and_shows_it_once(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("token-from-a-file\n")
    for args, env, token in ((["--token-file", str(token_file)], {}, "token-from-a-file"),
                             ([], {"PUSHBUTTON_TOKEN": "token-from-the-env"}, "token-from-the-env")):
        proc = subprocess.Popen([BIN, "--headless", "--jobs", str(ROOT / "jobs.ini"), "--port", "0",
                                 "--data-dir", str(tmp_path / "d"), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
        try:
            assert select.select([proc.stdout], [], [], 30)[0]
            line = proc.stdout.readline()
            assert line.endswith(f"/?token={token}\n")
            url = line.split(" on ", 1)[1].split("?")[0]
            assert httpx.get(url + "api/jobs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
            assert token not in " ".join(psutil.Process(proc.pid).cmdline())
        finally:
            proc.terminate()
            assert proc.wait(30) == 0
        assert proc.stdout.read() == "" and token not in proc.stderr.read()  # the URL line only

    token_file.write_text("")
    out = pb("--headless", "--jobs", str(ROOT / "jobs.ini"), "--token-file", str(token_file))
    assert (out.returncode, out.stderr) == (2, f"pushbutton: --token-file {token_file} is empty\n")
    out = pb("--headless", "--jobs", str(ROOT / "jobs.ini"), "--port", "0", "--token", "x", "--token-file", "f")
    assert out.returncode == 2 and "not allowed with argument" in out.stderr


# -- ways out of `pushbutton run`: none leaves the job running or its run `running` --------------

QUIET_JOB = """
    [job:quiet]
    shell = yes
    command = echo $$ > {pid}; echo a; sleep 0.5; echo b; exec sleep 30
    """


def gone(pid_file) -> bool:
    """The job's process (exec'd into `sleep 30`) is no more: not orphaned to init."""
    pid = int(pid_file.read_text())
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_run_whose_reader_goes_away_stops_the_job_records_cancelled_and_exits_141(write_jobs, tmp_path):
    """`pushbutton run quiet | head -1`: the job was left to run unsupervised, the run `running`."""
    jobs, data, pid = write_jobs(QUIET_JOB.replace("{pid}", str(tmp_path / "pid"))), tmp_path / "d", tmp_path / "pid"
    proc = subprocess.Popen([BIN, "run", "quiet", "--jobs", str(jobs), "--data-dir", str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout.readline() == b"a\n"
    proc.stdout.close()  # as `head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(20) == 141, err
    assert "Traceback" not in err and "pushbutton: stopping the run..." in err
    assert gone(pid)
    assert runs_recorded(data) == [("quiet", "cancelled")]


def test_run_whose_terminal_closes_stops_the_job_records_cancelled_and_exits_129(write_jobs, tmp_path):
    """SIGHUP, then every write to the hung-up terminal fails (EIO)."""
    jobs, data, pid = write_jobs(QUIET_JOB.replace("{pid}", str(tmp_path / "pid"))), tmp_path / "d", tmp_path / "pid"
    term = Terminal("run", "quiet", "--jobs", str(jobs), "--data-dir", str(data))
    term.expect("a\r\n")
    os.close(term.fd)  # the terminal closes: the kernel hangs up its session
    _, status = os.waitpid(term.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 129
    assert gone(pid)
    assert runs_recorded(data) == [("quiet", "cancelled")]
