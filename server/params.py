"""Typed job parameters: coerce and validate user input, then place it into argv and env.

The command template is split into argv by the catalog *before* any value is known, so a value
is only ever substituted inside one argv element: it can never become a second argument or shell
syntax, whatever it contains. One element is still read by the program: its start. A value that
can begin an element the program parses for options, and starts with `-`, would change what the
command does, so it is refused unless jobs.ini allows it (`leading_names`, `Param.leads`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from typing import Any

from server.files.upload_params import DEFAULT_MAX_SIZE, Upload, accepted, show_size

TYPES = ("text", "multiline", "int", "float", "bool", "choice", "multichoice", "date", "secret", "file")
MASK = "********"
# Shorter secrets cannot be masked safely: the masks would show where every chance occurrence is.
SECRET_MIN_LENGTH = 8
# The largest whole number every JSON reader (a browser's included) and the event log hold exactly.
MAX_INT = 2**53 - 1
TRUE_WORDS = {"1", "yes", "true", "on"}
FALSE_WORDS = {"0", "no", "false", "off"}
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# `{{` and `}}` are literal braces; `{name}` is a placeholder.
PLACEHOLDER_RE = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")

Value = str | int | float | bool | list[str] | Upload | None


class LeadingDash(ValueError):
    """A value that would begin an argument with `-`, where the program reads it as an option."""


class ParamsError(ValueError):
    """Bad parameter values, one message per field; nothing may start."""

    def __init__(self, fields: dict[str, str]):
        self.fields = fields
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))


@dataclass
class Param:
    name: str
    type: str = "text"
    label: str = ""
    help: str = ""
    required: bool = False
    default: Value = None
    pattern: str | None = None
    min: int | float | str | None = None
    max: int | float | str | None = None
    choices: list[str] = field(default_factory=list)
    allow_dash: bool = False  # jobs.ini: a value may start with '-' where it begins an argument
    choices_from: Any = None  # server.choices.Source: the list comes from a command, checked at start
    max_size: int = DEFAULT_MAX_SIZE  # file: bytes (server/files/upload_params.py)
    accept: list[str] = field(default_factory=list)  # file: extensions and media types
    # Set by the catalog from the command: may the value begin an argument that the program still
    # parses for options (or reach one we cannot see, through $PB_NAME)? True until known.
    leads: bool = True

    @property
    def secret(self) -> bool:
        return self.type == "secret"

    def public(self) -> dict[str, Any]:
        """The form description the API and the page use."""
        return {
            "name": self.name,
            "type": self.type,
            "label": self.label or self.name.replace("_", " ").capitalize(),
            "help": self.help,
            "required": self.required,
            "default": None if self.secret else self.default,
            "choices": self.choices or None,
            "min": self.min,
            "max": self.max,
            "pattern": self.pattern,
            "choices_from": {"inputs": self.choices_from.inputs} if self.choices_from else None,
            **({"max_size": self.max_size, "accept": self.accept} if self.type == "file" else {}),
        }

    def coerce(self, raw: Any) -> Value:
        """Turn JSON or CLI input into this parameter's value, or raise ValueError."""
        if raw is None or raw == "" or raw == []:
            if self.type == "bool":
                return False
            if self.required:
                raise ValueError("required")
            return None
        value = _COERCERS[self.type](self, raw)
        self._check_range(value)
        if self.pattern is not None and isinstance(value, str) and not re.fullmatch(self.pattern, value):
            raise ValueError(f"must match {self.pattern}")
        self._check_dash(value)
        return value

    def _check_dash(self, value: Value) -> None:
        """Refuse a value that would begin an argument with '-'. Secrets are exempt: they never
        reach argv, and a script that put one alone on a command line would publish it anyway."""
        if self.allow_dash or not self.leads or self.secret:
            return
        for item in value if isinstance(value, list) else [value]:
            text = as_text(item)
            if not text.startswith("-"):
                continue
            if self.type in ("int", "float"):
                raise LeadingDash(f"must not be negative here ({text} would be read as an option)")
            what = f"{text!r} " if isinstance(value, list) else ""
            raise LeadingDash(f"{what}must not start with '-' (it would be read as an option)")

    def _check_range(self, value: Value) -> None:
        if isinstance(value, Upload) and value.size > self.max_size:
            raise ValueError(f"larger than the {show_size(self.max_size)} allowed")
        if self.type not in ("int", "float", "date"):
            return
        if self.min is not None and value < self.min:  # type: ignore[operator]
            raise ValueError(f"must be at least {self.min}")
        if self.max is not None and value > self.max:  # type: ignore[operator]
            raise ValueError(f"must be at most {self.max}")


def _text(p: Param, raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError("must be text")
    if "\0" in raw:
        raise ValueError("must not contain a NUL character")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON \ud800 escape
        raise ValueError("must be valid text") from None
    if p.type != "multiline" and ("\n" in raw or "\r" in raw):
        raise ValueError("must be a single line")
    if p.type == "secret" and len(raw) < SECRET_MIN_LENGTH:
        raise ValueError(f"must be at least {SECRET_MIN_LENGTH} characters: "
                         "a shorter secret cannot be masked safely in output")
    return raw


def _file(p: Param, raw: Any) -> Upload:
    """Only a file the server received itself (server/files/uploads.py): a path or a name given
    as text is refused, or a request could point a job at any file of the server's."""
    if isinstance(raw, dict):  # a rerun: history keeps the name, size and SHA-256, never the file
        raise ValueError("choose the file again: files are not kept after a run")
    if not isinstance(raw, Upload):
        raise ValueError("must be a file uploaded with the form (multipart/form-data)")
    if not accepted(p.accept, raw.name):
        raise ValueError("must be one of: " + ", ".join(p.accept))
    return raw


def _int(p: Param, raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError("must be a whole number")
    if isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and re.fullmatch(r"\s*[+-]?\d{1,30}\s*", raw):
        value = int(raw)
    else:
        raise ValueError("must be a whole number")
    if abs(value) > MAX_INT:
        raise ValueError(f"must be a whole number from -{MAX_INT} to {MAX_INT}")
    return value


def _float(p: Param, raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError("must be a number")
    try:
        value = float(raw) if isinstance(raw, (int, float, str)) else math.nan
    except (ValueError, OverflowError):  # OverflowError: a whole number (JSON's 1 and 400 zeros) past float's range
        value = math.nan
    if not math.isfinite(value):
        raise ValueError("must be a number")
    return value + 0.0  # -0.0 becomes 0.0, which min = 0 allows and which is written "0.0"


def _bool(p: Param, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return raw.strip().lower() in TRUE_WORDS
    raise ValueError("must be true or false")


def _choice(p: Param, raw: Any) -> str:
    if p.choices_from is not None:  # one line of text; the current list is checked at start (server/choices.py)
        return _text(p, raw)
    if not isinstance(raw, str) or raw not in p.choices:
        raise ValueError("must be one of: " + ", ".join(p.choices))
    return raw


def _multichoice(p: Param, raw: Any) -> list[str] | None:
    items = split_list(raw) if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ValueError("must be a list of choices")
    if p.choices_from is not None:
        items = [_text(p, i) for i in items]
    bad = [i for i in items if i not in p.choices and p.choices_from is None]
    if bad:
        raise ValueError(f"{bad[0]!r} is not one of: " + ", ".join(p.choices))
    values = list(dict.fromkeys(items))
    if not values and p.required:
        raise ValueError("required")
    return values or None


def _date(p: Param, raw: Any) -> str:
    if isinstance(raw, str) and raw.strip().lower() == "today":
        return dt.date.today().isoformat()
    if not isinstance(raw, str) or not DATE_RE.match(raw):
        raise ValueError("must be a date like 2024-12-31")
    try:
        return dt.date.fromisoformat(raw).isoformat()
    except ValueError:
        raise ValueError("must be a real date like 2024-12-31") from None


_COERCERS = {
    "text": _text,
    "multiline": _text,
    "secret": _text,
    "int": _int,
    "float": _float,
    "bool": _bool,
    "choice": _choice,
    "multichoice": _multichoice,
    "date": _date,
    "file": _file,
}


def split_list(text: str) -> list[str]:
    """`a, b ,c` -> ['a', 'b', 'c']: the one list syntax of jobs.ini and of CLI values."""
    return [item.strip() for item in text.split(",") if item.strip()]


def validate(params: list[Param], raw: dict[str, Any]) -> dict[str, Value]:
    """All values of a run, defaults filled in; raises ParamsError naming every bad field."""
    if not isinstance(raw, dict):
        raise ParamsError({"": "params must be an object"})
    known = {p.name for p in params}
    errors = {name: "no such parameter" for name in raw if name not in known}
    values: dict[str, Value] = {}
    for p in params:
        given = raw.get(p.name, p.default)
        try:
            values[p.name] = p.coerce(given)
        except ValueError as exc:
            errors[p.name] = str(exc)
    if errors:
        raise ParamsError(errors)
    return values


def as_text(value: Value) -> str:
    """One value as it appears inside an argv element or an environment variable."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Upload):
        return str(value.path)
    return str(value)


def substitute(template: str, values: dict[str, Value]) -> str:
    """Replace `{name}` in one string; `{{`/`}}` are literal braces."""

    def one(m: re.Match[str]) -> str:
        if m.group(1) is None:
            return m.group(0)[0]
        return as_text(values.get(m.group(1)))

    return PLACEHOLDER_RE.sub(one, template)


def placeholders(template: str) -> list[str]:
    return [m.group(1) for m in PLACEHOLDER_RE.finditer(template) if m.group(1)]


def leading(element: str) -> list[str]:
    """The placeholders an element begins with (only other placeholders before them)."""
    names, pos = [], 0
    for m in PLACEHOLDER_RE.finditer(element):
        if m.start() != pos or m.group(1) is None:
            break
        names.append(m.group(1))
        pos = m.end()
    return names


def leading_names(template: list[str]) -> set[str]:
    """Names whose value can begin an argv element that the program still parses for options:
    `{name}` leading an element, unless the nearest earlier element that does not itself begin
    with a placeholder is `--`. Strict on purpose: in `sudo -- rm {file}` the `--` ends sudo's
    options, not rm's, so `{file}` still leads."""
    names: set[str] = set()
    anchor = ""
    for element in template:
        first = leading(element)
        if not first:
            anchor = element
        elif anchor != "--":
            names.update(first)
    return names


def build_argv(template: list[str], values: dict[str, Value]) -> list[str]:
    """argv from a pre-split template: each element stays one element, except that a
    multichoice standing alone as an element becomes one element per chosen value."""
    argv: list[str] = []
    for element in template:
        m = PLACEHOLDER_RE.fullmatch(element)
        if m and m.group(1) and isinstance(values.get(m.group(1)), list):
            argv.extend(values[m.group(1)])  # type: ignore[arg-type]
        else:
            argv.append(substitute(element, values))
    return argv


def build_env(values: dict[str, Value]) -> dict[str, str]:
    """`PB_<NAME>` for every parameter: the only way a secret reaches the process. A file's is its
    path; `PB_<NAME>_FILENAME` the name the user gave it."""
    env = {"PB_" + name.upper(): as_text(value) for name, value in values.items()}
    env.update({f"PB_{name.upper()}_FILENAME": v.name for name, v in values.items() if isinstance(v, Upload)})
    return env


def masked(params: list[Param], values: dict[str, Value]) -> dict[str, Value]:
    """Values as history and the API may show them."""
    secret = {p.name for p in params if p.secret}
    return {k: (MASK if k in secret and v else v.public() if isinstance(v, Upload) else v) for k, v in values.items()}


def secret_values(params: list[Param], values: dict[str, Value]) -> list[str]:
    return [str(values[p.name]) for p in params if p.secret and values.get(p.name)]
