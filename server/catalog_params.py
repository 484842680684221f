"""A job's parameters and command, checked together when jobs.ini is read.

The reader (`server.catalog._Reader`) mixes this in: it provides `problem`, `warning`, `convert`
and `lines`. Kept apart because the checks that tie parameters to the command (placeholders,
secrets, and where a value could begin an argument the program reads as an option) are their own
domain.
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING

from server import choices as C
from server.catalog_values import parse_bool, parse_duration, positive_duration
from server.code_args import FREE_TYPES, code_placeholders, option_names
from server.files.upload_params import JSON_PART, parse_accept, parse_size
from server.params import TYPES, LeadingDash, Param, placeholders, split_list

if TYPE_CHECKING:
    from server.catalog import Job

PARAM_KEYS = ("type", "label", "help", "default", "required", "pattern", "min", "max", "choices",
              "allow_dash", "max_size", "accept", "choices_from", "choices_timeout", "choices_cache")


def _may_start_with_dash(p: Param) -> bool:
    """Can a user give this parameter a value that starts with '-'? (choices are ops' own list)"""
    if p.type in ("text", "multiline"):
        return True
    if p.type in ("int", "float"):
        return p.min is None or p.min < 0
    return False


class ParamChecks:
    """The reader's `param.NAME.KEY` keys and `command`, checked against each other."""

    def param_key(self, section: str, key: str, p: Param, pkey: str, raw: str) -> None:
        if pkey == "type":
            if raw not in TYPES:
                self.problem(section, key, f"unknown type {raw!r}; expected one of {', '.join(TYPES)}")
            else:
                p.type = raw
        elif pkey in ("label", "help"):
            setattr(p, pkey, raw)
        elif pkey in ("required", "allow_dash"):
            setattr(p, pkey, self.convert(section, key, raw, parse_bool, False))
        elif pkey == "pattern":
            try:
                re.compile(raw)
                p.pattern = raw
            except re.error as exc:
                self.problem(section, key, f"bad pattern: {exc}")
        elif pkey == "choices":
            p.choices = split_list(raw)
        elif pkey == "max_size":
            p.max_size = self.convert(section, key, raw, parse_size, p.max_size)
        elif pkey == "accept":
            p.accept = self.convert(section, key, raw, parse_accept, [])
        elif pkey in ("choices_from", "choices_timeout", "choices_cache"):
            source = p.choices_from = p.choices_from or C.Source()
            if pkey == "choices_from":
                source.command = raw
            else:  # a time-out must be above 0; a cache of 0 s makes a list per request
                attr = pkey.removeprefix("choices_")
                parse = positive_duration if attr == "timeout" else parse_duration
                setattr(source, attr, self.convert(section, key, raw, parse, getattr(source, attr)))
        elif pkey in ("default", "min", "max"):
            # Typed once the whole section is read: the type key may come later.
            setattr(p, pkey, raw)
        else:
            self.problem(section, key, f"unknown parameter key {pkey!r}; expected one of {', '.join(PARAM_KEYS)}")

    def param_where(self, section: str, first_key: str, p: Param, pkey: str) -> str:
        """The key to blame: param.NAME.pkey if it was written, else the parameter's first key."""
        key = f"param.{p.name}.{pkey}"
        return key if (section, key) in self.lines.keys else first_key

    def check_param(self, section: str, first_key: str, p: Param) -> None:
        def where(pkey: str) -> str:
            return self.param_where(section, first_key, p, pkey)

        if p.type in ("choice", "multichoice"):
            if not p.choices and p.choices_from is None:
                self.problem(section, where("type"), f"a {p.type} parameter needs choices")
        elif p.choices:
            self.problem(section, where("choices"), f"choices only apply to choice and multichoice, not {p.type}")
        dashed = [c for c in p.choices if c.startswith("-")]
        if dashed and p.leads and not p.allow_dash:
            self.problem(section, where("choices"), f"choice {dashed[0]!r} starts with '-' and {{{p.name}}} can "
                         f"begin an argument, where the program reads it as an option; if that is meant, set "
                         f"param.{p.name}.allow_dash = yes")
        for pkey in ("max_size", "accept"):
            if p.type != "file" and (section, f"param.{p.name}.{pkey}") in self.lines.keys:
                self.problem(section, where(pkey), f"{pkey} only applies to file, not {p.type}")
        if p.type == "file" and p.name == JSON_PART:
            self.problem(section, where("type"), f"a file parameter cannot be named {JSON_PART!r}: a start's "
                         f"multipart body has a part of that name for its values")
        if p.type == "file" and p.default is not None:
            self.problem(section, where("default"), "a file parameter cannot have a default: the user uploads it")
            p.default = None
        if p.pattern is not None and p.type not in ("text", "multiline", "secret"):
            self.problem(section, where("pattern"), f"pattern only applies to text, multiline and secret, not {p.type}")
        bound_parser = Param(name=p.name, type=p.type, choices=p.choices, leads=False)
        for bound in ("min", "max"):
            raw = getattr(p, bound)
            if raw is None:
                continue
            if p.type not in ("int", "float", "date"):
                self.problem(section, where(bound), f"{bound} only applies to int, float and date, not {p.type}")
                setattr(p, bound, None)
                continue
            try:
                setattr(p, bound, bound_parser.coerce(raw))
            except ValueError as exc:
                self.problem(section, where(bound), str(exc))
                setattr(p, bound, None)
        if p.min is not None and p.max is not None and p.min > p.max:
            self.problem(section, where("max"), "max is below min")
        if p.default is not None:
            if p.secret:
                self.problem(section, where("default"), "a secret cannot have a default (jobs.ini is not secret)")
                p.default = None
                return
            try:
                p.default = p.coerce(p.default)
            except LeadingDash as exc:
                if not dashed:  # a dashed choice is reported once, above
                    self.problem(section, where("default"), f"default {exc}; if that is meant, set "
                                 f"param.{p.name}.allow_dash = yes")
                p.default = None
            except ValueError as exc:
                if p.type in ("choice", "multichoice"):
                    message = f"default is not among the choices: {exc}"
                else:
                    message = f"default {exc}"
                self.problem(section, where("default"), message)
                p.default = None

    def check_command(self, section: str, job: Job) -> None:
        """Split the command, check its placeholders, and mark the parameters whose value could
        begin an argument the program reads as an option (`Param.leads`)."""
        if not job.command.strip():
            self.problem(section, None, "missing command")
            return
        names = {p.name: p for p in job.params}
        if job.shell:
            job.argv = ["/bin/sh", "-c", job.command, job.id]
            if placeholders(job.command):
                self.problem(section, "command", "shell = yes: parameters reach the script only as "
                             "$PB_NAME variables; {name} is not substituted")
            return  # every parameter leads: the script may place any $PB_NAME anywhere
        try:
            job.argv = shlex.split(job.command)
        except ValueError as exc:
            self.problem(section, "command", f"cannot split command: {exc}")
            return
        named = list(dict.fromkeys(n for element in job.argv for n in placeholders(element)))
        for name in named:
            if name not in names:
                self.problem(section, "command", f"{{{name}}} names no parameter ({{{{ }}}} write literal braces)")
            elif names[name].secret:
                self.problem(section, "command", f"secret {{{name}}} in the command line is visible to every "
                             f"user of the host; the process gets it as $PB_{name.upper()}")
        self._check_code(section, "command", job.argv, names)
        leading = option_names(job.argv)
        for p in job.params:  # a parameter the command does not name reaches it only as $PB_NAME
            p.leads = p.name in leading or p.name not in named

    def _check_code(self, section: str, key: str, argv: list[str], names: dict[str, Param]) -> None:
        """Free text never goes where the argv holds code (server/code_args.py)."""
        for name, where in dict.fromkeys(code_placeholders(argv)):
            p = names.get(name)
            if p is None or p.type not in FREE_TYPES:
                continue
            if where == "the program":
                self.problem(section, key, f"{{{name}}} would choose the program to run: make it a choice")
            else:
                self.problem(section, key, f"{{{name}}} is in {where}, which would run a value such as $(id) as "
                             f"code: give it as an argument of its own (sh -c '... \"$1\"' _ {{{name}}}), or "
                             f"make it a choice")

    def check_dash_warnings(self, section: str, first_keys: dict[str, str], job: Job) -> None:
        """Warn where a parameter allowed to start with '-' begins an argument with no `--` before
        it: the program would read such a value as an option. Run after check_param (bounds typed)."""
        leading = set() if job.shell else option_names(job.argv)
        for p in job.params:
            if not p.allow_dash:
                continue
            if p.name in leading and _may_start_with_dash(p):
                self.warning(section, "command", f"{{{p.name}}} begins an argument with no -- before it and "
                             f"param.{p.name}.allow_dash = yes: the program will read a value such as "
                             f"'-x' as an option")
            elif not p.leads or p.secret:
                why = "a secret may always start with '-'" if p.secret else f"{{{p.name}}} never begins an argument"
                self.warning(section, self.param_where(section, first_keys[p.name], p, "allow_dash"),
                             f"allow_dash has no effect: {why}")

    def check_env_names(self, section: str, first_keys: dict[str, str], job: Job) -> None:
        """No two parameters set one variable: `env` and `ENV` are both $PB_ENV, a file `f`'s
        $PB_F_FILENAME is a text `f_filename`'s too; the later would silently replace the other,
        a checked choice by free text."""
        owners: dict[str, str] = {}
        for p in job.params:
            for var in (f"PB_{p.name.upper()}", *([f"PB_{p.name.upper()}_FILENAME"] if p.type == "file" else [])):
                other = owners.setdefault(var, p.name)
                if other != p.name:
                    self.problem(section, first_keys[p.name], f"parameters {other!r} and {p.name!r} would both "
                                 f"set ${var}: rename one")

    def check_choices_from(self, section: str, first_keys: dict[str, str], job: Job) -> None:
        """`choices_from`: split like the command, its inputs known and not secret, no loop of
        lists; a value it places where an argument begins obeys the leading-dash rule there too.
        Run after check_command, before check_param (which reads `leads`)."""
        names = {p.name: p for p in job.params}
        for p in job.params:
            source = p.choices_from
            if source is None:
                continue

            def where(pkey: str, p: Param = p) -> str:
                return self.param_where(section, first_keys[p.name], p, pkey)

            if not source.command.strip():  # blamed on the key written: choices_from is not
                written = "choices_timeout" if (section, f"param.{p.name}.choices_timeout") in self.lines.keys \
                    else "choices_cache"
                self.problem(section, where(written), "choices_timeout and choices_cache need choices_from")
            elif p.type not in ("choice", "multichoice"):
                self.problem(section, where("choices_from"), f"choices_from only applies to choice and multichoice, "
                             f"not {p.type}")
            elif p.choices:
                self.problem(section, where("choices_from"), "give choices or choices_from, not both")
            else:
                try:
                    C.parse(source, job.shell, job.id)
                except ValueError as exc:
                    self.problem(section, where("choices_from"), str(exc))
                else:
                    if not job.shell:
                        self._check_code(section, where("choices_from"), source.argv, names)
                    self._check_inputs(section, where("choices_from"), p, job)
                    # by name from here on (a shell script says $PB_REGION for {region})
                    source.inputs = [o.name for ref in source.inputs if (o := C.input_of(job.params, ref))]
                    continue
            p.choices_from = None
        if loop := C.cycle(job.params):
            self.problem(section, self.param_where(section, first_keys[loop[0]], names[loop[0]], "choices_from"),
                         "choices_from lists depend on each other in a loop: " + " -> ".join(loop))

    def _check_inputs(self, section: str, key: str, p: Param, job: Job) -> None:
        leading = set(p.choices_from.inputs) if job.shell else option_names(p.choices_from.argv)
        for ref in p.choices_from.inputs:
            other = C.input_of(job.params, ref)
            shown = f"$PB_{ref}" if job.shell else f"{{{ref}}}"
            if other is None:
                self.problem(section, key, f"{shown} names no parameter")
            elif other.secret:
                self.problem(section, key, f"secret {shown} cannot feed a choices command: the list and its "
                             f"errors are shown to everyone who may see the job")
            elif other.type == "file":
                self.problem(section, key, f"{shown} is a file, which exists only once a run starts")
            elif ref in leading:
                other.leads = True
