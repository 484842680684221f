"""Choice lists computed by a command (`param.NAME.choices_from`): run, cache, coalesce, enforce.

The command is split into argv when jobs.ini is read, exactly like a job's command; a value of
another parameter (`{other}`, the list's inputs) is substituted inside one argv element and also
given as `$PB_OTHER`. A shell job's choices command is a shell script that gets its inputs as
`$PB_OTHER` only. It always runs on this server, even for a job run on remote hosts: a form needs
one list, quickly, without a login to every target (and a password prompt) per keystroke.

A list is kept for `choices_cache` seconds per (job, parameter, command, inputs), and requests
for a list being computed wait for that one process: opening the form twice, or ten people at
once, runs the command once. Nothing here blocks the hub: the process is read and waited for
through it, like a run's (server/executors/local.py). The list a browser shows is never trusted:
a run's value is checked against the current list when it starts (`Choices.validate`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import gevent
import gevent.os
from gevent.lock import BoundedSemaphore

from server import params as P
from server.command_size import oversized
from server.environment import inherited
from server.executors.local import wait_exit

if TYPE_CHECKING:
    from server.catalog import Job

DEFAULT_TIMEOUT = 10.0  # seconds a choices command may take (param.NAME.choices_timeout)
DEFAULT_CACHE = 60.0  # seconds a list is reused (param.NAME.choices_cache; 0: computed per request)
MAX_OUTPUT = 1024 * 1024  # bytes of standard output; more is an error, not a silently cut list
MAX_CHOICES = 10_000
MAX_CACHED = 64  # lists kept at once; the oldest go first
MAX_RUNNING = 4  # choices commands at once, server-wide: a burst of new input values waits its turn
TAIL_LINES, TAIL_CHARS = 5, 300  # what an error shows of the command's standard error
ENV_REF_RE = re.compile(r"\$\{?PB_([A-Za-z0-9_]+)")


@dataclass
class Source:
    """`param.NAME.choices_from` and its keys, as read from jobs.ini."""

    command: str = ""
    timeout: float = DEFAULT_TIMEOUT
    cache: float = DEFAULT_CACHE
    argv: list[str] = field(default_factory=list)  # split once, like a job's command
    shell: bool = False  # the job's `shell`: argv is /bin/sh -c SCRIPT, inputs come as $PB_NAME only
    inputs: list[str] = field(default_factory=list)  # the parameters the list depends on


def parse(source: Source, shell: bool, job_id: str) -> None:
    """Split the command and find its inputs; ValueError says what is wrong with it."""
    if shell:
        if P.placeholders(source.command):
            raise ValueError("shell = yes: the choices command gets other parameters only as $PB_NAME; "
                             "{name} is not substituted")
        source.argv, source.shell = ["/bin/sh", "-c", source.command, job_id], True
        source.inputs = list(dict.fromkeys(m.group(1) for m in ENV_REF_RE.finditer(source.command)))
        return
    try:
        source.argv = shlex.split(source.command)
    except ValueError as exc:
        raise ValueError(f"cannot split choices_from: {exc}") from None
    if not source.argv:
        raise ValueError("choices_from is empty")
    source.inputs = list(dict.fromkeys(n for element in source.argv for n in P.placeholders(element)))


def input_of(params: list[P.Param], ref: str) -> P.Param | None:
    """The parameter an input names: `{name}`, or in a shell script `$PB_NAME` (any case)."""
    return next((p for p in params if p.name == ref), None) or \
        next((p for p in params if p.name.upper() == ref.upper()), None)


def cycle(params: list[P.Param]) -> list[str] | None:
    """A loop of lists that depend on each other (`a -> b -> a`), or None."""
    graph = {p.name: [i.name for ref in p.choices_from.inputs if (i := input_of(params, ref))]
             for p in params if p.choices_from is not None}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return path[path.index(name):] + [name]
        if name in done or name not in graph:
            return None
        for nxt in graph[name]:
            if found := visit(nxt, path + [name]):
                return found
        done.add(name)
        return None

    return next((found for name in graph if (found := visit(name, []))), None)


def in_order(params: list[P.Param]) -> list[P.Param]:
    """The parameters with `choices_from`, each after those its list depends on (loops are
    refused at load)."""
    by_name = {p.name: p for p in params if p.choices_from is not None}
    done: dict[str, P.Param] = {}

    def visit(p: P.Param) -> None:
        if p.name in done:
            return
        for ref in p.choices_from.inputs:
            if (other := input_of(params, ref)) is not None and other.name in by_name:
                visit(other)
        done[p.name] = p

    for p in by_name.values():
        visit(p)
    return list(done.values())


class ChoicesError(Exception):
    """The list could not be made: `status` is the API's answer (502: the command failed or
    printed too much; 504: it timed out), `detail` the last lines of its standard error."""

    def __init__(self, status: int, message: str, detail: list[str] | None = None):
        super().__init__(message)
        self.status, self.message, self.detail = status, message, detail or []

    def public(self) -> dict:
        return {"error": self.message, "detail": self.detail}


@dataclass(frozen=True)
class Listed:
    choices: list[str]
    at: float  # when the command that made it ended (time.time())


class Choices:
    """The lists of every job's choices commands: cached, computed once at a time per key."""

    def __init__(self) -> None:
        self._cache: dict[tuple, Listed] = {}
        self._pending: dict[tuple, gevent.Greenlet] = {}
        self._slots = BoundedSemaphore(MAX_RUNNING)

    def inputs(self, job: Job, p: P.Param, raw: dict[str, object]) -> dict[str, P.Value]:
        """The list's input values from a request, each checked as its own field would be (one
        that is a list from a command too, against its current list: a viewer's request runs the
        command, with nothing made up); an empty one is an error (the list cannot be made yet).
        Raises ParamsError, or ChoicesError when an input's own list cannot be made."""
        values, errors = {}, {}
        for ref in p.choices_from.inputs:
            other = input_of(job.params, ref)
            try:
                values[other.name] = value = other.coerce(raw.get(other.name))
            except ValueError as exc:
                errors[other.name] = str(exc)
                continue
            if value is None:
                errors[other.name] = f"fill this in first: the choices of {p.name} depend on it"
            elif other.choices_from is not None:
                current = self.get(job, other, self.inputs(job, other, raw)).choices
                bad = [c for c in (value if isinstance(value, list) else [value]) if c not in current]
                if bad:
                    errors[other.name] = f"{bad[0]!r} is not one of the current choices"
        if errors:
            raise P.ParamsError(errors)
        return values

    def get(self, job: Job, p: P.Param, values: dict[str, P.Value]) -> Listed:
        """The current list for these input values: cached, or from one run of the command that
        every request for the same key waits for. Raises ChoicesError."""
        source = p.choices_from
        used = {name: values.get(name) for name in (input_of(job.params, ref).name for ref in source.inputs)}
        key = (job.id, p.name, tuple(source.argv), str(job.workdir), tuple(sorted(job.env.items())),
               tuple((name, tuple(v) if isinstance(v, list) else P.as_text(v)) for name, v in sorted(used.items())))
        hit = self._cache.get(key)
        if hit is not None and time.time() - hit.at < source.cache:
            return hit
        self._cache.pop(key, None)
        worker = self._pending.get(key)
        if worker is None:  # its own greenlet: a client that hangs up does not kill it for the others
            worker = self._pending[key] = gevent.spawn(self._list, job, source, used)
            worker.link(lambda _: self._pending.pop(key, None))
        listed, error = worker.get()
        if error is not None:
            raise error
        if source.cache > 0 and key not in self._cache:
            self._remember(key, listed)
        return listed

    def _remember(self, key: tuple, listed: Listed) -> None:
        while len(self._cache) >= MAX_CACHED:  # the oldest first (dicts keep insertion order)
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = listed

    def validate(self, job: Job, raw: dict) -> dict[str, P.Value]:
        """`params.validate`, then the command's length with these values (command_size.py), then
        every value of a list from a command checked against the
        current list (the one the form showed may be stale, or made up). Lists are checked inputs
        first, and one whose input failed its own check is not made: as for `inputs`, a command
        never runs with a made-up value. Raises ParamsError."""
        values = P.validate(job.params, raw)
        too_long = oversized(job, values)  # what the system would refuse to execute; no list is made for it
        if too_long:
            raise P.ParamsError(too_long)
        errors, unsure = {}, set()  # unsure: failed, or not checked because an input failed
        for p in in_order(job.params):
            chosen = values.get(p.name)
            if chosen is None:
                continue
            inputs = [input_of(job.params, ref).name for ref in p.choices_from.inputs]
            empty = [name for name in inputs if values.get(name) is None]
            if empty:
                errors[p.name] = f"fill in {empty[0]} first: the choices depend on it"
            elif unsure.intersection(inputs):
                unsure.add(p.name)  # its input's own error is the answer
                continue
            else:
                try:
                    current = set(self.get(job, p, values).choices)
                except ChoicesError as exc:
                    errors[p.name] = f"the current choices could not be listed: {exc.message}"
                else:
                    bad = [c for c in (chosen if isinstance(chosen, list) else [chosen]) if c not in current]
                    if bad:
                        errors[p.name] = ("not one of the current choices" if not isinstance(chosen, list)
                                          else f"{bad[0]!r} is not one of the current choices")
            if p.name in errors:
                unsure.add(p.name)
        if errors:
            raise P.ParamsError(errors)
        return values

    def _list(self, job: Job, source: Source, values: dict[str, P.Value]) -> tuple[Listed | None, ChoicesError | None]:
        """Run the command once; (list, None) or (None, error), never raised: a greenlet's
        exception would also be printed by the hub as a crash."""
        argv = source.argv if source.shell else P.build_argv(source.argv, values)
        env = {**inherited(), **job.env, **P.build_env(values)}
        try:
            with self._slots:
                return _parse(*_run(argv, env, str(job.workdir), source.timeout)), None
        except ChoicesError as exc:
            return None, exc


def _parse(code: int, out: bytes, err: bytes) -> Listed:
    tail = _tail(err)
    if len(out) > MAX_OUTPUT:  # first: it was killed for it
        raise ChoicesError(502, f"the choices command printed more than {MAX_OUTPUT // 1024} KiB", tail)
    if code != 0:
        raise ChoicesError(502, f"the choices command failed (exit {code})", tail)
    choices = list(dict.fromkeys(c for line in out.decode("utf-8", "replace").splitlines() if (c := line.strip())))
    if len(choices) > MAX_CHOICES:
        raise ChoicesError(502, f"the choices command listed more than {MAX_CHOICES} choices", tail)
    return Listed(choices, time.time())


def _run(argv: list[str], env: dict[str, str], cwd: str, timeout: float) -> tuple[int, bytes, bytes]:
    """(exit code, stdout up to one byte past MAX_OUTPUT, stderr's end); the process's whole group
    is killed at the time-out, when it prints too much, and once it exits (nothing it started
    outlives it)."""
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
    except OSError as exc:
        raise ChoicesError(502, f"the choices command cannot start: {exc.strerror or exc}") from None

    def kill() -> None:
        if proc.returncode is None:  # not reaped: the group id is still this process's
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    out, err = bytearray(), bytearray()
    readers = [gevent.spawn(_read, proc.stdout, out, MAX_OUTPUT + 1, kill),
               gevent.spawn(_read, proc.stderr, err, None, kill)]
    timer = gevent.Timeout(timeout)
    timed_out = False
    try:
        with timer:
            code = wait_exit(proc, reap=False)
    except gevent.Timeout as exc:
        if exc is not timer:
            raise
        timed_out = True
    kill()
    code = proc.wait()
    gevent.joinall(readers, timeout=2)
    for reader in readers:
        reader.kill()
    if timed_out:
        raise ChoicesError(504, f"the choices command did not finish within {timeout:g} s",
                           _tail(err))
    return code if code >= 0 else 128 - code, bytes(out), bytes(err)


def _tail(err: bytes | bytearray) -> list[str]:
    """The last few non-empty lines of standard error, each cut to its end."""
    lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    return [line[-TAIL_CHARS:] for line in lines[-TAIL_LINES:]]


def _read(pipe, into: bytearray, cap: int | None, kill) -> None:
    """Read a pipe through the hub: stdout up to `cap` bytes (then the process is killed);
    stderr in full, keeping only its last 64 KiB."""
    fd = pipe.fileno()
    gevent.os.make_nonblocking(fd)
    try:
        while chunk := gevent.os.nb_read(fd, 65536):
            into += chunk
            if cap is None:
                del into[:-65536]
            elif len(into) >= cap:
                del into[cap:]
                kill()
                return
    finally:
        pipe.close()
