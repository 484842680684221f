"""One property over every parameter type and every place a value can go, through a real server
(local here, remote in tests/ssh): a value is either refused with a field error, or reaches the
real process byte for byte, in argv and in $PB_X; and a value is refused for starting with '-'
exactly where it would begin an argument the program still parses for options, unless the
parameter allows it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from hypothesis import event
from hypothesis import strategies as st

from server import params as P
from tests.helpers import Pushbutton, lines_of

# Where {x} stands in the command (None: the command does not name it; "shell": shell = yes).
PLACES = {"alone": "{x}", "lead": "{x}.end", "inside": "--x={x}", "dashdash": "-- {x}", "env": None,
          "shell": None}
# The value can begin an argument the program parses. Every place's command is an inline script
# (PRINT_ARGS), so after `-- ` too: there the `--` is only the script's $1, and the script could
# hand the value to any program as its first word (server/code_args.py, script_arguments).
LEADING = {"alone", "lead", "dashdash", "env", "shell"}
SAFE_CHOICES = ["a b", "$(id)", ";", "x"]
DASHED_CHOICES = [*SAFE_CHOICES, "-v", "--output=victim"]
SHELL_PRINT = 'printf %s "$PB_X" | od -An -tx1 -v'
PRINT_ARGS = f"sh -c 'for a; do printf %s \"$a\" | od -An -tx1 -v; echo .; done; {SHELL_PRINT}' sh"


def places(type_: str) -> list[str]:
    return ["env", "shell"] if type_ == "secret" else list(PLACES)


def choices(place: str, allow: bool) -> list[str]:
    """Ops may list choices starting with '-' only where they cannot lead, or where allowed."""
    return DASHED_CHOICES if allow or place not in LEADING else SAFE_CHOICES


def job_id(type_: str, place: str, allow: bool) -> str:
    return f"{type_}-{place}-{'allow' if allow else 'plain'}"


def server(folder: Path, prefix: str = "", extra: str = "") -> Pushbutton:
    """One server for every example of a property (started per module: hypothesis calls the test
    many times within one fixture's life)."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = folder / "jobs.ini"
    jobs.write_text(prefix + jobs_ini(extra))
    return Pushbutton(jobs, folder / "data", folder / "server.log").start()


# A file is uploaded, never typed into JSON: tests/test_uploads.py
TYPED = [t for t in P.TYPES if t != "file"]


def jobs_ini(extra: str = "") -> str:
    """A job per type, place and allow_dash; `extra` goes into every job (e.g. targets)."""
    out = []
    for type_ in TYPED:
        for place in places(type_):
            for allow in (False, True):
                if place == "shell":
                    command = f"command = {SHELL_PRINT}\nshell = yes\n"
                else:
                    command = f"command = {PRINT_ARGS} {PLACES[place] or ''}\n"
                section = f"[job:{job_id(type_, place, allow)}]\n{command}{extra}param.x.type = {type_}\n"
                if "choice" in type_:
                    section += f"param.x.choices = {', '.join(choices(place, allow))}\n"
                if allow:
                    section += "param.x.allow_dash = yes\n"
                out.append(section)
    return "\n".join(out)


DASH = st.sampled_from(["-", "--", "-5", "--output=victim.txt", "-rf", "- item"])
HOSTILE = st.sampled_from(["; rm -rf /", "$(id)", "`id`", "a b", "'", '"', "\\", "|", "&&", ">", "*", "~",
                           "{x}", "{{", "$HOME", "\t", "#", "%s", "a\u00a0b", "é", "\U0001f600", ""])
CHARS = st.characters(blacklist_characters="\0", blacklist_categories=("Cs",))
TEXT = st.one_of(HOSTILE, st.text(CHARS, max_size=20),
                 st.tuples(DASH, st.text(CHARS, max_size=8), HOSTILE).map("".join))


def raw_values(type_: str, listed: list[str]):
    """What a client may send for this type: valid, invalid, and starting with '-'."""
    return {
        "text": TEXT,
        "multiline": st.lists(TEXT, max_size=3).map("\n".join),
        "secret": st.tuples(TEXT, st.just("Zq secret padding")).map("".join),  # never in hex, long enough
        "int": st.one_of(st.integers(-P.MAX_INT, P.MAX_INT), st.integers(-(10**20), 10**20),
                         st.sampled_from([-1, 0, 1, "-0", " -7 ", P.MAX_INT + 1])),
        "float": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([-0.0, "-1e-3"])),
        "bool": st.booleans(),
        "choice": st.sampled_from(DASHED_CHOICES),
        "multichoice": st.lists(st.sampled_from(DASHED_CHOICES), max_size=3),
        "date": st.dates().map(dt.date.isoformat),
    }[type_]


@st.composite
def cases(draw):
    type_ = draw(st.sampled_from(TYPED))
    place = draw(st.sampled_from(places(type_)))
    allow = draw(st.booleans())
    return type_, place, allow, draw(raw_values(type_, choices(place, allow)))


def _groups(lines: list[str]) -> list[bytes]:
    """`od` hex of each argument, `.` after each, then of $PB_X -> the bytes of each."""
    groups, current = [], []
    for line in lines:
        if line == ".":
            groups.append(bytes.fromhex("".join(current)))
            current = []
        else:
            current += line.split()
    return [*groups, bytes.fromhex("".join(current))]


def _stdout(pb: Pushbutton, run_id: int) -> list[str]:
    """The run's stdout lines from its SSE stream (split on LF only: values hold U+0085 and friends)."""
    return lines_of(pb.events(run_id), "stdout")


def check_case(pb: Pushbutton, type_: str, place: str, allow: bool, raw) -> None:
    """The property, for one value sent to one job."""
    res = pb.client.post(f"/api/jobs/{job_id(type_, place, allow)}/runs", json={"params": {"x": raw}})
    try:  # the value as its type makes it; whether '-' may begin it is what is under test
        value = P.Param(name="x", type=type_, choices=choices(place, allow), leads=False).coerce(raw)
    except ValueError:
        event("refused: not valid for its type")
        assert res.status_code == 400 and set(res.json()["fields"]) == {"x"}, res.text
        return
    text = P.as_text(value)
    items = value if isinstance(value, list) else [text]
    dashed = any(P.as_text(i).startswith("-") for i in items)
    if dashed and place in LEADING and not allow and type_ != "secret":
        assert res.status_code == 400, f"{raw!r} would begin an argument of {place}: {res.text}"
        assert "would be read as an option" in res.json()["fields"]["x"], res.text
        event("refused: would begin an argument with '-'")
        return
    assert res.status_code == 202, res.text
    event("ran, starting with '-'" if dashed else "ran")
    run_id = res.json()["run"]["id"]
    lines = _stdout(pb, run_id)
    run = pb.run(run_id)
    assert run["state"] == "succeeded", (run, lines)
    args = {"alone": items, "lead": [text + ".end"], "inside": ["--x=" + text], "dashdash": ["--", *items],
            "env": [], "shell": []}[place]
    got = _groups(lines)
    assert got == [a.encode() for a in args] + [text.encode()], (raw, lines)
    if not allow and type_ != "secret":  # the rule itself, on what the process received
        exposed = {"alone": got[:-1], "lead": got[:-1], "env": got[-1:], "shell": got[-1:]}.get(place, [])
        assert not any(arg.startswith(b"-") for arg in exposed), (raw, got)
