"""`pushbutton run`: one job in this terminal, its output printed as it comes, its exit status ours.

Values reach it without ever being on the command line, where `ps` shows them to every user of the
machine: `-p NAME=@FILE` and `-p NAME=@-` (stdin), the `PB_<NAME>` environment variable, or a
prompt on a terminal (hidden for secrets). A job's `confirm` question is asked here, or answered
in advance with `--yes`; the server refuses to start it otherwise.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import sys
from pathlib import Path
from typing import TextIO

from server import catalog as C
from server.params import Param, ParamsError

RUN_HELP = """\
where values come from, first found wins:
  -p NAME=VALUE   the value itself (NAME=@@x for a value starting with @)
  -p NAME=@FILE   the contents of FILE, one trailing newline dropped
  -p NAME=@-      standard input, likewise
  PB_<NAME>       an environment variable, e.g. PB_API_KEY for api_key
  a prompt        on a terminal, for a required parameter without a default and for a secret
                  (typed without echo)
A secret given as -p NAME=VALUE or NAME=@@x is visible to every user of this machine (ps):
pushbutton warns.
A job with a confirmation question asks it on a terminal; --yes answers it in advance, and
without a terminal it is required.

exit status: the job's; 2 for bad input, a confirmation needed without a terminal or --yes, or
a data dir that cannot be used; 1 when the question is answered no; 124 timed out; and when
pushbutton stops the run (recorded cancelled, its processes ended before it exits): 130 for
SIGINT or SIGTERM, 129 for SIGHUP (the terminal closed), 141 when its output can no longer be
written (a pipe's reader went away, as with | head -1; the rest is discarded).
"""


class InputError(Exception):
    """A value could not be read; nothing started."""


def read_value(name: str, value: str, stdin: TextIO) -> str:
    """`@FILE`, `@-` and `@@literal`; anything else is the value itself."""
    if not value.startswith("@") or value.startswith("@@"):
        return value[1:] if value.startswith("@@") else value
    source = value[1:]
    if not source:
        raise InputError(f"-p {name}=@: a file name (or - for standard input) must follow @")
    try:
        text = stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"-p {name}=@{source}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"-p {name}=@{source}: not UTF-8 text") from None
    return text.removesuffix("\n").removesuffix("\r") if text.endswith("\n") else text


def gather(params: list[Param], pairs: list[str], env: dict[str, str], stdin: TextIO,
           interactive: bool) -> dict[str, str]:
    """Every value given, from -p, then PB_<NAME>, then a prompt; raises InputError."""
    raw: dict[str, str] = {}
    secret = {p.name for p in params if p.secret}
    if sum(pair.partition("=")[2] == "@-" for pair in pairs) > 1:
        raise InputError("only one -p NAME=@- can read standard input")
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise InputError(f"-p {pair!r}: expected NAME=VALUE")
        if name in secret and value and (not value.startswith("@") or value.startswith("@@")):  # in ps
            print(f"pushbutton: warning: -p {name}=... shows the secret to every user of this machine (ps); "
                  f"use -p {name}=@FILE, -p {name}=@- (standard input), PB_{name.upper()}, or leave it out "
                  "to be asked", file=sys.stderr)
        raw[name] = read_value(name, value, stdin)
    for p in params:
        if p.name not in raw and f"PB_{p.name.upper()}" in env:
            raw[p.name] = env[f"PB_{p.name.upper()}"]
    if interactive:
        for p in params:
            if p.name not in raw and (p.secret or (p.required and p.default is None)):
                raw[p.name] = ask(p, stdin)
    return raw


def ask(p: Param, stdin: TextIO) -> str:
    label = p.public()["label"]
    choices = f" [{', '.join(p.choices)}]" if p.choices else ""
    prompt = f"{label} ({p.name}){choices}: "
    if p.secret:
        return getpass.getpass(prompt, stream=sys.stderr)
    sys.stderr.write(prompt)
    sys.stderr.flush()
    return stdin.readline().removesuffix("\n")


def confirmed(question: str, stdin: TextIO) -> bool:
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    return stdin.readline().strip().lower() in ("y", "yes")


def run_in_terminal(catalog: C.Catalog, data_dir: Path, job_id: str, pairs: list[str], yes: bool = False) -> int:
    """Run one job on this thread's hub, printing its output as it comes; exit with its code."""
    from server.auth.audit import Audit
    from server.executors.ssh_shared import SHARED
    from server.runs import Runs
    from server.store import Store

    job = catalog.jobs.get(job_id)
    if job is None:
        print(f"pushbutton: no job {job_id!r}; jobs: {', '.join(catalog.jobs)}", file=sys.stderr)
        return 2
    interactive = sys.stdin.isatty()
    try:
        raw = gather(job.params, pairs, dict(os.environ), sys.stdin, interactive)
    except InputError as exc:
        print(f"pushbutton: {exc}", file=sys.stderr)
        return 2
    except (EOFError, KeyboardInterrupt):
        print(file=sys.stderr)
        return 130
    store = Store(data_dir)
    runs = Runs(catalog, store)
    runs.audit = Audit(store)
    try:
        run = start(runs, job_id, raw, yes, interactive)  # before gevent takes over SIGINT: ^C works
        return run if isinstance(run, int) else follow(runs, run)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    finally:  # whatever went wrong, no job outlives this process and its history is written
        runs.shutdown("cancelled")
        SHARED.close_all()  # nobody here runs again: no SSH connection stays open after this process
        store.close()


def start(runs, job_id: str, raw: dict[str, str], yes: bool, interactive: bool):
    """The started Run, or the exit status when it did not start."""
    from server.auth.identity import os_user
    from server.run_errors import ConfirmationRequired

    user = f"cli:{os_user()}"  # who started it, in history beside the server's users
    job = runs.catalog.jobs.get(job_id)
    if job is not None and job.approve_by:  # nobody could approve it in this process: never wait
        print(f"pushbutton: {job_id} needs approval by {', '.join(job.approve_by)}: request it on the server",
              file=sys.stderr)
        return 2
    try:
        try:
            return runs.start(job_id, raw, confirmed=yes, user=user)
        except ConfirmationRequired as exc:
            if not interactive:
                print(f"pushbutton: {job_id} asks: {exc.question}\n"
                      "pushbutton: not started; pass --yes to confirm", file=sys.stderr)
                return 2
            if not confirmed(exc.question, sys.stdin):
                print("pushbutton: not confirmed; nothing started", file=sys.stderr)
                return 1
            return runs.start(job_id, raw, confirmed=True, user=user)
    except ParamsError as exc:
        for name, message in exc.fields.items():
            print(f"pushbutton: parameter {name}: {message}", file=sys.stderr)
        return 2


def follow(runs, run) -> int:
    """Print the run's events until it ends; its exit status. A way out stops the run as a cancel
    would (recorded `cancelled`) and we keep reading until it has ended, so no job outlives us
    unsupervised: SIGINT/SIGTERM (130), SIGHUP (129: the terminal closed), or the first write that
    fails (141, as a shell's SIGPIPE death: `| head -1`, EPIPE; a hung-up terminal, EIO), after
    which that stream goes to /dev/null. The first way out decides the status."""
    import gevent

    why: list[int] = []

    def leave(code: int) -> None:
        if not why:
            why.append(code)
        out.say("pushbutton: stopping the run...")
        runs.stop(run, "cancelled", run.record["user"])

    out = Output(lambda: leave(141))

    def read() -> int | None:
        after = 0
        while True:
            for seq, kind, data in run.log.read(after):
                after = seq
                print_event(kind, data, out)
                if kind == "end":
                    if run.record.get("hosts"):
                        print_hosts(run.record["hosts"], out)
                    state, code = run.record["state"], run.record["exit_code"]
                    return {"timed_out": 124, "cancelled": 130, "interrupted": 130}.get(state, code)
            run.log.wait(after, 1.0)

    for name, code in (("SIGINT", 130), ("SIGTERM", 130), ("SIGHUP", 129)):
        if hasattr(signal, name):
            gevent.signal_handler(getattr(signal, name), leave, code)
    code = gevent.spawn(read).get()
    return why[0] if why else 1 if code is None else code


class Output:
    """Our stdout and stderr; the first write to fail sends that stream to /dev/null and calls
    `gone()` once. The other stream goes on while it can: `| head -1` still shows why we stop."""

    def __init__(self, gone) -> None:
        self.gone, self.failed = gone, False

    def write(self, stream: TextIO, text: str) -> None:
        try:
            stream.write(text)
            stream.flush()
        except OSError:  # Python's recipe: the buffered rest goes to /dev/null, not to a traceback at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)
            if not self.failed:
                self.failed = True
                self.gone()

    def say(self, line: str) -> None:
        self.write(sys.stderr, line + "\n")


def print_hosts(hosts: list[dict], out: Output) -> None:
    """A remote run's per-host summary, after its output: what each host did and why it failed."""
    from server.fanout import host_lines

    out.say("pushbutton: hosts:")
    for line in host_lines(hosts):
        out.say(f"  {line}")


def print_event(kind: str, data: bytes, out: Output) -> None:
    event = json.loads(data)
    if kind == "output":
        stream = sys.stdout if event["stream"] == "stdout" else sys.stderr
        prefix = f"[{event['host']}] " if "host" in event else ""
        out.write(stream, "".join(prefix + line + "\n" for line in event["lines"]))
    elif kind == "progress":
        out.say(f"[{event['percent']:.0f}%] {event['message']}".rstrip())
    elif kind == "state":
        out.say(f"pushbutton: run {event['id']} {event['state']}")
