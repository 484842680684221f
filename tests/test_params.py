"""Parameter validation, argv and env building, and that no value can become syntax."""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server import params as P


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
    (param(type="secret"), "s3cret", "s3cret"),
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
    (param(type="int", min=1), 0, "at least 1"),
    (param(type="int", max=9), 10, "at most 9"),
    (param(type="float"), "nan", "must be a number"),
    (param(type="float"), "inf", "must be a number"),
    (param(type="float"), {"a": 1}, "must be a number"),
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
        "int": st.integers(-(10**20), 10**20),
        "float": st.floats(allow_nan=False, allow_infinity=False),
        "bool": st.booleans(),
        "choice": st.sampled_from(CHOICES),
        "multichoice": st.lists(st.sampled_from(CHOICES), unique=True),
        "date": st.dates().map(dt.date.isoformat),
    }[type_]


@st.composite
def typed_value(draw):
    type_ = draw(st.sampled_from([t for t in P.TYPES if t != "secret"]))
    p = param(type=type_, choices=CHOICES if "choice" in type_ else [])
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
