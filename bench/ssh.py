"""SSH benchmark: Pushbutton's fan-out and streaming over SSH beside plain OpenSSH `ssh` processes.

Starts one real sshd on 127.0.0.1 (tests/ssh/sshd.py: ed25519 keys, a /bin/sh login user) and
`pushbutton --headless` on a catalog of 100 [host:tN] entries, all pointing at that sshd (100
connections to one local sshd). Then, alternating Pushbutton and OpenSSH in each round so both see
the same machine load:

- `echo hi` on 1, 20 and 100 targets: Pushbutton from the start request to the run's `end` event
  at an SSE client (every host's `hi` checked), on hosts it has not connected to yet (each round
  has hosts of its own: the first run connects; Pushbutton and OpenSSH take turns going first,
  round by round) and again on hosts whose connections the last run
  left open (`control_persist`, server/executors/ssh_shared.py); OpenSSH as that many
  `ssh host echo hi` processes started at once from this script, until the last one exits (its
  output read).
- `seq 1000000` from one host: Pushbutton start request to `end`, all 1M lines checked at the
  client; beside `ssh host seq 1000000` with its output read to the end.
- the server's responsiveness during the 100-host fan-out: the slowest `/healthz` answer.
- `echo hi` on 100 targets as the first run of a server started just before it (the analyst's
  first press of Run), beside 100 plain `ssh` processes again.

Needs root (it starts sshd and creates the login user).

    .venv/bin/python bench/ssh.py
"""

from __future__ import annotations

import datetime
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from machine import Machine  # noqa: E402  (bench/machine.py)
from run import Server, lines_in, receive, start  # noqa: E402  (bench/run.py)

from server.executors.ssh_client import KEX  # noqa: E402
from tests.ssh import sshd  # noqa: E402

ROUNDS = 5
SIZES = (1, 20, 100)
SEQ_ROUNDS = 3
LINES = 1_000_000


def catalog(lab: sshd.Lab, server: sshd.Sshd) -> str:
    """t1..t100 for the runs that reuse connections; for each round and size, hosts of their own
    (`rRnNhI`), so that every "first run" really connects."""
    hosts = "".join(sshd.host_section(lab, server, f"t{i}") for i in range(1, 101))
    groups = "".join(f"[group:g{n}]\nhosts = {', '.join(f't{i}' for i in range(1, n + 1))}\nparallel = 100\n\n"
                     for n in SIZES)
    groups += f"[group:default100]\nhosts = {', '.join(f't{i}' for i in range(1, 101))}\n\n"
    jobs = "".join(f"[job:hi{n}]\ncommand = echo hi\ntargets = group:g{n}\n\n" for n in SIZES)
    for r in range(ROUNDS):
        for n in SIZES:
            names = [f"r{r}n{n}h{i}" for i in range(1, n + 1)]
            hosts += "".join(sshd.host_section(lab, server, name) for name in names)
            groups += f"[group:r{r}n{n}]\nhosts = {', '.join(names)}\nparallel = 100\n\n"
            jobs += f"[job:first{n}r{r}]\ncommand = echo hi\ntargets = group:r{r}n{n}\n\n"
    jobs += "[job:hi100default]\ncommand = echo hi\ntargets = group:default100\n\n"
    jobs += f"[job:seq]\ncommand = seq {LINES}\ntargets = host:t1\n\n[job:seqlocal]\ncommand = seq {LINES}\n"
    return "[pushbutton]\nmax_concurrent_runs = 4\nretention_days = 0\n\n" + hosts + groups + jobs


class Bench(Server):
    """bench/run.py's server, on this benchmark's catalog (written where that server reads it)."""

    def __init__(self, folder: Path, text: str):
        self.catalog = text
        super().__init__(folder, text)


def pushbutton_run(bench: Bench, job: str, check, executor: list[float] | None = None) -> float:
    """Start request to `end` at the client; `executor` gets the server's own started -> finished."""
    with bench.client() as client:
        began = time.perf_counter()
        run_id = start(client, job)
        raw = receive(client, run_id)
        took = time.perf_counter() - began
        record = client.get(f"/api/runs/{run_id}").json()
    assert record["state"] == "succeeded", f"{job}: {record['state']}"
    check(lines_in(raw))
    if executor is not None:
        executor.append((_when(record["finished"]) - _when(record["started"])).total_seconds())
    return took


def _when(iso: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00"))


def watched(bench: Bench, lag: list[float], fn, *args):
    """fn(*args) while a thread asks the server for /healthz every 10 ms, recording each answer time."""
    stop = threading.Event()
    watcher = threading.Thread(target=healthz_worst, args=(bench, stop, lag))
    watcher.start()
    try:
        return fn(*args)
    finally:
        stop.set()
        watcher.join()


def openssh(lab: sshd.Lab, server: sshd.Sshd, command: str, count: int, kex: str | None = KEX) -> float:
    """`count` plain ssh processes started at once; until the last exits, output read."""
    argv = ["ssh", "-T", "-p", str(server.port), "-i", str(lab.user_key), "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={lab.root / 'known_hosts'}", *(["-o", f"KexAlgorithms={kex}"] if kex else []),
            f"{sshd.USER}@127.0.0.1", command]
    began = time.perf_counter()
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(count)]
    outputs = [p.communicate()[0] for p in procs]
    took = time.perf_counter() - began
    assert all(p.returncode == 0 for p in procs), [p.returncode for p in procs]
    if command == "echo hi":
        assert outputs == [b"hi\n"] * count
    else:
        assert outputs[0].count(b"\n") == LINES
    return took


def healthz_worst(bench: Bench, stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(base_url=bench.url, timeout=30) as client:
        while not stop.is_set():
            began = time.perf_counter()
            client.get("/healthz").raise_for_status()
            out.append(time.perf_counter() - began)
            time.sleep(0.01)


def fmt(samples: list[float]) -> str:
    return f"{statistics.median(samples):.2f} s"


def main() -> None:
    reason = sshd.missing()
    if reason:
        sys.exit(f"bench/ssh.py: {reason}")
    sshd.ensure_user()
    # The "remote" hosts' sshd and sessions share one CPU group (sshd.CpuGroup), as if they ran on
    # other machines: otherwise 100 sessions on these two cores outweigh everything local, which no
    # real fan-out sees. --same-cpu measures without it.
    same_cpu = "--same-cpu" in sys.argv[1:]
    lab = sshd.Lab(remote_cpu=not same_cpu)
    try:
        server = lab.start("bench")
        sshd.write_known_hosts(lab)
        with tempfile.TemporaryDirectory() as folder:
            bench = Bench(Path(folder), catalog(lab, server))
            try:
                with Machine() as machine:
                    rows = measure(bench, lab, server)
            finally:
                bench.stop()
    finally:
        lab.close()
    print(f"SSH benchmark ({psutil.cpu_count()} cores; one local OpenSSH sshd, 100 targets = 100 connections to "
          f"it{'' if same_cpu else ', its sessions in one CPU group as if remote'}; median of {ROUNDS} rounds, "
          f"{SEQ_ROUNDS} for seq; output checked)\n")
    print("| workload | Pushbutton | OpenSSH `ssh` processes |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n{machine.describe()}")


def fresh_start(bench: Bench, lab: sshd.Lab, server: sshd.Sshd) -> tuple[str, str, str]:
    """An analyst's very first run: a server started just now, 100 hosts. What a server learns
    once (ssh's options, its threadpool) must not cost a fan-out's first run 100 times."""
    first, plain = [], []
    for r in range(ROUNDS):
        for side in ("pushbutton", "openssh") if r % 2 == 0 else ("openssh", "pushbutton"):
            if side == "openssh":
                plain.append(openssh(lab, server, "echo hi", 100))
                continue
            with tempfile.TemporaryDirectory() as folder:
                fresh = Bench(Path(folder), bench.catalog)
                try:
                    first.append(pushbutton_run(fresh, "hi100", his(100)))
                finally:
                    fresh.stop()
    return ("`echo hi` on 100 targets, the first run of a server started just before it", fmt(first),
            f"{fmt(plain)} (100 at once)")


def his(n: int):
    """A check that `n` hosts each said `hi`."""
    def check(lines):
        assert lines == ["hi"] * n, lines[:5]
    return check


def measure(bench: Bench, lab: sshd.Lab, server: sshd.Sshd) -> list[tuple[str, str, str]]:
    def seq_check(lines):
        assert len(lines) == LINES and lines[0] == "1" and lines[-1] == str(LINES)

    pushbutton_run(bench, "hi100", his(100))  # warm up: page cache, and t1..t100's connections
    rows = []
    for n in SIZES:
        first, reused, plain = [], [], []
        lag: list[float] = []
        idle_lag: list[float] = []  # the same server, idle, while OpenSSH does the same fan-out
        for r in range(ROUNDS):
            # Each goes first in every other round: what one leaves behind (the hosts' sessions
            # closing, the server storing a run) falls on the other's time equally often.
            for side in ("pushbutton", "openssh") if r % 2 == 0 else ("openssh", "pushbutton"):
                if side == "pushbutton":
                    first.append(watched(bench, lag, pushbutton_run, bench, f"first{n}r{r}", his(n)))
                else:
                    plain.append(watched(bench, idle_lag, openssh, lab, server, "echo hi", n))
            reused.append(watched(bench, lag, pushbutton_run, bench, f"hi{n}", his(n)))
        s = "s" if n > 1 else ""
        rows.append((f"`echo hi` on {n} target{s}, first run (connects)", fmt(first), f"{fmt(plain)} ({n} at once)"))
        rows.append((f"`echo hi` on {n} target{s}, next run (reuses the connections, `control_persist`)",
                     fmt(reused), f"{fmt(plain)} ({n} at once)"))
        if n == 100:
            rows.append(("slowest `/healthz` answer during the 100-target fan-outs (Pushbutton: doing them; "
                         "OpenSSH column: Pushbutton idle while the `ssh` processes load the machine)",
                         f"{max(lag) * 1000:.0f} ms", f"{max(idle_lag) * 1000:.0f} ms"))
    default, default_kex = [], []
    for _ in range(ROUNDS):
        default.append(pushbutton_run(bench, "hi100default", his(100)))
        default_kex.append(openssh(lab, server, "echo hi", 100, kex=None))
    rows.append(("`echo hi` on 100 targets, next run, Pushbutton at the default `parallel = 10` (OpenSSH: the "
                 "100 at once above)", fmt(default), rows[-2][2]))
    rows.append(("`echo hi` on 100 targets, OpenSSH with its default (post-quantum) key exchange", "",
                 f"{fmt(default_kex)} (100 at once)"))
    rows.append(fresh_start(bench, lab, server))
    pb, plain, local, executor, local_executor = [], [], [], [], []
    for _ in range(SEQ_ROUNDS):
        pb.append(pushbutton_run(bench, "seq", seq_check, executor))
        plain.append(openssh(lab, server, f"seq {LINES}", 1))
        local.append(pushbutton_run(bench, "seqlocal", seq_check, local_executor))
    ssh_seq = f"{fmt(plain)} (`ssh host seq {LINES}`, output read)"
    rows.append((f"`seq {LINES}` from one host: start request to the last line at an SSE client", fmt(pb), ssh_seq))
    rows.append((f"`seq {LINES}` from one host: the run's own start to end (connect, stream, every line "
                 "split, batched and handed to the event log)", fmt(executor), ssh_seq))
    rows.append((f"`seq {LINES}` run locally by Pushbutton, for reference: to the client / run start to end",
                 f"{fmt(local)} / {fmt(local_executor)}", ""))
    return rows


if __name__ == "__main__":
    main()
