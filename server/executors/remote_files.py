"""A run's uploaded files on its remote hosts: copied to a private temporary folder on each host
before the command starts, the job's argv and environment pointed at the copies, removed after.

The copy is `cat` over ssh with the file on ssh's stdin: the same command line as the run's own
session (strict, pinned host keys, BatchMode), so nothing is sent to a host whose key is wrong,
and the remote end needs nothing but `mktemp` and `cat`. The folder comes from `mktemp -d`
(0700) and the files are written under `umask 077` (0600). A host whose connection drops before
the removal keeps the folder in its temp dir (named `pb-upload.*`), as does a host that does not
answer the removal within the time a host has to answer (ssh_client.answer_within) or, once the
run is stopped, within connect_timeout + 5 s: its ssh is then killed and the run ends, saying so.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
from pathlib import Path

import gevent
import gevent.os

from server.catalog import Host
from server.executors.ssh_client import (
    answer_within,
    capabilities,
    explain,
    killpg,
    read_log,
    spawn,
    ssh_argv,
    wait_or_kill,
)
from server.executors.ssh_shared import SHARED

MARK = "pb-upload-dir:"
MAKE = ('umask 077 && d=$(mktemp -d "${TMPDIR:-/tmp}/pb-upload.XXXXXXXXXX") && printf "%s%s\\n" '
        f'{MARK} "$d"')


class RemoteFiles:
    """The files of one run, and where each host has its copies."""

    def __init__(self, files: list[Path]):
        self.files = list(files)
        self.folders: dict[int, tuple] = {}  # host index -> (host, remote folder, log, ssh environment)
        self.busy: dict[int, subprocess.Popen] = {}  # host index -> its ssh copying or removing now
        self.stopped = False

    def stop(self) -> None:
        """A stop of the run: copies under way end now (their hosts then never run the command),
        and none starts; so do removals under way (their folders stay on the host). The folders
        made stay listed, for remove()."""
        self.stopped = True
        for proc in list(self.busy.values()):
            killpg(proc, signal.SIGTERM)

    def copy(self, index: int, host: Host, workdir: Path, env: dict[str, str] | None = None) -> str | None:
        """Make the host's folder and copy every file into it; an error message, or None. `env`:
        the host's ssh environment (askpass.ssh_env), with which the run's agent answers."""
        if not self.files or self.stopped:
            return None
        log = workdir / f"{index}.files.log"
        batch = env is None
        code, out = _ssh(host, MAKE, log, env=env, running=(self.busy, index))
        folder = next((line[len(MARK):] for line in out.splitlines() if line.startswith(MARK)), None)
        if folder:
            self.folders[index] = (host, folder, log, env)
        if code != 0 or not folder or self.stopped:
            failed = f"error: no temporary folder there (exit {code})"
            return explain(read_log(log), host, batch) if code == 255 else failed
        for path in self.files:
            with open(path, "rb") as source:
                target = shlex.quote(f"{folder}/{path.name}")
                code, _ = _ssh(host, f"umask 077 && cat > {target}", log, source, env, (self.busy, index))
            if code != 0 or self.stopped:
                failed = f"error: copying a file failed (exit {code})"
                return explain(read_log(log), host, batch) if code == 255 else failed
        return None


    def command(self, index: int, argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """argv and environment with each local path replaced by the host's copy."""
        if index not in self.folders:
            return argv, env
        folder = self.folders[index][1]

        def moved(text: str) -> str:
            for path in self.files:
                text = text.replace(str(path), f"{folder}/{path.name}")
            return text

        return [moved(arg) for arg in argv], {name: moved(value) for name, value in env.items()}

    def remove(self, index: int) -> str | None:
        """Remove the host's copies (whatever the command's end); why they are still there, or None.
        Bounded: a host that takes the `rm` and never answers must not keep the run open."""
        if index not in self.folders:
            return None
        host, folder, log, env = self.folders.pop(index)
        stopped = self.stopped
        bound = host.connect_timeout + 5 if stopped else answer_within(host)
        code, _ = _ssh(host, f"rm -rf -- {shlex.quote(folder)}", log, env=env, running=(self.busy, index),
                       timeout=bound)
        if code == 0:
            return None
        if code is None:
            why = f"no answer within {bound:g}s"
        elif self.stopped and not stopped:
            why = "the run was stopped while they were being removed"
        else:
            why = explain(read_log(log), host, env is None) if code == 255 else f"rm exited {code}"
        return f"warning: the uploaded files were not removed from {host.name}: {why}; {folder} stays there"


def _ssh(host: Host, remote: str, log: Path, stdin=subprocess.DEVNULL, env: dict[str, str] | None = None,
         running: tuple[dict, int] | None = None, timeout: float | None = None) -> tuple[int | None, str]:
    """Run one short remote command (stdin: a file, read by ssh itself) on the host's kept-open
    connection if it has one (ssh_shared.py); its exit code (None: still running after `timeout`
    seconds, then killed) and stdout. `running`: (a dict, a key) under which the ssh process is
    found while it runs (RemoteFiles.stop)."""
    shared = SHARED.acquire(host)
    try:
        argv = ssh_argv(host, shlex.join(["exec", "/bin/sh", "-c", remote]), log, shared, True, capabilities(),
                        env is None, host.control_persist if shared else 0)
        try:
            proc = spawn(argv, stdin, env=env)
        except OSError as exc:
            return 255, str(exc)
        if running is not None:
            running[0][running[1]] = proc
        try:
            readers = [gevent.spawn(_read_all, proc.stdout), gevent.spawn(_read_all, proc.stderr)]
            code = wait_or_kill(proc, timeout)
            gevent.joinall(readers, timeout=5)
        finally:
            if running is not None:
                running[0].pop(running[1], None)
        return code, (readers[0].value or b"").decode("utf-8", "replace")
    finally:
        SHARED.release(shared)


def _read_all(pipe) -> bytes:
    fd = pipe.fileno()
    gevent.os.make_nonblocking(fd)
    out = b""
    try:
        while chunk := gevent.os.nb_read(fd, 65536):
            out = (out + chunk)[-65536:]  # a login banner must not grow this without bound
    finally:
        pipe.close()
    return out
