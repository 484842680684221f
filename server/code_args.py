"""Where a command's argv holds code rather than data: the program itself, and the script of an
interpreter's `-c` (`sh -c 'echo {name}'`). A placeholder there hands the user the program: a
value `$(id)` in that script runs `id`, though no shell ever parses the command line itself.
`check` refuses free text there (server/catalog_params.py)."""

from __future__ import annotations

import os
import re

from server.params import placeholders

SHELLS = ("sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "busybox")
# program -> the options whose next argument is code it runs
CODE_OPTIONS = {
    **{shell: ("-c",) for shell in SHELLS},
    "python": ("-c",), "perl": ("-e", "-E"), "ruby": ("-e",), "node": ("-e", "--eval", "-p", "--print"),
    "php": ("-r",), "pwsh": ("-c", "-command"), "powershell": ("-c", "-command"), "osascript": ("-e",),
}
FREE_TYPES = ("text", "multiline")  # values a user writes freely; the others are numbers, dates or ops' lists
_VERSION = re.compile(r"(?<=[a-z])[0-9.]+$")  # python3.11 -> python


def program(element: str) -> str:
    name = os.path.basename(element).lower().removesuffix(".exe")
    return _VERSION.sub("", name)


def code_placeholders(argv: list[str]) -> list[tuple[str, str]]:
    """(name, where) for each placeholder in code: `where` is "the program" or "PROG's script".
    `env [NAME=value ...] PROG` is seen through."""
    found = [(name, "the program") for name in placeholders(argv[0])] if argv else []
    start = 0
    while start < len(argv) and (program(argv[start]) == "env" or (start and "=" in argv[start])):
        start += 1
    if start >= len(argv):
        return found
    prog = program(argv[start])
    options = CODE_OPTIONS.get(prog, ())
    for option, element in zip(argv[start + 1:], argv[start + 2:], strict=False):  # each with the next
        short = prog in SHELLS and re.fullmatch(r"-[a-z]*c[a-z]*", option)  # sh -ec SCRIPT
        if option.lower() in options or short:
            found += [(name, f"{prog}'s script") for name in placeholders(element)]
    return found
