"""One run's private `ssh-agent`, in the desktop window: a key's passphrase is asked once per run
however many hosts use the key, and the key is decrypted once, not once per host.

The agent listens on `agent.sock` in the run's private (0700) folder with a key lifetime (`-t`).
Before the first host that names an `identity` connects, `ssh-add` loads that key through the
run's askpass (the dialog names that host); every host with that identity then runs ssh with
`SSH_AUTH_SOCK` pointing at this agent (`IdentitiesOnly=yes` is already on its command line), so
ssh signs through the agent and never asks. Hosts without an `identity` keep the user's own agent.
Cancel at the dialog fails every host of that key without asking again; a wrong passphrase is
asked again (ssh-add's own retry). The agent runs as `ssh-agent ... -- sh -c '...; exec cat'`: it is
stopped at the run's end by its PID (which the `sh` prints), and if Pushbutton dies, `cat` sees
its stdin close and the agent, whose parent is then gone, exits within ten seconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from contextlib import suppress
from pathlib import Path

import gevent
from gevent.lock import Semaphore

from server.events import in_pool
from server.executors.askpass import Askpass
from server.executors.local import wait_exit
from server.executors.ssh_client import killpg, spawn

LIFETIME = 24 * 3600  # seconds a loaded key lives, if the run's own end does not stop the agent first


class RunAgent:
    def __init__(self, workdir: Path, askpass: Askpass, lifetime: float | None = None):
        self.askpass = askpass
        self.path = workdir / "agent.sock"
        self.lifetime = max(60, int(lifetime or LIFETIME))
        self.proc: subprocess.Popen | None = None  # `sh` then `cat`, the agent's parent: see start
        self.pid: int | None = None  # the agent's
        self.keys: dict[Path, bool] = {}  # identity -> loaded
        self.cancelled: set[Path] = set()
        self.adding: set[subprocess.Popen] = set()  # `ssh-add`s waiting for a passphrase now
        self._locks: dict[Path, Semaphore] = {}

    def start(self) -> bool:
        """Start the agent; False (and hosts ask one by one) where there is no ssh-agent."""
        if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
            return False
        try:
            self.proc = spawn(["ssh-agent", "-a", str(self.path), "-t", str(self.lifetime), "--",
                               "/bin/sh", "-c", 'echo "$SSH_AGENT_PID"; exec cat >/dev/null'])
            line = in_pool(self.proc.stdout.readline)  # the agent's PID (it runs in its own session)
            self.pid = int(line) if line.strip().isdigit() else None
        except OSError:
            return False
        for _ in range(500):  # the socket is there within milliseconds
            if self.path.exists() and self.pid:
                return True
            if self.proc.poll() is not None:
                break
            gevent.sleep(0.01)
        self.stop()
        return False

    def stop(self) -> None:
        """`ssh-agent -k`'s SIGTERM: the agent forgets its keys and removes its socket."""
        if self.proc is None:
            return
        if self.pid:
            with suppress(OSError):
                os.kill(self.pid, signal.SIGTERM)
        killpg(self.proc, signal.SIGTERM)
        for pipe in (self.proc.stdin, self.proc.stdout):
            with suppress(OSError):
                pipe.close()
        wait_exit(self.proc)

    def interrupt(self) -> None:
        """A stop of the run: a key's question still open does not hold it up (the run ends now;
        the dialog's late answer goes nowhere)."""
        for proc in list(self.adding):
            killpg(proc, signal.SIGTERM)

    def socket_for(self, identity: Path | None, index: int) -> Path | None:
        """The agent's socket for a host with this identity, once the key is loaded; None: ssh
        goes on its own (no identity, no agent, or the key could not be loaded)."""
        if identity is None or self.proc is None:
            return None
        lock = self._locks.setdefault(identity, Semaphore(1))
        with lock:  # the run's other hosts of this key wait for the first one's answer
            if identity not in self.keys:
                self.keys[identity] = self._add(identity, index)
        if identity in self.cancelled:
            self.askpass.cancelled.setdefault(index, "passphrase")
        return self.path if self.keys[identity] else None

    def _add(self, identity: Path, index: int) -> bool:
        env = dict(self.askpass.env(index), SSH_AUTH_SOCK=str(self.path))
        try:
            proc = spawn(["ssh-add", "-q", "--", str(identity)], subprocess.DEVNULL, subprocess.DEVNULL, env=env)
        except OSError:
            return False
        self.adding.add(proc)
        try:
            code = wait_exit(proc)
        finally:
            self.adding.discard(proc)
        if code != 0 and self.askpass.cancelled.get(index):
            self.cancelled.add(identity)
        return code == 0
