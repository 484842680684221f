"""Load campaign: many browsers following many runs at once, through the real server.

Starts `pushbutton --headless` (in a session of its own, as a served server runs), starts RUNS runs
of a printer that writes `<index> <time>` every EVERY ms for SECONDS (bench/printer.c where a C
compiler is found, else a Python loop: `--printer`), and has CLIENTS simulated browsers
(bench/load_client.c, one epoll loop, where a C compiler is found; else bench/load_client.mjs on
Node.js; else bench/load_client.py's asyncio + aiohttp: `--client`; worker processes of their
own) hold the page's two streams each, spread over the runs. All streams open before the
first line is printed. Reports lines lost or duplicated per client, the delay from print to
arrival, the server's CPU and peak RSS (/proc via psutil), `/healthz` timings during the load, and
the server's RSS once the clients have gone (memory given back).

    .venv/bin/python bench/load.py --quick     (100 clients, 10 runs, 10 s: about a minute)
    .venv/bin/python bench/load.py             (1,000 clients, 50 runs, 60 s)

Clients connect from 127.0.x.y source addresses, 20 per address (40 connections), under the
server's cap of 64 connections per client address.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
from load_client import BUCKET, PER_ADDRESS, Tally, work
from machine import Machine
from run import Server, start

JOBS = """
[pushbutton]
max_concurrent_runs = 64
retention_days = 0

[job:talk]
command = {printer} {start} {lines} {every}
param.start.type = text
param.lines.type = int
param.every.type = float
"""

NODE = shutil.which("node")
CC = shutil.which("cc") or shutil.which("gcc")
PRINTERS = {"c": "a C program (bench/printer.c)", "python": "a Python loop"}
CLIENTS = {"c": "C (bench/load_client.c)", "node": "Node.js", "python": "Python asyncio"}

# The same printer where no C compiler is found (`--printer python`). Each line is written with one
# os.write: the former sys.stdout.write + flush made the 50 printers cost ~0.75 core against ~0.45.
PRINTER = """import os, sys, time
start, lines, every = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000
now, sleep, write = time.time, time.sleep, os.write
sleep(max(0.0, start - now()))
for i in range(lines):
    delay = start + i * every - now()
    if delay > 0:
        sleep(delay)
    write(1, b"%d %r\\n" % (i, now()))
"""


def percentile(histogram: dict[int, int], fraction: float) -> float:
    """The latency (s) below which `fraction` of the lines arrived."""
    total = sum(histogram.values())
    target, seen = total * fraction, 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= target:
            return (bucket + 1) * BUCKET
    return float("nan")


class Sampler:
    """The server's RSS every 50 ms (its peak) and its CPU time between two marks."""

    def __init__(self, proc: psutil.Process):
        self.proc, self.peak, self._done = proc, 0.0, threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while not self._done.wait(0.05):
            self.peak = max(self.peak, self.rss())

    def rss(self) -> float:
        return self.proc.memory_info().rss / 2**20

    def cpu(self) -> float:
        times = self.proc.cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        self._done.set()


def held_by(proc: psutil.Process) -> str:
    """Where the server's resident memory is: malloc's main heap, anonymous maps (thread arenas,
    Python's arenas, big buffers), files (code, SQLite's shared memory)."""
    kinds = {"heap": 0, "anonymous": 0, "files": 0}
    for m in proc.memory_maps(grouped=True):
        kind = "heap" if m.path == "[heap]" else "files" if m.path.startswith("/") else "anonymous"
        kinds[kind] += m.rss
    return ", ".join(f"{kind} {rss / 2**20:.0f} MiB" for kind, rss in kinds.items())


class Prober:
    """GET /healthz every 50 ms from its own address, timing each answer."""

    def __init__(self, url: str):
        self.times: list[float] = []
        self._done = threading.Event()
        transport = httpx.HTTPTransport(local_address="127.0.0.250")
        self.client = httpx.Client(base_url=url, timeout=30, transport=transport)
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while not self._done.wait(0.05):
            began = time.perf_counter()
            self.client.get("/healthz").raise_for_status()
            self.times.append(time.perf_counter() - began)

    def stop(self) -> list[float]:
        self._done.set()
        return sorted(self.times)


def python_workers(url: str, plans: list, lines: int, begins: float, until: float):
    """One asyncio process per plan (bench/load_client.py); returns a function collecting the Tallies."""
    results = multiprocessing.get_context("spawn").Queue()
    procs = [multiprocessing.get_context("spawn").Process(
        target=work, args=(url, "bench", plan, lines, begins, until, results)) for plan in plans]
    for proc in procs:
        proc.start()

    def collect(timeout: float) -> list[Tally]:
        tallies = [results.get(timeout=timeout) for _ in procs]
        for proc in procs:
            proc.join(30)
        return tallies

    return collect


def node_workers(url: str, plans: list, lines: int, begins: float, until: float):
    """One Node.js process per plan (bench/load_client.mjs); returns a function collecting the Tallies."""
    procs = []
    for plan in plans:
        proc = subprocess.Popen([NODE, str(Path(__file__).with_name("load_client.mjs"))], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        proc.stdin.write(json.dumps({"url": url, "token": "bench", "clients": plan, "lines": lines,
                                     "begins": begins, "until": until, "perAddress": PER_ADDRESS}))
        proc.stdin.close()
        procs.append(proc)
    return _collect_json(procs)


def compiled(folder: Path, name: str) -> Path:
    """bench/NAME.c compiled into folder/NAME."""
    binary = folder / name
    subprocess.run([CC, "-O2", "-o", str(binary), str(Path(__file__).with_name(f"{name}.c"))], check=True)
    return binary


def c_workers(url: str, plans: list, lines: int, begins: float, until: float, folder: Path):
    """One process of bench/load_client.c (compiled into `folder`) per plan; returns a function
    collecting the Tallies."""
    binary = compiled(folder, "load_client")
    address = urlsplit(url)
    procs = []
    for plan in plans:
        proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        proc.stdin.write(f"{address.hostname} {address.port} bench {lines} {begins!r} {until!r} {PER_ADDRESS}\n"
                         + "".join(f"{client} {run_id}\n" for client, run_id in plan))
        proc.stdin.close()
        procs.append(proc)
    return _collect_json(procs)


def _collect_json(procs: list[subprocess.Popen]):
    def collect(timeout: float) -> list[Tally]:
        tallies = []
        for proc in procs:
            fields = json.loads(proc.stdout.read())
            proc.wait(timeout)
            fields["histogram"] = dict(fields["histogram"])
            tallies.append(Tally(**fields))
        return tallies

    return collect


def printer_command(folder: Path, kind: str) -> str:
    """The printer job's program in `folder`: bench/printer.c compiled, or the Python loop."""
    if kind == "c":
        return str(compiled(folder, "printer"))
    script = folder / "printer.py"
    script.write_text(PRINTER)
    return f"python3 -u {script}"


def campaign(clients: int, runs: int, seconds: float, every_ms: float, workers: int, env: dict | None,
             client: str = "node", printer: str = "python") -> dict:
    lines = int(seconds * 1000 / every_ms)
    connect_budget = 5 + clients / 100  # seconds for every stream to open before the first line
    with tempfile.TemporaryDirectory() as folder:
        command = printer_command(Path(folder), printer)
        server = Server(Path(folder), JOBS.replace("{printer}", command), env=env)
        try:
            time.sleep(1)
            sampler = Sampler(server.ps)
            idle, idle_held = sampler.rss(), held_by(server.ps)
            begins = time.time() + connect_budget
            with server.client() as api:
                ids = [start(api, "talk", start=repr(begins), lines=lines, every=every_ms) for _ in range(runs)]
            plan = [(c, ids[c % runs]) for c in range(clients)]
            until = begins + seconds + 120
            plans = [plan[w::workers] for w in range(workers)]
            if client == "c":
                collect = c_workers(server.url, plans, lines, begins, until, Path(folder))
            else:
                workers_of = node_workers if client == "node" else python_workers
                collect = workers_of(server.url, plans, lines, begins, until)
            time.sleep(max(0.0, begins - time.time()))
            prober = Prober(server.url)
            cpu0, wall0 = sampler.cpu(), time.perf_counter()
            tallies: list[Tally] = collect(seconds + 300)
            cpu, wall = sampler.cpu() - cpu0, time.perf_counter() - wall0
            health = prober.stop()
            time.sleep(5)  # the server settles once its clients have gone
            after = [sampler.rss()]
            time.sleep(10)  # two of server/memory.py's looks at the load later
            after.append(sampler.rss())
            held = held_by(server.ps)
            sampler.stop()
        finally:
            server.stop()
    total = Tally()
    for t in tallies:
        for name in ("clients", "opened", "finished", "lines", "lost", "duplicated", "clients_with_errors",
                     "changes_complete", "cpu"):
            setattr(total, name, getattr(total, name) + getattr(t, name))
        total.errors += t.errors
        for bucket, count in t.histogram.items():
            total.histogram[bucket] = total.histogram.get(bucket, 0) + count
    return {"clients": clients, "runs": runs, "seconds": seconds, "every": every_ms, "lines": lines,
            "total": total, "wall": wall, "cpu": cpu, "idle": idle, "peak": sampler.peak, "after": after,
            "health": health, "workers": workers, "held": held, "client": client,
            "idle_held": idle_held, "printer": printer}


def report(r: dict) -> str:
    t: Tally = r["total"]
    health = r["health"]
    rows = {
        "load": f"{r['clients']} clients x 2 streams ({t.opened} of {2 * r['clients']} open before the first line), "
                f"{r['runs']} runs printing a line every {r['every']:g} ms for {r['seconds']:g} s "
                f"({r['lines']} lines each; the printer: {PRINTERS[r['printer']]})",
        "lines delivered / lost / duplicated": f"{t.lines} / {t.lost} / {t.duplicated}",
        "clients with a lost, repeated or failed stream": f"{t.clients_with_errors} of {t.clients}",
        "run streams read to their end / state streams that saw every run end":
            f"{t.finished} / {t.changes_complete} of {t.clients}",
        "print -> client delay, p50 / p99 / max":
            f"{percentile(t.histogram, 0.5) * 1000:.1f} / {percentile(t.histogram, 0.99) * 1000:.1f} / "
            f"{percentile(t.histogram, 1.0) * 1000:.1f} ms",
        "server CPU during the load": f"{r['cpu'] / r['wall'] * 100:.0f}% of one core ({r['cpu']:.1f} s in "
                                      f"{r['wall']:.1f} s)",
        "server RSS idle / peak / 5 s and 15 s after the clients left":
            f"{r['idle']:.0f} / {r['peak']:.0f} / {r['after'][0]:.0f} / {r['after'][1]:.0f} MiB "
            f"(idle: {r['idle_held']}; after: {r['held']})",
        "`/healthz` during the load, p50 / p99 / max":
            f"{statistics.median(health) * 1000:.1f} / {health[int(len(health) * 0.99) - 1] * 1000:.1f} / "
            f"{health[-1] * 1000:.1f} ms ({len(health)} probes)" if health else "no probe",
        "load clients' CPU": f"{t.cpu:.1f} s in {r['workers']} {CLIENTS[r['client']]} processes",
    }
    out = [f"Pushbutton load campaign ({psutil.cpu_count()} cores shared by server, printers and clients; "
           f"loopback)\n", "| measure | figure |", "|---|---|"]
    out += [f"| {name} | {value} |" for name, value in rows.items()]
    if t.errors:
        out += ["", "first errors:"] + [f"- {e}" for e in t.errors]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 clients, 10 runs, 10 s")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--runs", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--every", type=float, default=5, help="ms between two lines of a run (default 5)")
    parser.add_argument("--workers", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="c" if CC else "node" if NODE else "python",
                        help="the load clients: C (default where a C compiler is found), Node.js or Python asyncio")
    parser.add_argument("--printer", choices=sorted(PRINTERS), default="c" if CC else "python",
                        help="the runs' job: bench/printer.c (default where a C compiler is found) or a Python loop")
    args = parser.parse_args()
    if args.printer == "c" and not CC:
        sys.exit("bench/load.py: --printer c needs a C compiler (cc or gcc) on PATH")
    if args.client == "c" and not CC:
        sys.exit("bench/load.py: --client c needs a C compiler (cc or gcc) on PATH")
    if args.client == "node" and not NODE:
        sys.exit("bench/load.py: --client node needs `node` on PATH")
    clients, runs, seconds = (100, 10, 10) if args.quick else (1000, 50, 60)
    with Machine() as machine:
        result = campaign(args.clients or clients, args.runs or runs, args.seconds or seconds, args.every,
                          args.workers, dict(os.environ), args.client, args.printer)
    print(report(result))
    print(f"\n{machine.describe()}")
    t = result["total"]
    sys.exit(1 if t.lost or t.duplicated or t.clients_with_errors else 0)


if __name__ == "__main__":
    main()
