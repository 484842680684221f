"""Parameter validation, argv and env building, and that no value can become syntax."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server import params as P
from tests import values as V
from tests.helpers import BIN


def param(**kw) -> P.Param:
    return P.Param(name=kw.pop("name", "x"), **kw)


@pytest.mark.parametrize(("p", "raw", "value"), [
    (param(), "hello world", "hello world"),
    (param(type="multiline"), "a\nb", "a\nb"),
    (param(type="int"), "42", 42),
    (param(type="int"), 7, 7),
    (param(type="int"), 3.0, 3),
    (param(type="float"), "0.25", 0.25),
    (param(type="float"), 2, 2.0),
    (param(type="bool"), True, True),
    (param(type="bool"), "yes", True),
    (param(type="bool"), "off", False),
    (param(type="bool"), None, False),
    (param(type="choice", choices=["a", "b"]), "b", "b"),
    (param(type="multichoice", choices=["a", "b", "c"]), ["c", "a", "c"], ["c", "a"]),
    (param(type="multichoice", choices=["a", "b"]), "a, b", ["a", "b"]),
    (param(type="date"), "2024-02-29", "2024-02-29"),
    (param(type="secret"), "s3cret-enough", "s3cret-enough"),
    (param(), None, None),
    (param(type="int", min=1, max=10), 10, 10),
])
def test_valid_values_are_coerced(p, raw, value):
    assert p.coerce(raw) == value


def test_today_is_a_date():
    assert param(type="date").coerce("today") == dt.date.today().isoformat()


@pytest.mark.parametrize(("p", "raw", "message"), [
    (param(required=True), "", "required"),
    (param(type="multichoice", choices=["a"], required=True), [], "required"),
    (param(), "two\nlines", "single line"),
    (param(type="secret"), "a\rb", "single line"),
    (param(), "nul\0byte", "NUL"),
    (param(type="multiline"), "nul\0byte", "NUL"),
    (param(), "lone \ud800 surrogate", "valid text"),
    (param(), 5, "must be text"),
    (param(pattern=r"v\d+"), "v1x", "must match"),
    (param(pattern=r"v\d+"), "xv1", "must match"),
    (param(type="int"), "4.5", "whole number"),
    (param(type="int"), True, "whole number"),
    (param(type="int"), "1e3", "whole number"),
    (param(type="int"), 2**53, "from -9007199254740991 to 9007199254740991"),
    (param(type="int"), "-10000000000000000000", "from -9007199254740991"),
    (param(type="int"), 1e20, "from -9007199254740991"),
    (param(type="int", min=1), 0, "at least 1"),
    (param(type="int", max=9), 10, "at most 9"),
    (param(type="float"), "nan", "must be a number"),
    (param(type="float"), "inf", "must be a number"),
    (param(type="float"), {"a": 1}, "must be a number"),
    (param(type="float"), 10**400, "must be a number"),  # a whole number past float's range: not a 500
    (param(type="bool"), "maybe", "true or false"),
    (param(type="choice", choices=["a"]), "b", "one of: a"),
    (param(type="choice", choices=["a"]), ["a"], "one of"),
    (param(type="multichoice", choices=["a"]), ["a", "z"], "'z' is not one of"),
    (param(type="multichoice", choices=["a"]), [1], "list of choices"),
    (param(type="date"), "31/12/2024", "date like"),
    (param(type="date"), "2023-02-29", "real date"),
    (param(type="date", min="2024-01-01"), "2023-12-31", "at least 2024-01-01"),
])
def test_invalid_values_are_refused_with_a_message(p, raw, message):
    with pytest.raises(ValueError, match=message):
        p.coerce(raw)


def test_validate_reports_every_bad_field_and_unknown_names():
    params = [param(name="a", required=True), param(name="b", type="int"), param(name="c", default="dflt")]
    with pytest.raises(P.ParamsError) as info:
        P.validate(params, {"b": "x", "zzz": 1})
    assert info.value.fields == {"a": "required", "b": "must be a whole number", "zzz": "no such parameter"}
    assert P.validate(params, {"a": "1"}) == {"a": "1", "b": None, "c": "dflt"}


def test_argv_substitutes_inside_elements_and_expands_standalone_multichoice():
    values = {"env": "prod", "hosts": ["a", "b"], "flag": True, "n": 3, "none": None}
    template = ["deploy", "--env={env}", "{hosts}", "--hosts={hosts}", "{flag}", "{n}", "{none}", "{{literal}}"]
    assert P.build_argv(template, values) == [
        "deploy", "--env=prod", "a", "b", "--hosts=a,b", "true", "3", "", "{literal}"]


def test_env_has_every_parameter_upper_cased():
    assert P.build_env({"tag": "v1", "on": False, "list": ["a", "b"], "none": None}) == {
        "PB_TAG": "v1", "PB_ON": "false", "PB_LIST": "a,b", "PB_NONE": ""}


def test_secrets_are_masked_for_history():
    params = [param(name="user"), param(name="token", type="secret"), param(name="opt", type="secret")]
    values = {"user": "ann", "token": "hunter2", "opt": None}
    assert P.masked(params, values) == {"user": "ann", "token": P.MASK, "opt": None}
    assert P.secret_values(params, values) == ["hunter2"]


# -- no value can add an argument or become shell syntax -----------------------------------

HOSTILE = st.sampled_from([
    "; rm -rf /", "$(id)", "`id`", "a b", "'", '"', "\\", "|", "&&", "&", ">", "<x", "*", "?", "~",
    "-rf", "--help", "{x}", "{{", "$HOME", "${IFS}", "\t", "#", "%s", "a\u00a0b", "é", "\U0001f600",
])
TEXT = st.one_of(HOSTILE, st.text(st.characters(blacklist_characters="\0\n\r", blacklist_categories=("Cs",))),
                 st.lists(HOSTILE).map("".join))
CHOICES = ["a b", "$(id)", ";", "x"]


def values_for(type_: str):
    return {
        "text": TEXT,
        "secret": TEXT,
        "multiline": st.lists(TEXT, max_size=3).map("\n".join),
        "int": st.integers(-P.MAX_INT, P.MAX_INT),
        "float": st.floats(allow_nan=False, allow_infinity=False),
        "bool": st.booleans(),
        "choice": st.sampled_from(CHOICES),
        "multichoice": st.lists(st.sampled_from(CHOICES), unique=True),
        "date": st.dates().map(dt.date.isoformat),
    }[type_]


@st.composite
def typed_value(draw):
    type_ = draw(st.sampled_from([t for t in P.TYPES if t not in ("secret", "file")]))
    # leads=False: these are about splitting; where '-' may begin an argument is tested below
    p = param(type=type_, choices=CHOICES if "choice" in type_ else [], leads=False)
    return p, p.coerce(draw(values_for(type_)))


@settings(max_examples=300, deadline=None)
@given(typed_value(), st.sampled_from(["{x}", "--opt={x}", "pre{x}post"]))
def test_no_value_adds_an_argument(pv, element):
    p, value = pv
    argv = P.build_argv(["cmd", element, "--end"], {"x": value})
    standalone_list = element == "{x}" and isinstance(value, list)
    expected_middle = value if standalone_list else [element.replace("{x}", P.as_text(value))]
    assert argv == ["cmd", *expected_middle, "--end"]


def _echo_args(argv: list[str], env: dict | None = None) -> list[str]:
    out = subprocess.run(argv, capture_output=True, env=env, check=True).stdout
    return out.decode().split("\0")[:-1]


@settings(max_examples=60, deadline=None)
@given(typed_value())
def test_values_reach_a_real_process_byte_for_byte(pv):
    p, value = pv
    argv = P.build_argv(["printf", "%s\\0", "{x}", "--x={x}"], {"x": value})
    expected = (value if isinstance(value, list) else [P.as_text(value)]) + ["--x=" + P.as_text(value)]
    assert _echo_args(argv) == expected


@settings(max_examples=60, deadline=None)
@given(TEXT)
def test_shell_jobs_get_values_only_through_the_environment(value):
    env = {"PATH": "/usr/bin:/bin", **P.build_env({"x": value})}
    assert _echo_args(["/bin/sh", "-c", 'printf "%s\\0" "$PB_X"'], env) == [value]


# -- a value never becomes an option ------------------------------------------------------

@pytest.mark.parametrize(("template", "leading"), [
    (["sort", "{file}"], {"file"}),
    (["cp", "{a}.txt", "x{b}", "--c={c}", "{{d}}", "{e}{f}"], {"a", "e", "f"}),
    (["git", "checkout", "--", "{file}"], set()),
    (["cp", "--", "{src}", "{dst}.bak"], set()),
    (["sudo", "--", "rm", "{file}"], {"file"}),  # that -- ends sudo's options, not rm's
    (["tar", "-cf", "out", "--", "dir", "{x}"], {"x"}),  # strict: a fixed word after -- resets it
    (["cmd", "{a}", "--", "{b}"], {"a"}),
])
def test_leading_names_are_placeholders_that_begin_an_element_with_no_dashdash_before(template, leading):
    assert P.leading_names(template) == leading


@pytest.mark.parametrize(("p", "raw", "message"), [
    (param(), "--output=victim.txt", "must not start with '-' (it would be read as an option)"),
    (param(), "-", "must not start with '-'"),
    (param(type="multiline"), "-rf\nmore", "must not start with '-'"),
    (param(type="int"), -5, "must not be negative here (-5 would be read as an option)"),
    (param(type="int"), " -7", "must not be negative here"),
    (param(type="float"), "-0.5", "must not be negative here (-0.5 would be read as an option)"),
    (param(type="float", min=-10), -1e-3, "must not be negative here"),
    (param(type="choice", choices=["-v", "q"]), "-v", "must not start with '-'"),
    (param(type="multichoice", choices=["a", "-v"]), ["a", "-v"], "'-v' must not start with '-'"),
])
def test_a_value_that_would_begin_an_argument_with_a_dash_is_refused(p, raw, message):
    with pytest.raises(P.LeadingDash, match=re.escape(message)):
        p.coerce(raw)
    with pytest.raises(P.ParamsError) as info:
        P.validate([p], {"x": raw})
    assert info.value.fields["x"].endswith("would be read as an option)")


@pytest.mark.parametrize(("p", "raw", "value"), [
    (param(allow_dash=True), "--output=x", "--output=x"),
    (param(leads=False), "--output=x", "--output=x"),  # --x={x}, or after --
    (param(type="int", allow_dash=True), -5, -5),
    (param(type="int"), "-0", 0),
    (param(type="float"), "-0.0", 0.0),  # written 0.0, and min = 0 allows it
    (param(type="float", min=0), -0.0, 0.0),
    (param(type="secret"), "-starts-with-a-dash", "-starts-with-a-dash"),  # never in argv
    (param(), "a-b --c", "a-b --c"),
])
def test_a_dash_is_fine_where_allowed_where_it_cannot_lead_and_in_secrets(p, raw, value):
    assert p.coerce(raw) == value
    assert P.as_text(p.coerce(raw))[:1] != "-" or p.allow_dash or not p.leads or p.secret


def _run_cli(jobs, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BIN, "run", *args, "--jobs", str(jobs), "--data-dir", str(jobs.parent / "cli-data")],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_sort_cannot_be_made_to_overwrite_a_file_through_its_argument(pushbutton, write_jobs, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "in.txt").write_text("b\na\n")
    jobs = write_jobs("""
        [job:sort]
        command = sort {file}
        param.file.type = text
        [job:sort-safe]
        command = sort -- {file}
        param.file.type = text
        """)
    pb = pushbutton(jobs)
    res = pb.client.post("/api/jobs/sort/runs", json={"params": {"file": "--output=victim.txt"}})
    assert res.status_code == 400, res.text
    assert res.json()["fields"] == {"file": "must not start with '-' (it would be read as an option)"}
    assert pb.client.get("/api/runs").json()["runs"] == []  # nothing recorded, nothing ran
    assert victim.read_text() == "precious\n"

    cli = _run_cli(jobs, "sort", "-p", "file=--output=victim.txt")
    assert cli.returncode == 2 and "parameter file: must not start with '-'" in cli.stderr, cli.stderr
    assert victim.read_text() == "precious\n"

    # after --, sort reads no options: the same value is a file name, which does not exist
    run_id = pb.start_run("sort-safe", file="--output=victim.txt")["id"]
    run = pb.wait(run_id)
    assert run["state"] == "failed" and "--output=victim.txt" in " ".join(pb.output(run_id))
    assert victim.read_text() == "precious\n"
    assert pb.output(pb.start_run("sort", file="in.txt")["id"]) == ["a", "b"]  # ordinary values still work


def test_negative_numbers_are_refused_unless_min_or_allow_dash_says_otherwise(pushbutton, write_jobs):
    pb = pushbutton(write_jobs(f"""
        [job:add]
        command = {sys.executable} -c "import sys; print(sum(float(a) for a in sys.argv[1:]))" {{n}} {{r}}
        param.n.type = int
        param.r.type = float
        [job:add-negative]
        command = {sys.executable} -c "import sys; print(sum(float(a) for a in sys.argv[1:]))" {{n}} {{r}}
        param.n.type = int
        param.n.allow_dash = yes
        param.r.type = float
        param.r.min = 0
        """))
    res = pb.client.post("/api/jobs/add/runs", json={"params": {"n": -5, "r": -0.5}})
    assert res.status_code == 400
    assert res.json()["fields"] == {"n": "must not be negative here (-5 would be read as an option)",
                                    "r": "must not be negative here (-0.5 would be read as an option)"}
    res = pb.client.post("/api/jobs/add-negative/runs", json={"params": {"n": -5, "r": -0.5}})
    assert res.status_code == 400 and res.json()["fields"] == {"r": "must be at least 0.0"}
    assert pb.output(pb.start_run("add-negative", n=-5, r=0.5)["id"]) == ["-4.5"]
    assert pb.output(pb.start_run("add", n=5, r=0.5)["id"]) == ["5.5"]


def test_a_value_after_an_inline_scripts_dashdash_cannot_become_sorts_option(pushbutton, write_jobs, tmp_path):
    """`sh -c 'sort "$1"' -- {file}`: the `--` is $0, so `--output=VICTIM` reached sort as an option
    and emptied the file. It is refused before anything runs."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    pb = pushbutton(write_jobs("""
        [job:sorted]
        command = sh -c 'sort "$1"' -- {file}
        param.file.type = text
        """))
    res = pb.client.post("/api/jobs/sorted/runs", json={"params": {"file": f"--output={victim}"}})
    assert res.status_code == 400 and "would be read as an option" in res.json()["fields"]["file"], res.text
    assert victim.read_text() == "precious\n"


@pytest.fixture(scope="module")
def values_server(tmp_path_factory):
    pb = V.server(tmp_path_factory.mktemp("values"))
    yield pb
    pb.stop()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=V.cases())
def test_every_type_in_argv_and_env_is_refused_or_arrives_and_never_leads_with_a_dash(values_server, case):
    """Through a real server and real processes (tests/values.py); the remote twin is in tests/ssh."""
    V.check_case(values_server, *case)
