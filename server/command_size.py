"""How long a run's command may be, checked with its values (`Choices.validate`: a start, a rerun,
a preview, `pushbutton run` alike), so that a value the system would refuse to execute is refused
by field before anything is recorded or runs, not as the run's exit 126 "Argument list too long".

Linux's execve fails (E2BIG) when one argument or environment string, its NUL included, is over
MAX_ARG_STRLEN (32 pages: 128 KiB), or when all of them, with a pointer each, are over ARG_MAX (a
quarter of the stack limit, `os.sysconf("SC_ARG_MAX")`, which the kernel caps at 6 MiB). A value
reaches a local job in its argv element (not a shell job's) and as `PB_NAME=value`, beside the
server's environment: both limits. A remote job's argv travels in the remote command line, one
string for `ssh` here and for the login shell there, and `PB_NAME=value` is exported by the wrapper
to the command it starts there: the limit for one string (a host's own ARG_MAX is not known here).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from server import params as P
from server.environment import inherited

if TYPE_CHECKING:
    from server.catalog import Job

ONE_STRING_MAX = 128 * 1024 - 1  # bytes of one argument or NAME=value (MAX_ARG_STRLEN less its NUL)
KERNEL_ARG_MAX = 6 * 1024 * 1024  # the kernel's cap on the total whatever the stack (_STK_LIM / 4 * 3)
POINTER = 8  # each string's pointer in argv[] or envp[] counts too
# Not known before the run starts: its id, marker and artifacts folder, the program's path.
RESERVE = 4096
NONCE = "0" * 16  # as long as the wrapper's (server/executors/ssh.py)
WHY_ONE = "Linux's limit for one argument or environment variable"
HINT = "long input must come as a file: ask ops for a file parameter"
Measure = Callable[[dict[str, P.Value]], int]


def nbytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def arg_max() -> int:
    """This machine's limit for a command's arguments and environment together."""
    try:
        limit = os.sysconf("SC_ARG_MAX")
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        limit = -1
    return min(limit, KERNEL_ARG_MAX) if limit > 0 else KERNEL_ARG_MAX


def oversized(job: Job, values: dict[str, P.Value]) -> dict[str, str]:
    """Field errors for the values that make the command too long to run; none when it fits."""
    from server.preview import command_of  # here: the catalog imports choices, which imports this module

    errors: dict[str, str] = {}

    def blame(measure: Measure, limit: int, names: list[str], what: str, why: str, hint: str = HINT) -> None:
        total = measure(values)
        if total <= limit:
            return
        for name in _largest(measure, values, total - limit, names):
            errors.setdefault(name, f"too long: {nbytes(P.as_text(values[name])):,} bytes, and {what} would be "
                                    f"{total:,} bytes, over the {limit:,} allowed ({why}); {hint}")

    for p in job.params:  # PB_NAME=value, here or exported on a host
        value = values.get(p.name)
        room = ONE_STRING_MAX - nbytes(f"PB_{p.name.upper()}=")
        if value is not None and nbytes(P.as_text(value)) > room:
            errors[p.name] = (f"too long: {nbytes(P.as_text(value)):,} bytes; a command takes at most {room:,} "
                              f"in one value ({WHY_ONE}: 128 KiB, PB_{p.name.upper()}= included); {HINT}")
    if not job.shell:  # each argv element, with the command's own text around its values
        for element in job.argv:
            names = [name for name in P.placeholders(element) if values.get(name) is not None]
            if names:
                blame(lambda v, e=element: max(map(nbytes, P.build_argv([e], v)), default=0), ONE_STRING_MAX,
                      names, "one of the command's arguments", WHY_ONE)
    given = [p.name for p in job.params if values.get(p.name) is not None]
    if job.targets:
        blame(lambda v: nbytes(command_of(job, v).remote(NONCE)), ONE_STRING_MAX, given,
              "the command line for a remote host", f"{WHY_ONE}, which it is for ssh and the login shell",
              "ops can pass long input as $PB_NAME, which travels over stdin, or as a file parameter")
    else:
        server_env = inherited()

        def everything(v: dict[str, P.Value]) -> int:
            command = command_of(job, v)
            env = {**server_env, **command.env}
            strings = [*command.argv, *(f"{name}={value}" for name, value in env.items())]
            return sum(nbytes(s) + 1 + POINTER for s in strings) + POINTER * 2 + RESERVE

        blame(everything, arg_max(), given, "the command's arguments and environment together",
              "this machine's ARG_MAX, a quarter of the stack limit (ulimit -s)")
    return errors


def _largest(measure: Measure, values: dict[str, P.Value], excess: int, names: list[str]) -> list[str]:
    """The largest values whose absence would make up `excess`, and any as large as the last of them."""
    total = measure(values)
    share = {name: total - measure({**values, name: None}) for name in names}
    blamed: list[str] = []
    freed = 0
    for name in sorted(names, key=lambda n: -share[n]):
        if share[name] <= 0 or (freed >= excess and share[name] < share[blamed[-1]]):
            break
        blamed.append(name)
        freed += share[name]
    return blamed
