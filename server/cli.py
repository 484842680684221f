"""`pushbutton`: serve (window or --headless), `check` a jobs.ini, `run` a job in the terminal
(server/terminal.py).

The window itself lives in `desktop/`; it hands its opener in as `window`, so this module never
imports a GUI toolkit and `--headless` never loads one.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import platformdirs

from server import catalog as C
from server.auth.commands import add_parser as users_parser
from server.auth.commands import main as users_main
from server.catalog_access import base_path
from server.datadir import DataDirError, refuse_root_on_other_users
from server.environment import TOKEN_ENV
from server.logs import FORMATS
from server.logs import configure as configure_logs
from server.terminal import RUN_HELP, run_in_terminal

log = logging.getLogger("pushbutton")
# window(args, catalog) opens the window; window(args, None, problems=[...]) shows why it cannot.
Window = Callable[..., int]


HISTORY_ONLY = "accepted, not needed: only the history is read, never jobs.ini"
HANGUPS: list[int] = []  # SIGHUPs before the server exists (jobs.ini being loaded): a reload once it is ready


def port(text: str) -> int:
    """--port: a TCP port, 0 for any free one; argparse's usage error (exit 2) rather than bind's traceback."""
    try:
        number = int(text)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: give 0 to 65535 (0 = any free one)")
    return number


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pushbutton", description="Turn ops scripts into buttons.")
    p.add_argument("--headless", action="store_true", help="serve browsers; do not open a window")
    p.add_argument("--jobs", metavar="PATH", help="the jobs.ini to serve")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=port, default=None,
                   help="port (default 8000 headless, any free one for the window; 0 = any)")
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token", help="access token for --headless (default: $PUSHBUTTON_TOKEN, else a new "
                                      "random one per launch); visible in ps: prefer --token-file")
    token.add_argument("--token-file", metavar="PATH", help="read the access token from PATH")
    p.add_argument("--data-dir", metavar="DIR", help="where history is kept (default: the user data dir)")
    p.add_argument("--certfile", metavar="PATH", help="serve HTTPS with this certificate chain (PEM; with --keyfile)")
    p.add_argument("--keyfile", metavar="PATH", help="the certificate's private key (PEM)")
    p.add_argument("--base-path", metavar="/PREFIX", help="serve everything under this path, e.g. /ops behind a "
                                                          "reverse proxy (default: jobs.ini's base_path, else /)")
    p.add_argument("--log-format", choices=FORMATS, default="text",
                   help="the server log on stderr: text, or JSON lines for log shippers")
    sub = p.add_subparsers(dest="command")
    check = sub.add_parser("check", help="check a jobs.ini and exit")
    check.add_argument("--jobs", metavar="PATH", dest="sub_jobs")
    hosts = sub.add_parser("hosts", help="connect to every [host:NAME] and say which are reachable")
    hosts.add_argument("--jobs", metavar="PATH", dest="sub_jobs")
    hosts.add_argument("--keys", action="store_true", help="print each host's current keys as host_key lines with "
                                                           "fingerprints, to verify out of band and pin")
    run = sub.add_parser("run", help="run one job in this terminal (values can come from files, stdin, PB_<NAME> "
                                     "or a prompt: see run --help)", epilog=RUN_HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("job")
    run.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                     help="a parameter value (repeat; a multichoice takes a,b,c; @FILE, @- read it, see below)")
    run.add_argument("-y", "--yes", action="store_true", help="answer the job's confirmation question with yes")
    run.add_argument("--jobs", metavar="PATH", dest="sub_jobs")
    run.add_argument("--data-dir", metavar="DIR", dest="sub_data_dir")
    audit = sub.add_parser("audit", help="print the audit log as JSON lines, oldest first")
    audit.add_argument("--since", metavar="WHEN", help="2026-01-01, 2026-01-01T12:00:00Z, epoch seconds, or an age "
                                                      "like 7d or 12h (times without an offset are UTC)")
    audit.add_argument("--user", help="only this user's entries")
    audit.add_argument("--action", help="only these actions, comma-separated (run.start,run.stop)")
    audit.add_argument("--jobs", metavar="PATH", dest="sub_jobs", help=HISTORY_ONLY)
    audit.add_argument("--data-dir", metavar="DIR", dest="sub_data_dir")
    backup = sub.add_parser("backup", help="copy the history, consistently, while the server runs (see "
                                           "docs/operations.md to restore)")
    backup.add_argument("file", metavar="FILE", help="where to write the copy (replaced only once it is whole)")
    backup.add_argument("--jobs", metavar="PATH", dest="sub_jobs", help=HISTORY_ONLY)
    backup.add_argument("--data-dir", metavar="DIR", dest="sub_data_dir")
    users_parser(sub)
    return p


def main(argv: list[str] | None = None, window: Window | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["askpass"]:  # hidden: ssh's SSH_ASKPASS helper in a frozen build (askpass.py)
        from server.executors.askpass import helper

        return helper(argv[1:])
    args = parser().parse_args(argv)
    if args.command is None and (args.headless or window is None) and hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: HANGUPS.append(1))  # SIGHUP's default would end us: serve() applies it
    configure_logs(args.log_format)
    data_dir = Path(getattr(args, "sub_data_dir", None) or args.data_dir or platformdirs.user_data_dir(C.APP_NAME))
    try:
        if args.command in ("users", "run", "audit", None):  # those that open the history (not backup's copy)
            refuse_root_on_other_users(data_dir, [sys.argv[0] or "pushbutton", *argv], args.command is not None)
        return _command(args, data_dir, window)
    except DataDirError as exc:  # the one place: every command, the server's start-up included
        print(f"pushbutton: {exc}", file=sys.stderr)
        return 2


def _command(args: argparse.Namespace, data_dir: Path, window: Window | None) -> int:
    if args.command in ("backup", "audit"):  # the history only: a jobs.ini mid-edit must not stop a backup
        return _history_command(args, data_dir)
    jobs = getattr(args, "sub_jobs", None) or args.jobs
    try:
        path = C.find_jobs_file(jobs)
        catalog = C.load(path)
    except FileNotFoundError as exc:
        return _cannot_load(args, window, [f"pushbutton: {exc}"])
    except C.CatalogError as exc:
        found = exc.problems + (exc.warnings if args.command == "check" else [])
        return _cannot_load(args, window, [str(p) for p in sorted(found, key=lambda p: p.line)])
    for warning in catalog.warnings:  # `check` prints them as it prints problems; the others log them
        if args.command == "check":
            print(warning, file=sys.stderr)
        else:
            log.warning("%s", warning)
    if args.command == "check":
        print(f"{catalog.path}: OK, {len(catalog.jobs)} job(s): {', '.join(catalog.jobs)}")
        return 0
    if args.command == "run":
        return run_in_terminal(catalog, data_dir, args.job, args.param, args.yes)
    if args.command == "hosts" and args.keys:
        from server.executors.host_keys import print_keys

        return print_keys(list(catalog.hosts.values()))
    if args.command == "hosts":
        return check_hosts(catalog)
    if args.command == "users":
        return users_main(args, catalog, data_dir)
    if args.headless or window is None:
        try:
            token = access_token(args)
            edge_settings(args, catalog.settings)
        except ValueError as exc:
            print(f"pushbutton: {exc}", file=sys.stderr)
            return 2
        return serve(catalog, data_dir, args.host, 8000 if args.port is None else args.port, token)
    return window(args, catalog)


def _history_command(args: argparse.Namespace, data_dir: Path) -> int:
    """`backup` and `audit` read the history alone, never jobs.ini: they work while it is missing
    or has an error (a cron backup during an edit), and `--jobs` is accepted but not read."""
    if args.command == "backup":
        from server.backup import main as backup_main

        return backup_main(data_dir, args.file)
    from server.auth.audit import print_log

    return print_log(data_dir, args.since, args.user, args.action)


def _cannot_load(args: argparse.Namespace, window: Window | None, problems: list[str]) -> int:
    """`check`, `run` and --headless print the problems and exit 2; the window shows them."""
    if window is not None and args.command is None and not args.headless:
        return window(args, None, problems=problems)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 2


def access_token(args: argparse.Namespace) -> str | None:
    """--token, else --token-file, else $PUSHBUTTON_TOKEN, else None (a new one per launch)."""
    if args.token:
        log.warning("--token is visible to every user of this machine (ps); use --token-file PATH "
                    "or the PUSHBUTTON_TOKEN environment variable")
        return args.token
    if args.token_file:
        try:
            text = Path(args.token_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--token-file {args.token_file}: cannot read it: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
        token = text.removesuffix("\n").removesuffix("\r") if text.endswith("\n") else text
        if not token:
            raise ValueError(f"--token-file {args.token_file} is empty")
        return token
    return os.environ.get(TOKEN_ENV) or None


def edge_settings(args: argparse.Namespace, settings: C.Settings) -> None:
    """--certfile/--keyfile and --base-path win over the same jobs.ini keys."""
    if bool(args.certfile) != bool(args.keyfile):
        raise ValueError("--certfile and --keyfile go together")
    if args.certfile:
        settings.certfile, settings.keyfile = Path(args.certfile), Path(args.keyfile)
    if args.base_path is not None:
        settings.base_path = base_path(args.base_path)


def serve(catalog: C.Catalog, data_dir: Path, host: str, port: int, token: str | None) -> int:
    """Headless: print the URL line once ready, serve until SIGINT/SIGTERM, then stop cleanly."""
    from server.runtime import ConfigError, Server

    try:
        server = Server(catalog, data_dir, host, port, token)
    except ConfigError as exc:
        print(f"pushbutton: {exc}", file=sys.stderr)
        return 2
    if hasattr(signal, "SIGHUP"):  # re-read jobs.ini (server/reload.py); handlers run on this thread only
        signal.signal(signal.SIGHUP, lambda *_: server.reload())  # before start-up's recovery: deferred till ready
        if HANGUPS:  # one came while jobs.ini was loaded
            server.reload()
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


def check_hosts(catalog: C.Catalog) -> int:
    """`pushbutton hosts`: try every host at once; one line each; exit 1 unless all are reachable."""
    import shutil
    import tempfile

    import gevent.pool

    from server.executors.ssh_client import probe

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
