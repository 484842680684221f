"""Where a command's argv holds code rather than data: the program itself, and what a known
interpreter runs (`sh -c 'echo {name}'`, `perl -ne`, `awk '{print}'`, `ssh host CMD`). A
placeholder there hands the user the program: a value `$(id)` in that script runs `id`, though no
shell ever parses the command line itself. `check` refuses free text there
(server/catalog_params.py).

Each program's options are read as it reads them: combined short options (`sh -ec`, `python3
-Ic`, `perl -lne`), an option's argument attached or in the next word (`perl -e'...'`), `--`,
and the operands after them: a shell's first operand is its script when `-c` was given (`bash -c
-- 'SCRIPT'`), awk's and sed's when no `-e`/`-f` was. Wrappers (`env -i`, `timeout 10`, `sudo -u
bob`, `xargs`, `find -exec`...) are seen through to the program they start. Programs not known
here that run their arguments as code (`git -c alias.x=!cmd`, `make`'s variables) are the
job author's to keep free text out of: docs/jobs-ini.md says so.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from server.params import leading, leading_names, placeholders


@dataclass(frozen=True)
class Reads:
    """How a program reads its arguments: short option letters whose argument is `code` (or code
    to `load`: a module, a file of it) or that merely `take` an argument; long options likewise;
    `flag` letters that make the first operand the code (a shell's -c); whether, with no code
    option, the first operand is code (awk, sed) or the program (a script file)."""

    code: str = ""
    load: str = ""
    take: str = ""
    code_long: tuple[str, ...] = ()
    take_long: tuple[str, ...] = ()
    flag: str = ""
    first: str = "program"  # "program", "code" or "" (data)
    plus: bool = False  # `+o` options too (shells)
    every_operand_code: bool = False  # ssh host CMD..., watch CMD: joined and run by a shell


SHELL = Reads(flag="c", take="oO", take_long=("--rcfile", "--init-file"), plus=True)
AWK = Reads(code="e", load="fi", take="vF", code_long=("--source",), take_long=("--assign", "--field-separator"),
            first="code")
READERS: dict[str, Reads] = {
    **dict.fromkeys(("sh", "bash", "dash", "ash", "zsh", "ksh", "mksh"), SHELL),
    **dict.fromkeys(("awk", "gawk", "mawk", "nawk"), AWK),
    "sed": Reads(code="e", load="f", take="l", code_long=("--expression",), take_long=("--file",), first="code"),
    "python": Reads(code="c", load="m", take="WX"),
    "perl": Reads(code="eE", load="Mm", take="Ix"),
    "ruby": Reads(code="e", load="r", take="ICEF"),
    "node": Reads(code="ep", load="r", code_long=("--eval", "--print"), take_long=("--require", "--import")),
    "php": Reads(code="rBRE", load="F", take="cdz"),
    "lua": Reads(code="e", load="l"),
    "rscript": Reads(code="e"),
    "osascript": Reads(code="e"),
    "pwsh": Reads(code_long=("-c", "-command", "-encodedcommand", "-ec", "-e")),
    "powershell": Reads(code_long=("-c", "-command", "-encodedcommand", "-ec", "-e")),
    "su": Reads(code="c", take="gGsw", code_long=("--command", "--session-command"), first=""),
    "runuser": Reads(code="c", take="gGsuw", code_long=("--command", "--session-command"), first=""),
    "script": Reads(code="c", take="ETIOBtm", code_long=("--command",), first=""),
    "ssh": Reads(take="bcDEeFIiJLlmOopQRSWwB", every_operand_code=True),
    "watch": Reads(take="nd", take_long=("--interval", "--differences"), every_operand_code=True),
}
# Programs that start another: their options (letters that take an argument, long ones too), and
# how many operands come before the program (timeout's DURATION, taskset's mask, chrt's priority).
WRAPPERS: dict[str, tuple[str, tuple[str, ...], int]] = {
    "env": ("uCS", ("--unset", "--chdir", "--split-string"), 0),
    "timeout": ("sk", ("--signal", "--kill-after"), 1),
    "nice": ("n", ("--adjustment",), 0),
    "nohup": ("", (), 0), "setsid": ("", (), 0), "exec": ("a", (), 0), "busybox": ("", (), 0),
    "stdbuf": ("ioe", ("--input", "--output", "--error"), 0),
    "ionice": ("cnp", ("--class", "--classdata", "--pid"), 0),
    "chrt": ("T", (), 1), "taskset": ("", (), 1),
    "sudo": ("ugpChDRrTU", ("--user", "--group", "--prompt", "--close-from", "--host", "--chdir"), 0),
    "doas": ("uC", (), 0),
    "xargs": ("aEdIiLlnPs", ("--arg-file", "--delimiter", "--max-args", "--max-procs", "--replace"), 0),
    "flock": ("wEc", ("--timeout", "--conflict-exit-code", "--command"), 1),
}
FREE_TYPES = ("text", "multiline")  # values a user writes freely; the others are numbers, dates or ops' lists
_VERSION = re.compile(r"(?<=[a-z])[0-9.]+$")  # python3.11 -> python
PROGRAM = "the program"


def program(element: str) -> str:
    name = os.path.basename(element).lower().removesuffix(".exe")
    return _VERSION.sub("", name)


def code_placeholders(argv: list[str]) -> list[tuple[str, str]]:
    """(name, where) for each placeholder in code: `where` is "the program" or "PROG's script"."""
    found: list[tuple[str, str]] = []
    _command(argv, 0, found, [])
    return found


def script_arguments(argv: list[str]) -> set[str]:
    """Names that begin an argument given to an inline script (`sh -c SCRIPT $0 $1...`, `python -c
    CODE ARGS`): the script may hand it to any program as its first word, so a `--` there (only
    $0, or sys.argv[1]) protects nothing (server/params.py, leading_names)."""
    scripts: list[int] = []
    _command(argv, 0, [], scripts)
    return {name for element in argv[min(scripts) + 1:] for name in leading(element)} if scripts else set()


def option_names(argv: list[str]) -> set[str]:
    """Names whose value a program may read as an option (refused when it starts with '-', unless
    `allow_dash`): those that begin an argument no `--` protects, and every argument of an inline
    script."""
    return leading_names(argv) | script_arguments(argv)


def _command(argv: list[str], base: int, found: list, scripts: list[int]) -> None:
    """The program at argv[base] and what it runs, wrappers seen through."""
    while base < len(argv):
        found += [(name, PROGRAM) for name in placeholders(argv[base])]
        prog, args = program(argv[base]), argv[base + 1:]
        if prog in WRAPPERS:
            if (prog == "env" and any(a.startswith(("-S", "--split-string")) for a in args)) or \
                    (prog == "flock" and any(a == "-c" or a.startswith("--command") for a in args)):
                found += [(n, f"{prog}'s command line") for a in args for n in placeholders(a)]
                return
            base += 1 + _wrapper_words(prog, args)
        elif prog == "find":
            for at in range(base + 1, len(argv)):
                if argv[at] in ("-exec", "-execdir", "-ok", "-okdir"):
                    end = next((j for j in range(at + 1, len(argv)) if argv[j] in (";", "+")), len(argv))
                    _command(argv[:end], at + 1, found, scripts)
            return
        else:
            _interpreter(prog, READERS.get(prog), argv, base + 1, found, scripts)
            return


def _wrapper_words(prog: str, args: list[str]) -> int:
    """How many of a wrapper's args are its own: options, NAME=value words (env), leading operands."""
    takes, takes_long, operands = WRAPPERS[prog]
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            i += 1
            break
        if word.startswith("--"):
            i += 1 if "=" in word or word not in takes_long else 2
        elif word.startswith("-") and len(word) > 1:
            takes_next = next((k for k, ch in enumerate(word[1:]) if ch in takes), None)
            i += 2 if takes_next is not None and takes_next == len(word) - 2 else 1
        elif prog == "env" and "=" in word:
            i += 1
        else:
            break
    return i + operands


def _interpreter(prog: str, reads: Reads | None, argv: list[str], i: int, found: list, scripts: list) -> None:
    """A program's options and operands from argv[i]: placeholders in its code, and where that code is."""
    if reads is None:
        return
    script = f"{prog}'s script"
    given = flagged = False

    def code(at: int, text: str, where: str = script) -> None:
        nonlocal given
        found.extend((n, where) for n in placeholders(text))
        scripts.append(at)
        given = True

    while i < len(argv):
        word = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if word == "--":
            i += 1
            break
        name, eq, value = word.partition("=")
        if name.lower() in reads.code_long:
            code(i if eq else i + 1, value if eq else nxt)
            i += 1 if eq else 2
            continue
        if name in reads.take_long:
            i += 1 if eq else 2
            continue
        if word.startswith("--"):
            i += 1
            continue
        if len(word) > 1 and (word[0] == "-" or (reads.plus and word[0] == "+")):
            at, i = i, i + 1
            for k, ch in enumerate(word[1:], start=2):
                rest = word[k:]
                if ch in reads.flag:
                    flagged = True
                elif ch in reads.code or ch in reads.load:
                    code(at if rest else at + 1, rest or nxt, script if ch in reads.code else PROGRAM)
                    i += 0 if rest else 1
                    break
                elif ch in reads.take:
                    i += 0 if rest else 1
                    break
            continue
        break
    if i >= len(argv):
        return
    if reads.every_operand_code:
        first = i + 1 if prog == "ssh" else i  # ssh's first operand is the host
        found += [(n, f"{prog}'s command") for word in argv[first:] for n in placeholders(word)]
    elif flagged or (not given and reads.first == "code"):
        code(i, argv[i])
    elif not given and reads.first == "program":
        found += [(n, PROGRAM) for n in placeholders(argv[i])]
