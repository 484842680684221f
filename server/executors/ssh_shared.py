"""SSH connections kept open between runs (OpenSSH's ControlPersist), as Ansible does.

A fan-out's cost is the handshakes: on each host a new sshd process, a key exchange and the
login; on this machine an `ssh` process doing its half. A host's connection, once made, stays
open for `[host:NAME] control_persist` seconds (60 by default) after its last session, and the
next run, stop or upload on that host opens a session on it instead: no handshake, no login, no
question for a passphrase. Why this is safe and when it is not wanted: docs/ssh.md.

The socket's name is a digest of everything that decides whom the connection reaches and trusts
(address, port, user, key, known hosts, pinned keys): after a reload that changes any of these,
the next run makes a new connection, and the old one closes when idle. Sockets live in one private
folder (0700) per process, removed with the process; `close_all` ends the masters on shutdown.

An sshd allows 10 sessions per connection by default (`MaxSessions`): beyond MAX_SESSIONS at once
from this process a session gets a connection of its own, as before; so does one that a host with
a lower MaxSessions refuses (OpenSSH itself then connects anew).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from contextlib import suppress
from pathlib import Path

from server.catalog import Host
from server.executors.ssh_client import quoted, socket_base, spawn, ssh_path, wait_or_kill

MAX_SESSIONS = 8  # below sshd's default MaxSessions (10): one is left for a stop's kill session


def key(host: Host) -> str:
    """A digest of the connection's identity: reused only by sessions that would connect and trust
    exactly alike."""
    parts = [host.name, host.address, str(host.port), host.user or "", str(host.identity or ""),
             str(host.known_hosts or ""), *host.host_keys, str(os.getuid() if hasattr(os, "getuid") else "")]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]


class SharedConnections:
    """This process's kept-open connections: their folder, and how many sessions use each now."""

    def __init__(self):
        self.folder: Path | None = None
        self.sessions: Counter[Path] = Counter()

    def acquire(self, host: Host) -> Path | None:
        """The control socket a session on `host` should share, or None for a connection of its own."""
        if os.name != "posix" or host.control_persist <= 0:
            return None
        if self.folder is None:
            # Short: a socket's path must fit in 108 bytes, and TMPDIR may be long.
            self.folder = Path(tempfile.mkdtemp(prefix=f"pb-ssh-{os.getpid()}-", dir=socket_base()))
        path = self.folder / key(host)
        if len(str(path)) > 100 or self.sessions[path] >= MAX_SESSIONS:
            return None
        self.sessions[path] += 1
        return path

    def standing(self, host: Host) -> bool:
        """Whether a connection to `host` is open now (a run then needs no key or password)."""
        if self.folder is None or os.name != "posix" or host.control_persist <= 0:
            return False
        path = self.folder / key(host)
        return path.exists() and alive(path)

    def release(self, path: Path | None) -> None:
        if path is not None and self.sessions[path] > 0:
            self.sessions[path] -= 1

    def close_all(self) -> None:
        """End every kept-open connection (`ssh -O exit`), then remove the folder. Blocking."""
        folder, self.folder = self.folder, None
        if folder is None:
            return
        closing = []
        for socket in folder.iterdir():  # all at once: a hundred hosts must not hold up an exit
            with suppress(OSError):
                closing.append(subprocess.Popen(
                    [ssh_path(), "-o", f"ControlPath={quoted(socket)}", "-O", "exit", "pushbutton"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for proc in closing:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


def alive(path: Path) -> bool:
    """Whether the connection kept open at `path` still stands (`ssh -O check`)."""
    try:
        proc = spawn([ssh_path(), "-o", f"ControlPath={quoted(path)}", "-O", "check", "pushbutton"],
                     subprocess.DEVNULL, subprocess.DEVNULL)
    except OSError:
        return False
    return wait_or_kill(proc, 5) == 0


SHARED = SharedConnections()
