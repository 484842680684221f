"""jobs.ini fuzzed: arbitrary text, and valid files mutated line by line, never crash `load`
(the function `check`, the server and a live reload all call), and every problem it reports is
`FILE:LINE: message` on one line, with a line that exists in the file."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server import catalog as C
from server.catalog import CatalogError, load
from server.catalog_notify import NOTIFY_KEYS
from server.catalog_schedules import SCHEDULE_KEYS

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"```ini\n(.*?)```", re.S)


def _seeds() -> list[str]:
    """The repo's jobs.ini, the page tests' files and every ini example in docs/."""
    files = [ROOT / "jobs.ini", *sorted((ROOT / "tests" / "page").glob("*.ini"))]
    seeds = [f.read_text() for f in files]
    for doc in sorted((ROOT / "docs").glob("*.md")):
        seeds += [block for block in FENCE.findall(doc.read_text()) if "[" in block]
    return seeds


SEEDS = _seeds()
SECTIONS = ["[pushbutton]", "[job:x]", "[job:deploy]", "[host:web1]", "[group:web]", "[team:ops]",
            "[schedule:nightly]", "[notify:ops]", "[job:]", "[]", "[job:a b]", "[weird]", "[job:x"]
KEYS = sorted({*C.SETTINGS_KEYS, *C.JOB_KEYS, *C.HOST_KEYS, *C.GROUP_KEYS, *NOTIFY_KEYS, *SCHEDULE_KEYS,
               *C.TEAM_KEYS, "env.X", "env.1", "param.n.type", "param.n.default", "param.n.choices",
               "param.n.min", "param.n.max", "param.f.type", "param.n", "param..type", "param.n.nope"})
VALUES = st.one_of(
    st.sampled_from(["", "yes", "no", "0", "-1", "1", "99999999999999999999", "1e309", "nan", "5s", "10m", "1x",
                     "int", "float", "bool", "text", "choice", "secret", "file", "date", "{n}", "{missing}",
                     "{", "}", "a,b,,c", "* * * * *", "61 25 * * *", "Europe/Nowhere", "json://host/", "web1",
                     "web1,web1", "@web", "mailto://", "/nonexistent/path", "~", "..", "'unclosed", '"']),
    st.text(max_size=40).filter(lambda v: "\n" not in v and "\r" not in v),
    st.text(alphabet="x{}é😀\u202e\u2028\x00,. -=[]:", min_size=500, max_size=5000),
)
LINE = st.one_of(
    st.sampled_from(SECTIONS),
    st.builds(lambda k, v: f"{k} = {v}", st.sampled_from(KEYS), VALUES),
    st.builds(lambda k, v: f"{k}={v}", st.text(max_size=20), VALUES),
    st.sampled_from(["", "# comment", "; comment", "  continued", "\tindented = 1", "=", "= value", "key",
                     "[job:x]\n[job:x]", "command = a\n  b"]),
    st.text(max_size=80),
)


@st.composite
def mutated(draw) -> str:
    lines = draw(st.sampled_from(SEEDS)).split("\n")
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(lines)))
        op = draw(st.sampled_from(["drop", "duplicate", "swap", "insert", "value", "unicode"]))
        if op == "insert" or not lines:
            lines.insert(at, draw(LINE))
            continue
        at = min(at, len(lines) - 1)
        if op == "drop":
            del lines[at]
        elif op == "duplicate":
            lines.insert(at, lines[at])
        elif op == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif op == "value" and "=" in lines[at]:
            lines[at] = lines[at].split("=", 1)[0] + "= " + draw(VALUES)
        else:
            half = len(lines[at]) // 2  # unicode, a NUL or a line break inside a line
            lines[at] = lines[at][:half] + draw(st.text(max_size=3)) + lines[at][half:]
    return "\n".join(lines)


def assert_only_located_problems(text: str | bytes) -> None:
    """`load` either succeeds or raises CatalogError; each problem and warning names the file and
    a line of it, on one line."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "jobs.ini"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        try:
            problems = load(path).warnings
        except CatalogError as exc:
            problems = exc.problems
            assert problems, "a CatalogError without a problem"
        lines = max(1, len(path.read_text(encoding="utf-8", errors="replace").split("\n")))
        for problem in problems:
            shown = str(problem)
            assert shown.startswith(f"{path.resolve()}:{problem.line}: "), shown
            assert 1 <= problem.line <= lines, shown
            assert problem.message.strip(), shown
            assert "\n" not in shown and "\r" not in shown, shown


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.text(max_size=2000))
def test_arbitrary_text_gives_a_catalog_or_located_problems(text):
    assert_only_located_problems(text)


@FUZZ
@given(st.binary(max_size=2000) | st.lists(LINE, max_size=20).map(lambda ls: "\n".join(ls).encode() + b"\xff\xfe\n"))
def test_bytes_that_are_not_utf8_give_a_located_problem(data):
    assert_only_located_problems(data)


@FUZZ
@given(st.lists(LINE, max_size=40).map("\n".join))
def test_random_sections_keys_and_values_give_a_catalog_or_located_problems(text):
    assert_only_located_problems(text)


@FUZZ
@given(mutated())
def test_mutated_valid_files_give_a_catalog_or_located_problems(text):
    assert_only_located_problems(text)


def test_the_seed_files_load():
    """The mutations start from files that are valid (or fail only on purpose, located)."""
    assert len(SEEDS) > 5
    load(ROOT / "jobs.ini")
    for seed in SEEDS:
        assert_only_located_problems(seed)


PATH_KEYS = [("job:x", "workdir"), ("host:h", "identity"), ("host:h", "known_hosts"), ("pushbutton", "certfile"),
             ("pushbutton", "keyfile"), ("pushbutton", "ldap_ca_file"), ("pushbutton", "ldap_bind_password_file"),
             ("pushbutton", "oidc_client_secret_file"), ("schedule:s", "timezone")]


def test_every_key_naming_a_file_or_zone_takes_any_name_as_a_located_problem(tmp_path):
    """The class behind the crashes the fuzzer found (a NUL, a name longer than the OS allows):
    each key whose value is opened or looked up as a file."""
    for section, key in PATH_KEYS:
        for value in ("x" * 5000, "/" + "y" * 300 + "/z", "a\0b", str(tmp_path), "", "~no-such-user/f", "../" * 50):
            head = "[job:x]\ncommand = true\n" if section != "job:x" else ""
            assert_only_located_problems(f"{head}[{section}]\n{key} = {value}\n")
