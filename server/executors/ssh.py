"""Run a job's command on one remote host with the OpenSSH client, and kill its remote process group.

Why `ssh` processes and not a Python SSH library: docs/ssh.md. In short, a child process with
pipes fits the unpatched gevent hub exactly as a local run does, and OpenSSH brings strict host
keys, ed25519, the agent, ~/.ssh/config (ProxyJump...) and nothing to bundle.

One SshProcess is one host of one run:

1. `ssh` starts with strict host-key checking, BatchMode and a private ControlMaster socket. Its
   own messages go to a log file (`-E`), so its stderr carries only the remote command's.
2. The login shell execs `/bin/sh` with WRAPPER, whose positional arguments are the job's argv,
   each element `shlex.quote`d. The wrapper prints `NONCE PGID` (sshd made it a session leader),
   then reads the environment from stdin (so secrets never appear on a command line), starts the
   command and watches stdin: when the connection drops, it kills its own process group.
3. Stop: a second session over the same connection runs `kill -TERM -PGID`, waits up to the grace
   period while the group lives, then `kill -KILL -PGID`.
"""

from __future__ import annotations

import functools
import math
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import gevent
import gevent.os

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
from gevent.event import Event
from gevent.lock import Semaphore

from server.catalog import Host
from server.events import in_pool
from server.executors.local import _pump, wait_exit
from server.output import OutputStream

SSH = "ssh"
READ_SIZE = 64 * 1024
# ssh's stdout pipe: ssh keeps decrypting into it while the hub turns the last read into lines,
# and one read takes what has piled up: 1M lines from one host stream in about half the time.
PIPE_SIZE = 1024 * 1024
_SPAWNING = Semaphore(2)
# curve25519 first: the default post-quantum sntrup761 exchange costs ~60 ms of CPU per connection.
KEX = "^curve25519-sha256,curve25519-sha256@libssh.org"
ALIVE_INTERVAL = 10  # seconds; a silent dead connection is noticed after 3 missed answers

# POSIX sh. $1 = nonce, $2 = grace in tenths of a second, the rest = the job's argv.
# The environment arrives on stdin as `export NAME='quoted value'` lines (encode_env), ended by a
# line holding only the nonce; without that line (connection lost) nothing runs. No subshell per
# variable: on a busy host every fork counts.
WRAPPER = r"""pb_n=$1 pb_g=$2; shift 2
echo "$pb_n $$"
pb_e= pb_ok=
while IFS= read -r pb_l; do
  if [ "$pb_l" = "$pb_n" ]; then pb_ok=1; break; fi
  pb_e="$pb_e$pb_l
"
done
[ -n "$pb_ok" ] || exit 255
eval "$pb_e" || exit 255
exec 3<&0
"$@" </dev/null 3<&- &
pb_c=$!
{ while read -r pb_l; do :; done; trap '' TERM; kill -TERM -$$; pb_i=0
  while kill -0 $$ && [ $pb_i -lt $pb_g ]; do sleep 0.1; pb_i=$((pb_i+1)); done
  kill -KILL -$$; } <&3 >/dev/null 2>&1 &
exec 0</dev/null 3<&-
trap : TERM
while :; do wait $pb_c; pb_rc=$?; kill -0 $pb_c 2>/dev/null || break; done
trap '' TERM; kill -TERM -$$ 2>/dev/null
exit $pb_rc"""

# The second session of a stop: dash syntax (`kill -TERM -PGID`, not `kill -TERM -- -PGID`).
KILL_SCRIPT = ("kill -TERM -{pgid} 2>/dev/null; i=0; while kill -0 -{pgid} 2>/dev/null; do "
               "if [ $i -ge {tenths} ]; then kill -KILL -{pgid} 2>/dev/null; fi; sleep 0.1; i=$((i+1)); done")


@dataclass
class Outcome:
    exit_code: int | None
    error: str | None  # "STATUS: reason" when the command could not run to its end
    started: bool  # the command was started on the host


def remote_command(argv: list[str], nonce: str, grace: float) -> str:
    """What the remote login shell runs: only quoted words, so no value can become syntax."""
    tenths = str(max(1, math.ceil(grace * 10)))
    return shlex.join(["exec", "/bin/sh", "-c", WRAPPER, "pushbutton", nonce, tenths, *argv])


def encode_env(env: dict[str, str], nonce: str) -> bytes:
    """`export NAME='value'` lines for the wrapper to eval, then the nonce line that lets the
    command start. Names are checked by the catalog and params; values are quoted, so they stay
    data. The nonce does not exist until the values are fixed, so no value can end the block."""
    script = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())
    return (script + nonce + "\n").encode("utf-8", "surrogateescape")


def _quoted(path: Path) -> str:
    """A path as an ssh_config value: quoted (spaces), `%` escaped (ssh expands %-tokens)."""
    return '"' + str(path).replace("%", "%%") + '"'


def ssh_argv(host: Host, remote: str, log: Path, control: Path | None = None, master: bool = False,
             kex: bool = True) -> list[str]:
    """The `ssh` command line for one session. Nothing secret is ever on it."""
    opts = {
        "BatchMode": "yes",  # never prompt: a missing key fails, it does not hang
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
    if kex:
        opts["KexAlgorithms"] = KEX
    if host.known_hosts is not None:
        opts["UserKnownHostsFile"] = _quoted(host.known_hosts)
        opts["GlobalKnownHostsFile"] = "none"
    if host.identity is not None:
        opts["IdentityFile"] = _quoted(host.identity)
        opts["IdentitiesOnly"] = "yes"
    if control is not None:
        opts["ControlMaster"] = "yes" if master else "no"
        opts["ControlPath"] = _quoted(control)
        opts["ControlPersist"] = "no"  # the master ends with the run's session (user config may say otherwise)
    else:
        opts["ControlMaster"] = "no"
        opts["ControlPath"] = "none"
    argv = [_ssh_path(), "-T", "-E", str(log), "-p", str(host.port)]
    if host.user:
        argv += ["-l", host.user]
    for key, value in opts.items():
        argv += ["-o", f"{key}={value}"]
    return [*argv, "--", host.address, remote]


_kex_ok: bool | None = None


def _kex() -> bool:
    """Whether this ssh understands KEX's `^` (put first) prefix; an older one keeps its own order.
    Asked once, through the threadpool."""
    global _kex_ok
    if _kex_ok is None:
        _kex_ok = in_pool(_ask_kex)
    return _kex_ok


def _ask_kex() -> bool:
    try:
        return subprocess.run([_ssh_path(), "-G", "-o", f"KexAlgorithms={KEX}", "pushbutton.invalid"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.cache
def _ssh_path() -> str:
    """Looked up once: Popen would otherwise try every PATH entry in each child, for each host."""
    return shutil.which(SSH) or SSH


def _spawn(argv: list[str], stdin=subprocess.PIPE, output=subprocess.PIPE) -> subprocess.Popen:
    """Popen in the hub's threadpool, two at a time: more threads competing for the GIL slow the
    hub's every system call down (a 100-host fan-out would stall it for hundreds of ms)."""
    with _SPAWNING:
        return in_pool(lambda: subprocess.Popen(argv, stdin=stdin, stdout=output, stderr=output,
                                                start_new_session=True, close_fds=True))


def _wait(proc: subprocess.Popen, timeout: float | None) -> int | None:
    """The exit code, or None if `proc` is still running after `timeout` seconds."""
    with gevent.Timeout(timeout, False):
        return wait_exit(proc)
    return None


def _killpg(proc: subprocess.Popen, sig: int) -> None:
    if proc.returncode is None:  # not reaped: the group id cannot belong to anyone else yet
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)


def _widen_pipe(fd: int) -> None:
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None  # Linux only
    if setsize is not None:
        with suppress(OSError):  # above /proc/sys/fs/pipe-max-size: keep the default
            fcntl.fcntl(fd, setsize, PIPE_SIZE)


def _read_log(path: Path) -> str:
    try:
        return path.read_text("utf-8", "replace")
    except OSError:
        return ""


def explain(log: str, host: Host) -> str:
    """ssh's own messages -> `STATUS: reason`, STATUS one of those `pushbutton hosts` prints."""
    where = f"{host.address}:{host.port}"
    known = str(host.known_hosts or "~/.ssh/known_hosts")
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in log or "has changed and you have requested" in log:
        fingerprint = re.search(r"SHA256:[A-Za-z0-9+/=]+", log)
        offered = f" ({fingerprint.group(0).rstrip('.')})" if fingerprint else ""
        return (f"host key changed: {where} offered a key{offered} that does not match {known}; "
                "nothing was sent. Someone may be intercepting the connection; if the host was "
                "reinstalled, replace its line in that file")
    if "Host key verification failed" in log or "host key is known" in log:
        return (f"host key unknown: {where} is not in {known}; nothing was sent. Check the host's "
                f"fingerprint, then add its key (e.g. ssh-keyscan -p {host.port} {host.address})")
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


def connection_lost(log: str) -> bool:
    return any(s in log for s in ("closed by remote host", "Broken pipe", "Connection reset", "Timeout, server",
                                  "client_loop: send disconnect", "Connection closed"))


class SshProcess:
    def __init__(self, host: Host, argv: list[str], env: dict[str, str], grace: float, workdir: Path, index: int):
        self.host = host
        self.grace = grace
        self.nonce = secrets.token_hex(8)
        self.remote = remote_command(argv, self.nonce, grace)
        self.env_block = encode_env(env, self.nonce)
        self.log = workdir / f"{index}.log"
        # Unix sockets only; on Windows the stop opens a second connection instead.
        self.control = workdir / f"{index}.sock" if os.name == "posix" else None
        self.proc: subprocess.Popen | None = None
        self.pgid: int | None = None
        self.env_sent = False
        self.stopping = False
        self.no_answer = False
        self.exited = Event()
        self._killer: gevent.Greenlet | None = None

    # -- running ----------------------------------------------------------------------------

    def run(self, stdout: OutputStream, stderr: OutputStream) -> Outcome:
        """Connect, run, stream both outputs; returns once ssh and any stop have finished."""
        if self.stopping:
            return Outcome(None, None, False)
        try:
            self.proc = _spawn(ssh_argv(self.host, self.remote, self.log, self.control, True, _kex()))
        except OSError as exc:
            stdout.close()
            stderr.close()
            return Outcome(None, f"error: cannot start the OpenSSH client {SSH!r}: {exc.strerror or exc}", False)
        if self.stopping:  # stopped while ssh was being started
            self._kill_local()
        pumps = [gevent.spawn(self._pump_stdout, stdout), gevent.spawn(_pump, self.proc.stderr, stderr)]
        watchdog = gevent.spawn_later(2 * self.host.connect_timeout + 20, self._give_up)
        try:
            code = wait_exit(self.proc)
        finally:
            watchdog.kill(block=False)
            self.exited.set()
        gevent.joinall(pumps, timeout=5)
        for pump in pumps:
            pump.kill()
        if self._killer is not None:
            self._killer.join()
        with suppress(OSError):
            self.proc.stdin.close()
        return self._outcome(code)

    def _outcome(self, code: int) -> Outcome:
        log = _read_log(self.log) if code == 255 or code < 0 or not self.env_sent else ""  # small, local
        if not self.env_sent:
            if self.no_answer:
                return Outcome(None, f"timed out: {self.host.address}:{self.host.port} did not answer "
                                     f"within {2 * self.host.connect_timeout + 20:g}s", False)
            if self.stopping:
                return Outcome(None, None, False)
            if code == 255 or log.strip():
                return Outcome(None, explain(log, self.host), False)
            return Outcome(None, f"error: ssh ended before the command started (exit {code})", False)
        if code == 255 and connection_lost(log):
            last = [line for line in log.splitlines() if line.strip()][-1:]
            return Outcome(None, "connection lost: " + (last[0].strip() if last else "ssh exited"), True)
        if code < 0 and not self.stopping:  # only we may kill our ssh; someone else did
            return Outcome(None, f"connection lost: the ssh client was killed by signal {-code}", True)
        return Outcome(code if code >= 0 else 128 - code, None, True)

    def _pump_stdout(self, stream: OutputStream) -> None:
        """Output, once the wrapper's `NONCE PGID` line is found (login noise before it is output)."""
        fd = self.proc.stdout.fileno()
        gevent.os.make_nonblocking(fd)
        _widen_pipe(fd)
        marker = self.nonce.encode() + b" "
        head = b""
        try:
            while True:
                chunk = gevent.os.nb_read(fd, PIPE_SIZE)
                if not chunk:
                    break
                if self.pgid is None:
                    head += chunk
                    start = head.find(marker)
                    end = head.find(b"\n", start) if start >= 0 else -1
                    if end < 0:
                        cut = head.rfind(b"\n", 0, start if start >= 0 else len(head)) + 1
                        if cut:
                            stream.feed(head[:cut])
                            head = head[cut:]
                        continue
                    if start:
                        stream.feed(head[:start])
                    self.pgid = int(head[start + len(marker):end])
                    gevent.spawn(self._send_env)
                    chunk, head = head[end + 1:], b""
                    if not chunk:
                        continue
                for start in range(0, len(chunk), READ_SIZE):  # the batching is sized for these
                    stream.feed(chunk[start:start + READ_SIZE])
        finally:
            if head:
                stream.feed(head)
            stream.close()
            self.proc.stdout.close()

    def _send_env(self) -> None:
        """Only now, with the host key checked and the wrapper running, does the environment leave."""
        if self.stopping:
            self._kill_local()
            return
        fd = self.proc.stdin.fileno()
        gevent.os.make_nonblocking(fd)
        data = memoryview(self.env_block)
        try:
            while data:
                data = data[gevent.os.nb_write(fd, data):]
        except OSError:  # ssh is gone; its exit says why
            return
        self.env_sent = True

    def _give_up(self) -> None:
        """Connected but never got as far as the wrapper (a server that hangs in key exchange)."""
        if self.pgid is None:
            self.no_answer = True
            self._kill_local()

    # -- stopping ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Kill the remote process group (or the connection attempt); returns at once."""
        if self.stopping:
            return
        self.stopping = True
        if self.proc is not None and not self.exited.is_set():
            self._killer = gevent.spawn(self._kill)

    def _kill(self) -> None:
        if not self.env_sent:  # nothing runs remotely: the wrapper waits for its environment
            self._kill_local()
            return
        killed = self._kill_remote()
        if not killed:  # no second session: end of stdin makes the wrapper's watchdog do it
            with suppress(OSError):
                self.proc.stdin.close()
        if not self.exited.wait(5 if killed else self.grace + 10):
            self._kill_local()  # drop the connection; the watchdog still runs on the host

    def _kill_remote(self) -> bool:
        tenths = max(1, math.ceil(self.grace * 10))
        script = KILL_SCRIPT.format(pgid=self.pgid, tenths=tenths)
        argv = ssh_argv(self.host, shlex.join(["exec", "/bin/sh", "-c", script]), self.log, self.control,
                        kex=_kex())
        try:
            proc = _spawn(argv, subprocess.DEVNULL, subprocess.DEVNULL)
        except OSError:
            return False
        code = _wait(proc, self.grace + self.host.connect_timeout + 5)
        if code is None:
            _killpg(proc, signal.SIGKILL)
            proc.wait()
        return code == 0

    def _kill_local(self) -> None:
        if self.proc is None:
            return
        _killpg(self.proc, signal.SIGTERM)
        if not self.exited.wait(2):
            _killpg(self.proc, signal.SIGKILL)


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
        proc = _spawn(ssh_argv(host, "true", log, kex=_kex()), subprocess.DEVNULL, subprocess.DEVNULL)
    except OSError as exc:
        return Probe(host.name, "error", f"cannot start {SSH!r}: {exc.strerror or exc}", 0.0)
    code = _wait(proc, 2 * host.connect_timeout + 20)
    seconds = time.monotonic() - started
    if code is None:
        _killpg(proc, signal.SIGKILL)
        proc.wait()
        return Probe(host.name, "timed out", f"no answer within {2 * host.connect_timeout + 20:g}s", seconds)
    if code == 0:
        who = f"{host.user}@" if host.user else ""
        return Probe(host.name, "reachable", f"{who}{host.address}:{host.port} ran a command", seconds)
    text = explain(_read_log(log), host) if code == 255 else f"error: `true` exited {code}"
    status, _, reason = text.partition(": ")
    return Probe(host.name, status, reason, seconds)
