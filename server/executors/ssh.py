"""Run a job's command on one remote host with the OpenSSH client, and kill its remote process group.

Why `ssh` processes and not a Python SSH library: docs/ssh.md. In short, a child process with
pipes fits the unpatched gevent hub exactly as a local run does, and OpenSSH brings strict host
keys, ed25519, the agent, ~/.ssh/config (ProxyJump...) and nothing to bundle.
The client's command line, its messages and its temporary folders: ssh_client.py.

One SshProcess is one host of one run:

1. `ssh` starts with strict host-key checking, BatchMode and a ControlMaster socket: the host's
   connection kept open between runs (ssh_shared.py), or with `control_persist = 0` one of this
   run's own. Its own messages go to a log file (`-E`); a server's `Banner` still reaches its stderr.
2. The login shell execs `/bin/sh` with WRAPPER, whose positional arguments are the job's argv,
   each element `shlex.quote`d. The wrapper prints `NONCE PGID` (sshd made it a session leader),
   then reads the environment from stdin (so secrets never appear on a command line), prints
   `NONCE start` on stderr, starts the command and watches stdin: when the connection drops, it
   kills its own process group. Whatever either stream carries before its NONCE line (a banner,
   a login script's noise) is the server's, not the command's: it is kept aside, not shown.
3. Stop: a second session over the same connection runs `kill -TERM -PGID`, waits up to the grace
   period while the group lives, then `kill -KILL -PGID`.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shlex
import signal
import subprocess
from collections.abc import Callable
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

from server.catalog import Host
from server.executors.askpass import Askpass, ssh_env
from server.executors.local import wait_exit
from server.executors.ssh_client import (
    SSH,
    answer_within,
    capabilities,
    connection_lost,
    explain,
    killpg,
    read_log,
    spawn,
    ssh_argv,
    wait_or_kill,
)
from server.executors.ssh_shared import SHARED, alive
from server.output import OutputStream

READ_SIZE = 64 * 1024
# ssh's stdout pipe: ssh keeps decrypting into it while the hub turns the last read into lines,
# and one read takes what has piled up: 1M lines from one host stream in about half the time.
PIPE_SIZE = 1024 * 1024
DEFAULT_PIPE = 64 * 1024  # Linux's; a read this long means the pipe was full
# ssh's last words when the server's end of the connection went away (its sshd killed, say); it
# names the host (64 bytes at most). Another name is the command's own ssh, to another machine.
CLOSED_BY_REMOTE = re.compile(rb"(?:^|\n)Connection to (\S+) closed by remote host\.\r?\n?$")
CHATTER_MAX = 4096  # bytes of the server's own pre-command output kept for an error message

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
echo "$pb_n start" >&2
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


def _widen_pipe(fd: int) -> None:
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None  # Linux only
    if setsize is not None:
        with suppress(OSError):  # above /proc/sys/fs/pipe-max-size: keep the default
            fcntl.fcntl(fd, setsize, PIPE_SIZE)


class SshProcess:
    def __init__(self, host: Host, argv: list[str], env: dict[str, str], grace: float, workdir: Path, index: int,
                 askpass: Askpass | None = None, on_start: Callable[[], None] | None = None,
                 agent: Path | None = None):
        self.host = host
        self.agent = agent  # the run's own ssh-agent holding this host's identity (agent.py), if any
        self.on_start = on_start  # called once, when the wrapper says the command starts
        self.index = index
        self.askpass = askpass  # the window's: ssh may ask a person (askpass.py); None = BatchMode
        self.grace = grace
        self.nonce = secrets.token_hex(8)
        self.remote = remote_command(argv, self.nonce, grace)
        self.env_block = encode_env(env, self.nonce)
        self.log = workdir / f"{index}.log"
        # Unix sockets only; on Windows the stop opens a second connection instead.
        self.private = workdir / f"{index}.sock" if os.name == "posix" else None  # this run's own master
        self.control: Path | None = self.private  # the socket this host's session uses (ssh_shared.py)
        self.shared: Path | None = None  # that socket, when it is a connection kept open between runs
        self.proc: subprocess.Popen | None = None
        self.pgid: int | None = None
        self.env_sent = False
        self.stopping = False
        self.no_answer = False
        self.exited = Event()
        self.chatter = b""  # what the server printed before the command started, for errors
        self.said = b""  # the end of stderr once the command started: ssh's own last words come there
        self._killer: gevent.Greenlet | None = None

    # -- running ----------------------------------------------------------------------------

    def run(self, stdout: OutputStream, stderr: OutputStream) -> Outcome:
        """Connect, run, stream both outputs; returns once ssh and any stop have finished."""
        if self.stopping:
            return Outcome(None, None, False)
        cancelled = self.askpass.cancelled.get(self.index) if self.askpass else None
        if cancelled:  # at the run's agent's question for this host's key: nothing to connect for
            stdout.close()
            stderr.close()
            return Outcome(None, f"auth failed: cancelled at the {cancelled} prompt", False)
        shared = SHARED.acquire(self.host)
        try:
            code = self._session(stdout, stderr, shared)
        except OSError as exc:
            stdout.close()
            stderr.close()
            return Outcome(None, f"error: cannot start the OpenSSH client {SSH!r}: {exc.strerror or exc}", False)
        finally:
            SHARED.release(shared)
        return self._outcome(code)

    def _session(self, stdout: OutputStream, stderr: OutputStream, shared: Path | None) -> int:
        """One `ssh` process, on the kept-open connection at `shared` or on its own; its exit code."""
        self.shared = shared
        self.control = shared or self.private
        batch = self.askpass is None
        env = ssh_env(self.askpass, self.index, self.agent)
        persist = self.host.control_persist if shared else 0
        argv = ssh_argv(self.host, self.remote, self.log, self.control, True, capabilities(), batch, persist)
        self.proc = spawn(argv, env=env)
        if self.stopping:  # stopped while ssh was being started
            self._kill_local()
        pumps = [gevent.spawn(self._pump_stdout, stdout), gevent.spawn(self._pump_stderr, stderr)]
        watchdog = gevent.spawn_later(answer_within(self.host), self._give_up)
        try:
            code = wait_exit(self.proc)
        finally:
            watchdog.kill(block=False)
            self.exited.set()
        gevent.joinall(pumps, timeout=5)
        gevent.killall(pumps)
        if self._killer is not None:
            self._killer.join()
        with suppress(OSError):
            self.proc.stdin.close()
        return code

    def _outcome(self, code: int) -> Outcome:
        log = read_log(self.log) if code == 255 or code < 0 or not self.env_sent else ""  # small, local
        if not self.env_sent:
            if self.no_answer:
                return Outcome(None, f"timed out: {self.host.address}:{self.host.port} did not answer "
                                     f"within {answer_within(self.host):g}s", False)
            if self.stopping:
                return Outcome(None, None, False)
            cancelled = self.askpass.cancelled.get(self.index) if self.askpass else None
            if cancelled:
                return Outcome(None, f"auth failed: cancelled at the {cancelled} prompt", False)
            if code == 255 or log.strip():
                # An empty log: ssh stopped before opening it, and said why on stderr (set aside).
                said = log if log.strip() else self.chatter.decode("utf-8", "replace")
                return Outcome(None, explain(said, self.host, self.askpass is None), False)
            said = self.chatter.decode("utf-8", "replace").strip().splitlines()[-1:]
            return Outcome(None, f"error: ssh ended before the command started (exit {code})"
                                 + "".join(f": {line.strip()}" for line in said), False)
        if code == 255 and connection_lost(log):
            last = [line for line in log.splitlines() if line.strip()][-1:]
            return Outcome(None, "connection lost: " + (last[0].strip() if last else "ssh exited"), True)
        closed = CLOSED_BY_REMOTE.search(self.said) if code == 255 else None  # on stderr, not in its log
        if closed and closed.group(1) == self.host.address.encode()[:64]:
            return Outcome(None, f"connection lost: {self.host.address}:{self.host.port} closed the connection "
                                 "while the command ran (the host went down or its sshd stopped)", True)
        if code == 255 and self.shared is not None and not self.stopping and not alive(self.shared):
            # A kept-open connection's messages are its master's, not this session's: its end says it.
            return Outcome(None, f"connection lost: the connection to {self.host.address}:{self.host.port} ended "
                                 "while the command ran (the host went down, its sshd stopped or the network "
                                 "failed)", True)
        if code < 0 and not self.stopping:  # only we may kill our ssh; someone else did
            return Outcome(None, f"connection lost: the ssh client was killed by signal {-code}", True)
        return Outcome(code if code >= 0 else 128 - code, None, True)

    def _pump_stdout(self, stream: OutputStream) -> None:
        """Output, once the wrapper's `NONCE PGID` line is found; login noise before it is not."""
        fd = self.proc.stdout.fileno()
        gevent.os.make_nonblocking(fd)
        widened = False
        marker = re.compile(re.escape(self.nonce.encode()) + rb" ([0-9]{1,18})\n")
        keep = len(self.nonce) + 20  # a marker may be arriving: the rest of the head is chatter
        head = b""
        try:
            while True:
                chunk = gevent.os.nb_read(fd, PIPE_SIZE)
                if not chunk:
                    break
                if not widened and len(chunk) >= DEFAULT_PIPE:  # a flood: only then (widening costs)
                    widened = True
                    _widen_pipe(fd)
                if self.pgid is None:  # a host's login noise (or a hostile host) may flood: a bounded head
                    head += chunk
                    found = marker.search(head)
                    if found is None:
                        self._set_aside(head[:-keep])
                        head = head[-keep:]
                        continue
                    self._set_aside(head[:found.start()])
                    self.pgid = int(found.group(1))
                    gevent.spawn(self._send_env)
                    chunk, head = head[found.end():], b""
                    if not chunk:
                        continue
                for start in range(0, len(chunk), READ_SIZE):  # the batching is sized for these
                    stream.feed(chunk[start:start + READ_SIZE])
        finally:
            self._set_aside(head)
            stream.close()
            self.proc.stdout.close()

    def _pump_stderr(self, stream: OutputStream) -> None:
        """Output, once the wrapper's `NONCE start` line is found: before it, stderr carries the
        server's banner and login noise, set aside for an error message."""
        fd = self.proc.stderr.fileno()
        gevent.os.make_nonblocking(fd)
        marker = self.nonce.encode() + b" start\n"
        head, started = b"", False
        try:
            while True:
                chunk = gevent.os.nb_read(fd, READ_SIZE)
                if not chunk:
                    break
                if not started:
                    head += chunk
                    at = head.find(marker)  # a banner need not end its last line
                    if at < 0:
                        cut = max(0, len(head) - len(marker) + 1)  # the marker may be arriving
                        self._set_aside(head[:cut])
                        head = head[cut:]
                        continue
                    self._set_aside(head[:at])
                    chunk, head, started = head[at + len(marker):], b"", True
                    if self.on_start is not None:
                        self.on_start()
                    if not chunk:
                        continue
                stream.feed(chunk)
                self.said = (self.said + chunk[-CHATTER_MAX:])[-CHATTER_MAX:]
        finally:
            self._set_aside(head)
            stream.close()
            self.proc.stderr.close()

    def _set_aside(self, data: bytes) -> None:
        if data:
            self.chatter = (self.chatter + data)[-CHATTER_MAX:]

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
        if self.exited.is_set():
            return
        if self.askpass is not None and self.index in self.askpass.asking:  # a person is typing
            gevent.spawn_later(self.host.connect_timeout + 20, self._give_up)
            return
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
                        client=capabilities())
        try:
            proc = spawn(argv, subprocess.DEVNULL, subprocess.DEVNULL)
        except OSError:
            return False
        return wait_or_kill(proc, self.grace + self.host.connect_timeout + 5) == 0

    def _kill_local(self) -> None:
        if self.proc is None:
            return
        killpg(self.proc, signal.SIGTERM)
        if not self.exited.wait(2):
            killpg(self.proc, signal.SIGKILL)
