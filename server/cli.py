"""`pushbutton`: serve (window or --headless), `check` a jobs.ini, `run` a job in the terminal.

The window itself lives in `desktop/`; it hands its opener in as `window`, so this module never
imports a GUI toolkit and `--headless` never loads one.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import platformdirs

from server import catalog as C
from server.params import ParamsError

log = logging.getLogger("pushbutton")
# window(args, catalog) opens the window; window(args, None, problems=[...]) shows why it cannot.
Window = Callable[..., int]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pushbutton", description="Turn ops scripts into buttons.")
    p.add_argument("--headless", action="store_true", help="serve browsers; do not open a window")
    p.add_argument("--jobs", metavar="PATH", help="the jobs.ini to serve")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None,
                   help="port (default 8000 headless, any free one for the window; 0 = any)")
    p.add_argument("--token", help="access token (default: a new random one per launch)")
    p.add_argument("--data-dir", metavar="DIR", help="where history is kept (default: the user data dir)")
    sub = p.add_subparsers(dest="command")
    check = sub.add_parser("check", help="check a jobs.ini and exit")
    check.add_argument("--jobs", metavar="PATH", dest="sub_jobs")
    hosts = sub.add_parser("hosts", help="connect to every [host:NAME] and say which are reachable")
    hosts.add_argument("--jobs", metavar="PATH", dest="sub_jobs")
    run = sub.add_parser("run", help="run one job in this terminal")
    run.add_argument("job")
    run.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                     help="a parameter value (repeat; a multichoice takes a,b,c)")
    run.add_argument("--jobs", metavar="PATH", dest="sub_jobs")
    run.add_argument("--data-dir", metavar="DIR", dest="sub_data_dir")
    return p


def main(argv: list[str] | None = None, window: Window | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="pushbutton: %(message)s", stream=sys.stderr)
    jobs = getattr(args, "sub_jobs", None) or args.jobs
    try:
        path = C.find_jobs_file(jobs)
        catalog = C.load(path)
    except FileNotFoundError as exc:
        return _cannot_load(args, window, [f"pushbutton: {exc}"])
    except C.CatalogError as exc:
        return _cannot_load(args, window, [str(problem) for problem in exc.problems])
    data_dir = Path(getattr(args, "sub_data_dir", None) or args.data_dir or platformdirs.user_data_dir(C.APP_NAME))
    if args.command == "check":
        print(f"{catalog.path}: OK, {len(catalog.jobs)} job(s): {', '.join(catalog.jobs)}")
        return 0
    if args.command == "run":
        return run_in_terminal(catalog, data_dir, args.job, args.param)
    if args.command == "hosts":
        return check_hosts(catalog)
    if args.headless or window is None:
        return serve(catalog, data_dir, args.host, 8000 if args.port is None else args.port, args.token)
    return window(args, catalog)


def _cannot_load(args: argparse.Namespace, window: Window | None, problems: list[str]) -> int:
    """`check`, `run` and --headless print the problems and exit 2; the window shows them."""
    if window is not None and args.command is None and not args.headless:
        return window(args, None, problems=problems)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 2


def serve(catalog: C.Catalog, data_dir: Path, host: str, port: int, token: str | None) -> int:
    """Headless: print the URL line once ready, serve until SIGINT/SIGTERM, then stop cleanly."""
    from server.runtime import Server

    server = Server(catalog, data_dir, host, port, token)
    try:
        url = server.start()
    except OSError as exc:
        print(f"pushbutton: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before the URL line: a caller may stop us at once
        signal.signal(sig, lambda *_: stop.set())
    print(f"Pushbutton serving on {url}", flush=True)
    while not stop.wait(0.5) and server.alive:
        pass
    if not server.alive:
        log.error("the server thread ended unexpectedly")
        return 1
    log.info("stopping: active runs are stopped and recorded as interrupted")
    server.stop()
    return 0


def run_in_terminal(catalog: C.Catalog, data_dir: Path, job_id: str, pairs: list[str]) -> int:
    """Run one job on this thread's hub, printing its output as it comes; exit with its code."""
    import gevent

    from server.runs import NotFound, Runs
    from server.store import Store

    raw = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            print(f"pushbutton: -p {pair!r}: expected NAME=VALUE", file=sys.stderr)
            return 2
        raw[name] = value
    store = Store(data_dir)
    runs = Runs(catalog, store)
    outcome: dict = {}

    def follow() -> None:
        try:
            run = runs.start(job_id, raw)
        except NotFound as exc:
            print(f"pushbutton: {exc}; jobs: {', '.join(catalog.jobs)}", file=sys.stderr)
            outcome["code"] = 2
            return
        except ParamsError as exc:
            for name, message in exc.fields.items():
                print(f"pushbutton: parameter {name}: {message}", file=sys.stderr)
            outcome["code"] = 2
            return
        outcome["run"] = run
        after = 0
        while True:
            for seq, kind, data in run.log.read(after):
                after = seq
                _print_event(kind, data)
                if kind == "end":
                    state, code = run.record["state"], run.record["exit_code"]
                    outcome["code"] = {"timed_out": 124, "cancelled": 130, "interrupted": 130}.get(state, code)
                    return
            run.log.wait(after, 1.0)

    def interrupt() -> None:
        run = outcome.get("run")
        if run is not None:
            print("pushbutton: stopping the run...", file=sys.stderr)
            runs.stop(run, "cancelled")

    gevent.signal_handler(signal.SIGINT, interrupt)
    gevent.signal_handler(signal.SIGTERM, interrupt)
    gevent.spawn(follow).join()
    store.close()
    code = outcome.get("code")
    return 1 if code is None else code


def check_hosts(catalog: C.Catalog) -> int:
    """`pushbutton hosts`: try every host at once; one line each; exit 1 unless all are reachable."""
    import shutil
    import tempfile

    import gevent.pool

    from server.executors.ssh import probe

    if not catalog.hosts:
        print(f"{catalog.path}: no [host:NAME] sections")
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="pb-hosts-"))
    try:
        pool = gevent.pool.Pool(50)  # file descriptors: three per ssh process
        probes = [pool.spawn(probe, host, workdir) for host in catalog.hosts.values()]
        pool.join()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    width = max(len(name) for name in catalog.hosts)
    for found in (g.value for g in probes):
        print(f"{found.host:<{width}}  {found.status:<16}  {found.reason} ({found.seconds:.2f}s)")
    return 0 if all(g.value.status == "reachable" for g in probes) else 1


def _print_event(kind: str, data: str) -> None:
    import json

    event = json.loads(data)
    if kind == "output":
        out = sys.stdout if event["stream"] == "stdout" else sys.stderr
        prefix = f"[{event['host']}] " if "host" in event else ""
        out.write("".join(prefix + line + "\n" for line in event["lines"]))
        out.flush()
    elif kind == "progress":
        print(f"[{event['percent']:.0f}%] {event['message']}".rstrip(), file=sys.stderr, flush=True)
    elif kind == "state":
        print(f"pushbutton: run {event['id']} {event['state']}", file=sys.stderr, flush=True)
