"""The OpenSSH client as Pushbutton starts it: its command line, starting and waiting for it
(from the hub's threadpool), what its messages mean, `pushbutton hosts`' probe, and the private
temporary folder each run's ssh processes share (control socket, logs).

Why OpenSSH processes and not a Python SSH library: docs/ssh.md.
"""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import gevent
from gevent.lock import Semaphore

from server.catalog import Host
from server.events import in_pool
from server.executors.host_keys import alias, pinned_file
from server.executors.key_files import agent_holds, needs_passphrase
from server.executors.local import wait_exit

SSH = "ssh"
SPAWNING = Semaphore(2)
NICE = 19  # ssh clients' CPU priority: see background()
# curve25519 first: the default post-quantum sntrup761 exchange costs ~60 ms of CPU per connection.
KEX = "^curve25519-sha256,curve25519-sha256@libssh.org"
ALIVE_INTERVAL = 10  # seconds; a silent dead connection is noticed after 3 missed answers
WORKDIR_PREFIX = "pb-ssh-"  # then the PID of the process that made it: see remove_stale_workdirs
SOCKET_BASE_MAX = 60  # + /pb-ssh-PID-XXXXXXXX/askpass.sock stays under the 107 bytes of a socket path


def quoted(path: Path) -> str:
    """A path as an ssh_config value: quoted (spaces), `%` escaped (ssh expands %-tokens)."""
    return '"' + str(path).replace("%", "%%") + '"'


def ssh_argv(host: Host, remote: str, log: Path, control: Path | None = None, master: bool = False,
             client: Client | None = None, batch: bool = True, persist: float = 0) -> list[str]:
    """The `ssh` command line for one session. Nothing secret is ever on it. `batch=False` only
    with an askpass helper (askpass.py) in ssh's environment: then ssh may ask a person. With
    `master` and `persist`, the session uses the connection at `control` if one is open there, or
    opens it and keeps it open `persist` seconds after its last session (ssh_shared.py)."""
    opts = {
        "BatchMode": "yes" if batch else "no",  # never prompt headless: a missing key fails, not hangs
        "StrictHostKeyChecking": "yes",
        "UpdateHostKeys": "no",
        "CheckHostIP": "no",
        "ConnectTimeout": str(max(1, math.ceil(host.connect_timeout))),
        "ServerAliveInterval": str(ALIVE_INTERVAL),
        "ServerAliveCountMax": "3",
        "RequestTTY": "no",
        "RemoteCommand": "none",
        "PermitLocalCommand": "no",
        "ForwardAgent": "no",
        "ForwardX11": "no",
        "ClearAllForwardings": "yes",
        "LogLevel": "INFO",  # the reasons explain() reads; user config must not silence them
        "EscapeChar": "none",  # stdin is data, never `~.`
    }
    client = client or Client()
    if client.kex_first:
        opts["KexAlgorithms"] = KEX
    if host.host_keys:  # pinned in jobs.ini: those keys only, whatever any known_hosts says
        opts["HostKeyAlias"] = alias(host)
        opts["UserKnownHostsFile"] = quoted(pinned_file(host, log.parent))
    elif host.known_hosts is not None:
        opts["UserKnownHostsFile"] = quoted(host.known_hosts)
    if "UserKnownHostsFile" in opts:  # that file alone: no other source of keys the user's config may name
        opts["GlobalKnownHostsFile"] = "none"
        opts["VerifyHostKeyDNS"] = "no"
        if client.known_hosts_command:
            opts["KnownHostsCommand"] = "none"
    if host.identity is not None:
        opts["IdentityFile"] = quoted(host.identity)
        opts["IdentitiesOnly"] = "yes"
    if control is not None:
        opts["ControlMaster"] = ("auto" if persist > 0 else "yes") if master else "no"
        opts["ControlPath"] = quoted(control)
        # Otherwise the master ends with the run's session (user config may say otherwise).
        opts["ControlPersist"] = f"{math.ceil(persist)}s" if persist > 0 and master else "no"
    else:
        opts["ControlMaster"] = "no"
        opts["ControlPath"] = "none"
    argv = [ssh_path(), "-T", "-E", str(log), "-p", str(host.port)]
    if host.user:
        argv += ["-l", host.user]
    for key, value in opts.items():
        argv += ["-o", f"{key}={value}"]
    return [*argv, "--", host.address, remote]


class Client(NamedTuple):
    """What this machine's `ssh` understands beyond the options every OpenSSH has."""

    kex_first: bool = True  # KexAlgorithms' `^` (put first) prefix (OpenSSH 8.2): else its own order
    known_hosts_command: bool = True  # KnownHostsCommand (8.5): else no user's config can name one


_client: Client | None = None
_CLIENT_ASKING = Semaphore()
_ASKED = {"kex_first": f"KexAlgorithms={KEX}", "known_hosts_command": "KnownHostsCommand=none"}


def capabilities() -> Client:
    """Asked once, through the threadpool: the hosts of a fan-out that need it meanwhile wait for
    that answer (each would otherwise start an `ssh -G` of its own, 100 on a first fan-out)."""
    global _client
    if _client is None:
        with _CLIENT_ASKING:
            if _client is None:
                _client = in_pool(_ask_client)
    return _client


def _ask_client() -> Client:
    """One `ssh -G` with every option; only when it refuses them, one per option."""
    if _understands(*_ASKED.values()):
        return Client()
    return Client(**{name: _understands(option) for name, option in _ASKED.items()})


def _understands(*options: str) -> bool:
    argv = [ssh_path(), "-G"]
    for option in options:
        argv += ["-o", option]
    try:
        return subprocess.run([*argv, "pushbutton.invalid"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.cache
def ssh_path() -> str:
    """Looked up once: Popen would otherwise try every PATH entry in each child, for each host."""
    return shutil.which(SSH) or SSH


def spawn(argv: list[str], stdin=subprocess.PIPE, output=subprocess.PIPE, env: dict | None = None) -> subprocess.Popen:
    """Popen in the hub's threadpool, two at a time: more threads competing for the GIL slow the
    hub's every system call down (a 100-host fan-out would stall it for hundreds of ms). Each
    client leads a process group of its own, so that it and what it starts can be killed at once,
    and runs in the background: see background()."""
    detach = has_terminal()
    group = {"start_new_session": True} if detach else {"process_group": 0}

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(argv, stdin=stdin, stdout=output, stderr=output, env=env,
                                close_fds=True, **group)
        background(proc.pid, own_session=detach)
        return proc

    with SPAWNING:
        return in_pool(start)


@functools.cache
def has_terminal() -> bool:
    """Whether this process has a controlling terminal (a server started from a shell, `pushbutton
    run`), which only then opens as /dev/tty. Asked once: a process cannot gain one later."""
    try:
        os.close(os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY))
    except OSError:
        return False
    return True


def background(pid: int, own_session: bool) -> None:
    """The lowest CPU priority for one ssh client: it still gets every idle cycle, but a fan-out's
    handshakes (~10 ms of CPU each) never crowd out the window, the page or the server.

    Linux schedules each session as a group ("autogroup") that weighs as much as the whole desktop,
    whatever its processes' nice values: during a 100-host fan-out with a session per client, a
    page frame of 16 ms of work took up to 670 ms, waiting for the CPU. A group's own nice value
    can be lowered, but a process without CAP_SYS_ADMIN may do so once per 100 ms on the whole
    machine (kernel/sched/autogroup.c): an analyst's fan-out would lower one client of a hundred.
    So where the server has no terminal (the desktop app, a service), clients stay in the server's
    session and group, in a process group of their own, and only the process's nice value is set,
    which any user may raise. Where it has a terminal, each client gets a session of its own, so
    that neither ssh nor a user's ProxyCommand can read that terminal (they would be stopped by
    SIGTTIN and hang the run), and the group's nice value is lowered too, as far as Linux allows:
    for root always, for others the first in 100 ms. (In the server's session that group is the
    server's own, and the window's: left alone.)"""
    with suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, NICE)
    if own_session:
        with suppress(OSError), open(f"/proc/{pid}/autogroup", "w") as group:
            group.write(str(NICE))


def answer_within(host: Host) -> float:
    """How long a host that accepted the connection has to answer (the wrapper's start marker, a
    probe's `true`, the removal of uploads) before it is given up: TCP and banner
    (connect_timeout), the key exchange and login again as long, and 20 s for a slow login."""
    return 2 * host.connect_timeout + 20


def wait_or_kill(proc: subprocess.Popen, timeout: float | None) -> int | None:
    """The exit code; None if `proc` still ran after `timeout` seconds (its group is then killed
    and reaped)."""
    with gevent.Timeout(timeout, False):
        return wait_exit(proc)
    killpg(proc, signal.SIGKILL)
    proc.wait()
    return None


def killpg(proc: subprocess.Popen, sig: int) -> None:
    if proc.returncode is None:  # not reaped: the group id cannot belong to anyone else yet
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)



def read_log(path: Path) -> str:
    try:
        return path.read_text("utf-8", "replace")
    except OSError:
        return ""


def explain(log: str, host: Host, batch: bool = True) -> str:
    """ssh's own messages -> `STATUS: reason`, STATUS one of those `pushbutton hosts` prints."""
    where = f"{host.address}:{host.port}"
    known = str(host.known_hosts or "~/.ssh/known_hosts")
    if host.host_keys and ("REMOTE HOST IDENTIFICATION HAS CHANGED" in log or "Host key verification failed" in log
                           or "has changed and you have requested" in log or "host key is known" in log):
        fingerprint = re.search(r"SHA256:[A-Za-z0-9+/=]+", log)
        offered = f" ({fingerprint.group(0).rstrip('.')})" if fingerprint else ""
        return (f"host key changed: the server's identity changed; tell ops; nothing was run. {where} "
                f"offered a key{offered} that is not pinned in [host:{host.name}] host_key")
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in log or "has changed and you have requested" in log:
        fingerprint = re.search(r"SHA256:[A-Za-z0-9+/=]+", log)
        offered = f" ({fingerprint.group(0).rstrip('.')})" if fingerprint else ""
        return (f"host key changed: {where} offered a key{offered} that does not match {known}; "
                "nothing was sent. Someone may be intercepting the connection; if the host was "
                "reinstalled, replace its line in that file")
    if "Host key verification failed" in log or "host key is known" in log:
        return (f"host key unknown: {where} is not in {known}; nothing was sent. Check the host's "
                f"fingerprint, then add its key (e.g. ssh-keyscan -p {host.port} {host.address})")
    if "Permission denied" in log and _asks_for_password(log):
        if not batch:  # the window asked, and what was typed was refused
            who = f"{host.user}@" if host.user else ""
            return f"auth failed: {who}{host.address} did not accept the password (or answer) typed"
        return ("auth failed: this host asks for a password: headless Pushbutton uses keys and agents "
                "only; see docs/ssh.md")
    if ("Permission denied" in log and batch and host.identity and needs_passphrase(host.identity)
            and not agent_holds(host.identity)):  # the key was never used: nobody could type its passphrase
        return (f"auth failed: key {host.identity} needs its passphrase, and headless Pushbutton cannot ask for "
                f"it: add it to an ssh-agent the server sees (ssh-add {host.identity}, with SSH_AUTH_SOCK in the "
                "server's environment), or run the job from the desktop window, which asks")
    if "Permission denied" in log or "Too many authentication failures" in log:
        key = f"key {host.identity}" if host.identity else "the agent's and default keys"
        who = f"{host.user}@" if host.user else ""
        return f"auth failed: {who}{host.address} refused {key}"
    if "Connection refused" in log:
        return f"refused: nothing accepts SSH connections on {where}"
    if "timed out" in log or "Timeout" in log:
        return f"timed out: no answer from {where} within {host.connect_timeout:g}s"
    if "Could not resolve hostname" in log:
        return f"unreachable: cannot resolve {host.address!r}"
    if "No route to host" in log or "Network is unreachable" in log:
        return f"unreachable: no route to {where}"
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return "error: " + (lines[-1] if lines else "ssh failed without saying why (exit 255)")


def _asks_for_password(log: str) -> bool:
    """`Permission denied (password,keyboard-interactive).`: no key could ever be enough."""
    found = re.search(r"Permission denied \(([^)]*)\)", log)
    methods = set(found.group(1).split(",")) if found else set()
    return bool(methods) and methods <= {"password", "keyboard-interactive"}


def connection_lost(log: str) -> bool:
    return any(s in log for s in ("closed by remote host", "Broken pipe", "Connection reset", "Timeout, server",
                                  "client_loop: send disconnect", "Connection closed"))



def new_workdir() -> Path:
    """A private folder (0700) for one run's control sockets and ssh logs, named with our PID."""
    return Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-", dir=socket_base()))


def socket_base() -> str:
    """TMPDIR, unless it is too long for the Unix sockets made in it (a path holds at most 107
    bytes: a run's control sockets, the window's askpass socket): then /tmp."""
    base = tempfile.gettempdir()
    return "/tmp" if os.name == "posix" and len(base) > SOCKET_BASE_MAX and os.path.isdir("/tmp") else base


def remove_stale_workdirs() -> list[Path]:
    """Folders left by a process that was killed before it could remove them (`kill -9`): removed
    at the next start. A folder whose process still lives is another Pushbutton's, in use; one
    whose PID was reused since stays until that process is gone too. Blocking: call before serving."""
    removed = []
    bases = {Path(tempfile.gettempdir()), Path(socket_base())}
    for path in (found for base in bases for found in base.glob(WORKDIR_PREFIX + "*")):
        pid = path.name[len(WORKDIR_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            info = path.lstat()
        except OSError:
            continue
        mine = not hasattr(os, "getuid") or info.st_uid == os.getuid()
        if stat.S_ISDIR(info.st_mode) and mine:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


@dataclass
class Probe:
    host: str
    status: str  # reachable, refused, timed out, unreachable, host key unknown/changed, auth failed, error
    reason: str
    seconds: float


def probe(host: Host, workdir: Path) -> Probe:
    """Connect and run `true`, as a run would connect; for `pushbutton hosts`."""
    log = workdir / f"probe-{host.name}.log"
    started = time.monotonic()
    try:
        proc = spawn(ssh_argv(host, "true", log, client=capabilities()), subprocess.DEVNULL, subprocess.DEVNULL)
    except OSError as exc:
        return Probe(host.name, "error", f"cannot start {SSH!r}: {exc.strerror or exc}", 0.0)
    code = wait_or_kill(proc, answer_within(host))
    seconds = time.monotonic() - started
    if code is None:
        return Probe(host.name, "timed out", f"no answer within {answer_within(host):g}s", seconds)
    if code == 0:
        who = f"{host.user}@" if host.user else ""
        return Probe(host.name, "reachable", f"{who}{host.address}:{host.port} ran a command", seconds)
    text = explain(read_log(log), host) if code == 255 else f"error: `true` exited {code}"
    status, _, reason = text.partition(": ")
    return Probe(host.name, status, reason, seconds)
