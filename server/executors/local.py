"""Run one job's process on this machine, and make sure nothing it started outlives the run.

The process gets its own session (so its own process group) and a marker in its environment.
Stopping sends SIGTERM to the group and to every process still carrying the marker (which finds
children that moved to a new session with `setsid` or were double-forked), then SIGKILL after
the grace period. The same sweep runs when the main process exits, like systemd's control-group
kill: a run owns every process it started.

A process group id is a PID, and PIDs are reused. The group is signalled only while its leader
is not yet reaped: its exit is observed without reaping (`waitid(WNOWAIT)`), the sweep runs while
the zombie still holds the PID, and only then is it reaped. A stop after that finds the run's
processes by their marker alone.

The server thread's hub is not the main thread's, so `gevent.subprocess` cannot be used: this is
plain `subprocess.Popen` with non-blocking pipes read through the hub, and the exit observed
through a pidfd where the OS has one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import weakref

import gevent
import gevent.os
import psutil
from gevent.event import AsyncResult
from gevent.socket import wait_read

from server.events import in_pool
from server.output import OutputStream

READ_SIZE = 64 * 1024
MARKER = "PUSHBUTTON_RUN"
PROC_ENVIRON = os.path.exists("/proc/self/environ")
_devnull: int | None = None


def devnull() -> int:
    """A job's stdin: /dev/null, opened once (close-on-exec: a job gets it only as its fd 0).
    `subprocess.DEVNULL` opened and closed it again for every run, two system calls on the hub."""
    global _devnull
    if _devnull is None:
        _devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _devnull


def run_marker(owner: str, run_id: int) -> str:
    """The value of MARKER in every process of one run: unique across servers and restarts."""
    return f"{owner}-{run_id}"


class StartError(Exception):
    """The command could not be started at all (missing, not executable, bad workdir)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class LocalProcess:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: str, marker: str, grace: float):
        self.argv = argv
        self.env = {**env, MARKER: marker}
        self.cwd = cwd
        self.marker = marker
        self.grace = grace
        self.proc: subprocess.Popen | None = None
        self._killer: gevent.Greenlet | None = None

    def run(self, stdout: OutputStream, stderr: OutputStream) -> int:
        """Start, stream both pipes, wait for the exit, sweep leftovers; returns the exit code
        (128 + N for a process killed by signal N)."""
        try:
            self.proc = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdin=devnull(),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, close_fds=True,
            )
        except FileNotFoundError as exc:
            raise StartError(f"cannot start {self.argv[0]!r}: {exc.strerror}", 127) from None
        except PermissionError as exc:
            raise StartError(f"cannot start {self.argv[0]!r}: {exc.strerror}", 126) from None
        except OSError as exc:
            raise StartError(f"cannot start {self.argv[0]!r}: {exc}", 126) from None
        pumps = [gevent.spawn(_pump, self.proc.stdout, stdout), gevent.spawn(_pump, self.proc.stderr, stderr)]
        code = wait_exit(self.proc, reap=False)
        # Children left behind (`cmd &`) keep the pipes open and must not survive the run.
        self.stop()
        self._killer.join()
        self.proc.wait()  # exited already: reaping is immediate, and frees the group id
        gevent.joinall(pumps, timeout=2)
        for pump in pumps:  # a pipe still held by a process we cannot see or signal
            pump.kill()
        return code if code >= 0 else 128 - code

    def stop(self) -> None:
        """Terminate the whole tree: returns at once; the work happens in its own greenlet."""
        if self.proc is not None and (self._killer is None or self._killer.dead):
            self._killer = gevent.spawn(self._kill_tree)

    def _group(self) -> int | None:
        """The process group id, while it is still ours: the leader is not reaped (Popen sets
        `returncode` only when it reaps), so no other process can have been given that id."""
        return self.proc.pid if self.proc.returncode is None else None

    def _kill_tree(self) -> None:
        """SIGTERM once, wait up to the grace period, then SIGKILL until nothing is left."""
        if not _signal_tree(self._group(), self.marker, signal.SIGTERM):
            return
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline:
            gevent.sleep(0.05)
            if not members(self._group(), self.marker):
                return
        while _signal_tree(self._group(), self.marker, signal.SIGKILL):
            gevent.sleep(0.05)


def wait_exit(proc: subprocess.Popen, reap: bool = True) -> int:
    """Wait in this greenlet, not the hub, for `proc` to exit; its return code. With
    `reap=False` it stays a zombie, holding its PID and group id, until `proc.wait()`."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux: poll
        while (code := _exit_status(proc, reap)) is None:
            gevent.sleep(0.02)
        return code
    try:
        wait_read(pidfd)
    finally:
        os.close(pidfd)
    return proc.wait() if reap else _exit_status(proc, reap)


def _exit_status(proc: subprocess.Popen, reap: bool) -> int | None:
    """The return code if `proc` has exited (negative: killed by that signal), else None."""
    if reap or proc.returncode is not None:
        return proc.poll()
    info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    if info is None:
        return None
    return -info.si_status if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else info.si_status


def _pump(pipe, stream: OutputStream) -> None:
    """Read `pipe` into `stream` until EOF: one io watcher for the pipe's life, and a read only
    once the loop says it is readable. gevent's `nb_read` made a watcher per call and tried a
    read that failed before each wait (a read, an exception and an epoll_ctl per line of a slow
    process); and a flood, read without a pass through the loop, kept its events from the
    writer (`Store.submit_soon`) and every other client waiting until the pipe ran dry."""
    fd = pipe.fileno()
    gevent.os.make_nonblocking(fd)
    hub = gevent.get_hub()
    readable = hub.loop.io(fd, 1)
    try:
        while True:
            hub.wait(readable)
            try:
                chunk = os.read(fd, READ_SIZE)
            except BlockingIOError:  # readable, then not: never on a pipe of our own, but harmless
                continue
            if not chunk:
                break
            stream.feed(chunk)
    finally:
        readable.close()
        stream.close()
        pipe.close()


Key = tuple[int | None, str]  # a run's process group (None once that id may be reused), its marker


class _Sweeps:
    """The runs waiting for the next scan of /proc, and the greenlet making it: one hub's."""

    def __init__(self):
        self.asked: dict[Key, AsyncResult] = {}
        self.greenlet: gevent.Greenlet | None = None


_sweeps: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # hub -> _Sweeps


def members(pgid: int | None, marker: str) -> list[int]:
    """Live processes of the run: its process group, plus whoever still carries its marker. From a
    greenlet: runs that end together share one scan (it reads every process's environment, and 20
    runs ending at once made 20 of them on the threadpool, holding the GIL the hub needs). A scan
    answers only those who asked before it began."""
    sweeps = _sweeps.setdefault(gevent.get_hub(), _Sweeps())
    result = sweeps.asked.get((pgid, marker))
    if result is None:
        result = sweeps.asked[(pgid, marker)] = AsyncResult()
    if sweeps.greenlet is None or sweeps.greenlet.dead:  # dead: killed before it ran its `finally`
        sweeps.greenlet = gevent.spawn(_sweep, sweeps)
    return result.get()


def _sweep(sweeps: _Sweeps) -> None:
    try:
        while sweeps.asked:
            asked, sweeps.asked = sweeps.asked, {}
            try:
                found = in_pool(_scan, set(asked))
            except Exception as exc:
                for result in asked.values():
                    result.set_exception(exc)
                continue
            for key, result in asked.items():
                result.set(found[key])
    finally:
        sweeps.greenlet = None


def _scan(asked: set[Key]) -> dict[Key, list[int]]:
    """Blocking: each asked run's live processes, found in one pass."""
    if PROC_ENVIRON:
        return _members_proc(asked)
    return {key: _members_psutil(*key) for key in asked}


def _members_proc(asked: set[Key]) -> dict[Key, list[int]]:
    # Linux: raw /proc reads, about 8x cheaper than psutil; this runs at the end of every run.
    found: dict[Key, list[int]] = {key: [] for key in asked}
    groups = {pgid: key for key in asked if (pgid := key[0]) is not None}
    needles = {f"\0{MARKER}={marker}\0".encode(): (pgid, marker) for pgid, marker in asked}
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            pgid = os.getpgid(int(name))
            if pgid == 0:  # a kernel thread (most of /proc on a quiet machine): no environment
                continue
            key = groups.get(pgid) if groups else None
            if key is not None:
                if _read(f"/proc/{name}/stat").rsplit(b")", 1)[1].split()[0] != b"Z":
                    found[key].append(int(name))
                continue
            environ = b"\0" + _read(f"/proc/{name}/environ")  # a zombie's is empty
            for needle, key in needles.items():
                if needle in environ:
                    found[key].append(int(name))
        except OSError:
            continue
    return found


def _read(path: str, size: int = 16384) -> bytes:
    """A whole /proc file with bare system calls: `open()` added an fstat and two objects per file,
    for each of a scan's hundreds."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, size)
        if len(data) < size:
            return data
        parts = [data]
        while chunk := os.read(fd, size):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def _members_psutil(pgid: int | None, marker: str) -> list[int]:
    me = os.getpid()
    found = []
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if (pgid is not None and os.getpgid(proc.pid) == pgid) or proc.environ().get(MARKER) == marker:
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


def _signal_tree(pgid: int | None, marker: str, sig: int) -> list[int]:
    """Signal the run's group and every process of it found (`members`, from a greenlet)."""
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    pids = members(pgid, marker)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    return pids


def kill_orphans(markers: set[str], grace: float = 5.0) -> list[int]:
    """Processes of runs whose server died (`kill -9`, a crash) still carry their run's marker:
    stop them (SIGTERM, SIGKILL after `grace`) at the next start. Blocking: call before serving."""
    def find() -> list[int]:
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get(MARKER) in markers:
                    found.append(proc.pid)
            except (psutil.Error, OSError):
                continue
        return found

    orphans = find() if markers else []
    sig, deadline = signal.SIGTERM, time.monotonic() + grace
    while pids := find() if orphans else []:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        time.sleep(0.05)
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
    return orphans
