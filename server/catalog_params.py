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

from server.catalog_values import parse_bool
from server.params import TYPES, LeadingDash, Param, leading_names, placeholders, split_list

if TYPE_CHECKING:
    from server.catalog import Job

PARAM_KEYS = ("type", "label", "help", "default", "required", "pattern", "min", "max", "choices",
              "allow_dash")


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
            if not p.choices:
                self.problem(section, where("type"), f"a {p.type} parameter needs choices")
        elif p.choices:
            self.problem(section, where("choices"), f"choices only apply to choice and multichoice, not {p.type}")
        dashed = [c for c in p.choices if c.startswith("-")]
        if dashed and p.leads and not p.allow_dash:
            self.problem(section, where("choices"), f"choice {dashed[0]!r} starts with '-' and {{{p.name}}} can "
                         f"begin an argument, where the program reads it as an option; if that is meant, set "
                         f"param.{p.name}.allow_dash = yes")
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
        leading = leading_names(job.argv)
        for p in job.params:  # a parameter the command does not name reaches it only as $PB_NAME
            p.leads = p.name in leading or p.name not in named

    def check_dash_warnings(self, section: str, first_keys: dict[str, str], job: Job) -> None:
        """Warn where a parameter allowed to start with '-' begins an argument with no `--` before
        it: the program would read such a value as an option. Run after check_param (bounds typed)."""
        leading = set() if job.shell else leading_names(job.argv)
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
