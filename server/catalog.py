"""jobs.ini -> Catalog, or every problem in it as `FILE:LINE: message`.

configparser does the INI syntax (whole-line comments only, no interpolation, so `;`, `#`, `%`
and `$` stay in values as written); a small line index maps each section and key back to its
line, and finds the duplicates configparser would otherwise stop at one by one.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import re
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import platformdirs

from server.catalog_access import ACCESS_KEYS, JOB_ACCESS_KEYS, Access, AccessChecks, Team
from server.catalog_access import TEAM_KEYS as TEAM_KEYS  # re-exported: the documented keys
from server.catalog_hosts import Group, Host, HostChecks, Target
from server.catalog_ldap import LDAP_KEYS, Ldap, LdapChecks
from server.catalog_notify import Notifier, NotifyChecks, public_url
from server.catalog_oidc import OIDC_KEYS, Oidc, OidcChecks
from server.catalog_params import PARAM_KEYS as PARAM_KEYS  # re-exported: the documented keys
from server.catalog_params import ParamChecks
from server.catalog_schedules import Schedule, ScheduleChecks
from server.catalog_values import NAME_RULE, non_negative_int, parse_bool, positive_duration, positive_int, unechoed
from server.catalog_values import parse_duration as parse_duration  # re-exported
from server.files.artifacts import ENV as ARTIFACTS_ENV
from server.files.artifacts import KEYS as ARTIFACT_KEYS
from server.files.artifacts import Limits as ArtifactLimits
from server.files.artifacts import setting as artifact_setting
from server.params import NAME_RE, Param, placeholders, split_list

APP_NAME = "pushbutton"

# Every key the parser accepts (PARAM_KEYS too); docs/jobs-ini.md must document each (a test checks).
SETTINGS_KEYS = ("title", "max_concurrent_runs", "retention_days", "allowed_hosts", "public_url", "schedules_in_window",
                 *ACCESS_KEYS, *OIDC_KEYS, *LDAP_KEYS, *ARTIFACT_KEYS)
JOB_KEYS = ("title", "description", "command", "shell", "workdir", "timeout", "grace",
            "concurrency", "confirm", "targets", *JOB_ACCESS_KEYS)
HOST_KEYS = ("address", "port", "user", "identity", "known_hosts", "host_key", "connect_timeout", "control_persist")
GROUP_KEYS = ("hosts", "parallel")
JOB_PREFIX_KEYS = ("env.NAME", "param.NAME.KEY")

JOB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    message: str
    warning: bool = False  # a warning does not stop the file from being served

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {'warning: ' if self.warning else ''}{self.message}"


class CatalogError(Exception):
    """A jobs.ini that must not be served; `problems` lists every one found, `warnings` what would
    have been warned about had it loaded (`check` prints both)."""

    def __init__(self, problems: list[Problem], warnings: list[Problem] | None = None):
        self.problems = problems
        self.warnings = warnings or []
        super().__init__("\n".join(map(str, problems)))


@dataclass
class Settings(Access):
    title: str = "Pushbutton"
    max_concurrent_runs: int = 8
    retention_days: int = 90
    allowed_hosts: list[str] = field(default_factory=list)
    artifacts: ArtifactLimits = field(default_factory=ArtifactLimits)  # caps on what runs leave in PB_ARTIFACTS
    public_url: str = ""  # the base of links in notifications; "": no link
    schedules_in_window: bool = False  # [schedule:NAME]s also fire in the desktop window
    oidc: Oidc = field(default_factory=Oidc)  # auth = oidc
    ldap: Ldap = field(default_factory=Ldap)  # auth = ldap


@dataclass
class Job:
    id: str
    command: str
    argv: list[str]
    title: str = ""
    description: str = ""
    shell: bool = False
    workdir: Path = Path(".")
    env: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    grace: float = 10.0
    concurrency: int | None = None
    confirm: str = ""
    params: list[Param] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)  # empty: runs on this machine
    run_by: list[str] = field(default_factory=list)  # user names, team:NAME, *; none: admins only
    view_by: list[str] = field(default_factory=list)
    approve_by: list[str] = field(default_factory=list)  # none: runs need no approval
    approve_within: float | None = None  # seconds a run may wait for approval; None: no limit

    def public(self) -> dict:
        return {
            "id": self.id,
            "title": self.title or self.id,
            "description": self.description,
            "confirm": self.confirm,
            "concurrency": self.concurrency,
            "timeout": self.timeout,
            "params": [p.public() for p in self.params],
            "targets": [t.host.name for t in self.targets],
        }


@dataclass
class Catalog:
    path: Path
    settings: Settings
    jobs: dict[str, Job]
    hosts: dict[str, Host] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    teams: dict[str, Team] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)  # [schedule:NAME]
    notifiers: dict[str, Notifier] = field(default_factory=dict)  # [notify:NAME]
    warnings: list[Problem] = field(default_factory=list)  # printed by `check`, logged at start
    source: bytes = field(default=b"", repr=False, compare=False)  # the bytes parsed: what reload compares with


def find_jobs_file(explicit: str | os.PathLike | None = None) -> Path:
    """--jobs, else beside a built executable, else the current folder, else the user config dir."""
    if explicit is not None:
        return Path(explicit)
    for place in candidate_paths():
        if place.is_file():
            return place
    raise FileNotFoundError("no jobs.ini found; looked in: " + ", ".join(str(p) for p in candidate_paths()))


def candidate_paths() -> list[Path]:
    places = []
    if getattr(sys, "frozen", False):
        folder = Path(sys.executable).resolve().parent
        if folder.match("*.app/Contents/MacOS"):  # a macOS app bundle: beside the .app
            folder = folder.parent.parent.parent
        places.append(folder / "jobs.ini")
    places.append(Path.cwd() / "jobs.ini")
    places.append(Path(platformdirs.user_config_dir(APP_NAME)) / "jobs.ini")
    return places


class _Lines:
    """Where each section and key was written, and the duplicates."""

    def __init__(self, text: str, file: str):
        self.sections: dict[str, int] = {}
        self.keys: dict[tuple[str, str], int] = {}
        self.duplicates: list[Problem] = []
        section = None
        # Lines as configparser counts them: split at "\n" only (splitlines() also splits at
        # \x0c, \x85, \u2028..., which a value may hold, and every later line number would be off).
        for number, line in enumerate(text.split("\n"), 1):
            stripped = line.strip()
            if not stripped or stripped[0] in "#;" or line[0].isspace():
                continue
            m = re.match(r"\[(.+)\]\s*$", line)
            if m:
                section = m.group(1)
                if section in self.sections:
                    self.duplicates.append(Problem(file, number, f"duplicate section [{section}]"))
                else:
                    self.sections[section] = number
            elif section is not None and "=" in line:
                key = line.split("=", 1)[0].strip()
                if (section, key) in self.keys:
                    self.duplicates.append(Problem(file, number, f"[{section}] duplicate key {key!r}"))
                else:
                    self.keys[(section, key)] = number

    def of(self, section: str, key: str | None = None) -> int:
        if key is not None and (section, key) in self.keys:
            return self.keys[(section, key)]
        return self.sections.get(section, 1)


class _Reader(ParamChecks, HostChecks, AccessChecks, OidcChecks, LdapChecks, ScheduleChecks, NotifyChecks):
    """Turns one parsed file into a Catalog, collecting problems instead of stopping at one."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.file = str(path)
        self.lines = _Lines(text, self.file)
        self.problems: list[Problem] = list(self.lines.duplicates)
        self.warnings: list[Problem] = []
        self.job_targets: dict[str, str] = {}  # job id -> raw `targets`, resolved once all is read

    def problem(self, section: str, key: str | None, message: str, warning: bool = False) -> None:
        where = f"[{section}] {unechoed(key)}: " if key else f"[{section}]: "
        message = message.replace("\n", " ")  # a value continued on indented lines: one line still
        found = Problem(self.file, self.lines.of(section, key), where + message, warning)
        (self.warnings if warning else self.problems).append(found)

    def warning(self, section: str, key: str | None, message: str) -> None:
        self.problem(section, key, message, warning=True)

    def convert(self, section: str, key: str, raw: str, fn, default=None):
        try:
            return fn(raw)
        except ValueError as exc:
            self.problem(section, key, str(exc))
            return default

    def read(self, parser: configparser.RawConfigParser) -> Catalog:
        settings = Settings()
        jobs: dict[str, Job] = {}
        hosts: dict[str, Host] = {}
        groups: dict[str, Group] = {}
        teams: dict[str, Team] = {}
        schedules: dict[str, Schedule] = {}
        notifiers: dict[str, Notifier] = {}
        for section in parser.sections():
            kind, _, name = section.partition(":")
            if section == "pushbutton":
                settings = self.settings(section, parser[section])
            elif kind == "job" and name:
                if not JOB_ID_RE.match(name):
                    self.problem(section, None, f"job id {NAME_RULE}")
                job = self.job(name, section, parser[section])
                if job is not None:
                    jobs[name] = job
            elif kind == "team" and name:
                if not JOB_ID_RE.match(name):
                    self.problem(section, None, f"team name {NAME_RULE}")
                teams[name] = self.team(name, section, parser[section])
            elif kind in ("host", "group") and name:
                if not JOB_ID_RE.match(name):
                    self.problem(section, None, f"{kind} name {NAME_RULE}")
                if kind == "host":
                    hosts[name] = self.host(name, section, parser[section])
                else:
                    groups[name] = self.group(name, section, parser[section])
            elif kind == "schedule" and name:
                schedules[name] = self.schedule(name, section, parser[section])
            elif kind == "notify" and name:
                if not JOB_ID_RE.match(name):  # jobs name it in a comma-separated list
                    self.problem(section, None, f"notifier name {NAME_RULE}")
                notifiers[name] = self.notifier(name, section, parser[section])
            else:
                self.problem(section, None, "unknown section; expected [pushbutton], [job:ID], [team:NAME], "
                             "[host:NAME], [group:NAME], [schedule:NAME] or [notify:NAME]")
        if not jobs and not self.problems:
            self.problems.append(Problem(self.file, 1, "no [job:ID] section"))
        expanded = {name: self.expand(name, hosts, groups) for name in groups}
        for job_id, raw in self.job_targets.items():
            jobs[job_id].targets = self.targets(f"job:{job_id}", raw, hosts, groups, expanded)
        self.check_access(settings, teams, jobs)
        self.check_oidc(settings.auth, settings.oidc)
        self.check_ldap(settings.auth, settings.ldap, teams)
        self.check_schedules(schedules, jobs)
        self.check_notifiers(notifiers, jobs)
        return Catalog(self.path, settings, jobs, hosts, groups, teams, schedules, notifiers)

    def settings(self, section: str, items) -> Settings:
        s = Settings()
        for key, raw in items.items():
            if key == "title":
                s.title = raw
            elif key == "max_concurrent_runs":
                s.max_concurrent_runs = self.convert(section, key, raw, positive_int, 8)
            elif key == "retention_days":
                s.retention_days = self.convert(section, key, raw, non_negative_int, 90)
            elif key == "allowed_hosts":
                s.allowed_hosts = [h.lower() for h in split_list(raw)]
            elif key == "schedules_in_window":
                s.schedules_in_window = self.convert(section, key, raw, parse_bool, False)
            elif key == "public_url":
                s.public_url = self.convert(section, key, raw, public_url, "")
            elif key in ARTIFACT_KEYS:
                self.convert(section, key, raw, partial(artifact_setting, s.artifacts, key))
            elif key in ACCESS_KEYS:
                self.access_setting(section, key, raw, s)
            elif key in OIDC_KEYS:
                self.oidc_setting(section, key, raw, s.oidc)
            elif key in LDAP_KEYS:
                self.ldap_setting(section, key, raw, s.ldap)
            else:
                self.problem(section, key, "unknown key")
        return s

    def job(self, job_id: str, section: str, items) -> Job | None:
        job = Job(id=job_id, command="", argv=[], workdir=self.path.parent)
        params: dict[str, Param] = {}
        param_lines: dict[str, str] = {}
        for key, raw in items.items():
            if key.startswith("param."):
                name, _, pkey = key[len("param."):].rpartition(".")
                if not name or not NAME_RE.match(name):
                    self.problem(section, key, "expected param.NAME.KEY, NAME made of letters, digits and _")
                    continue
                if f"PB_{name.upper()}" == ARTIFACTS_ENV:
                    self.problem(section, key, f"{ARTIFACTS_ENV} is the run's artifacts folder: rename the parameter")
                    continue
                param = params.setdefault(name, Param(name=name))
                param_lines.setdefault(name, key)
                self.param_key(section, key, param, pkey, raw)
            elif key.startswith("env."):
                var = key[len("env."):]
                if not ENV_NAME_RE.match(var):
                    self.problem(section, key, "not a valid environment variable name")
                job.env[var] = raw
            elif key in ("title", "description", "confirm", "command"):
                setattr(job, key, raw)
            elif key == "shell":
                job.shell = self.convert(section, key, raw, parse_bool, False)
            elif key == "workdir":
                job.workdir, exists = (self.path.parent / os.path.expanduser(raw)).resolve(), False
                with contextlib.suppress(OSError):  # a name too long: no folder either
                    exists = job.workdir.is_dir()
                if not exists:
                    self.problem(section, key, f"folder {str(job.workdir)!r} does not exist")
            elif key == "timeout":
                job.timeout = self.convert(section, key, raw, positive_duration)
            elif key == "grace":
                job.grace = self.convert(section, key, raw, parse_duration, 10.0)
            elif key == "concurrency":
                job.concurrency = self.convert(section, key, raw, positive_int)
            elif key in JOB_ACCESS_KEYS:
                self.job_access(section, key, raw, job)
            elif key == "targets":
                self.job_targets[job_id] = raw
                if (section, "workdir") in self.lines.keys:
                    self.problem(section, "workdir", "workdir applies to jobs run on this machine; a remote "
                                 "command starts in the login directory (use shell = yes and cd)")
            else:
                self.problem(section, key, "unknown key")
        job.params = list(params.values())
        self.check_command(section, job)  # first: it decides which values may not start with '-'
        self.check_choices_from(section, param_lines, job)  # and so does a choices command
        for p in job.params:
            self.check_param(section, param_lines[p.name], p)
        self.check_dash_warnings(section, param_lines, job)
        self.check_env_names(section, param_lines, job)
        self.check_confirm(section, job)
        return job

    def check_confirm(self, section: str, job: Job) -> None:
        names = {p.name: p for p in job.params}
        for name in placeholders(job.confirm):
            if name not in names:
                self.problem(section, "confirm", f"{{{name}}} names no parameter")
            elif names[name].secret:
                self.problem(section, "confirm", f"the confirm text would show secret {{{name}}}")


def load(path: str | os.PathLike, data: bytes | None = None) -> Catalog:
    """Parse and check a jobs.ini (or `data`, its bytes as the reloader compared them); raise
    CatalogError listing every problem."""
    path = Path(path).resolve()
    try:
        data = path.read_bytes() if data is None else data
        text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as read_text() would
    except OSError as exc:
        raise CatalogError([Problem(str(path), 0, f"cannot read: {exc}")]) from None
    except UnicodeDecodeError as exc:  # located: the line of the first byte that is not UTF-8
        line = data[:exc.start].replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n") + 1
        raise CatalogError([Problem(str(path), line, f"not UTF-8: {exc.reason} at byte {exc.start}")]) from None
    if "\0" in text:  # no value may hold one: paths, argv and env would fail later, each its own way
        raise CatalogError([Problem(str(path), n, "NUL character (is this a binary file?)")
                            for n, line in enumerate(text.split("\n"), 1) if "\0" in line])
    parser = configparser.RawConfigParser(
        delimiters=("=",),
        comment_prefixes=("#", ";"),
        inline_comment_prefixes=None,
        strict=False,
        empty_lines_in_values=False,
        default_section="\0none",
        interpolation=None,
    )
    parser.optionxform = str  # keep env.NAME case
    try:
        parser.read_string(text, source=str(path))
    except configparser.MissingSectionHeaderError as exc:
        raise CatalogError([Problem(str(path), exc.lineno, "text before the first [section]")]) from None
    except configparser.ParsingError as exc:
        lines = text.splitlines()
        raise CatalogError([Problem(str(path), n, f"cannot parse {unechoed(lines[n - 1].strip())}: "
                                    "expected key = value") for n, _ in exc.errors]) from None
    reader = _Reader(path, text)
    catalog = reader.read(parser)
    if reader.problems:
        raise CatalogError(sorted(reader.problems, key=lambda p: p.line), sorted(reader.warnings, key=lambda p: p.line))
    catalog.warnings = sorted(reader.warnings, key=lambda p: p.line)
    catalog.source = data
    return catalog
