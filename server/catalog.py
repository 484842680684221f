"""jobs.ini -> Catalog, or every problem in it as `FILE:LINE: message`.

configparser does the INI syntax (whole-line comments only, no interpolation, so `;`, `#`, `%`
and `$` stay in values as written); a small line index maps each section and key back to its
line, and finds the duplicates configparser would otherwise stop at one by one.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from server.params import NAME_RE, TYPES, Param, placeholders, split_list

APP_NAME = "pushbutton"

# Every key the parser accepts; docs/jobs-ini.md must document each (a test checks).
SETTINGS_KEYS = ("title", "max_concurrent_runs", "retention_days", "allowed_hosts")
JOB_KEYS = ("title", "description", "command", "shell", "workdir", "timeout", "grace",
            "concurrency", "confirm", "targets")
HOST_KEYS = ("address", "port", "user", "identity", "known_hosts", "connect_timeout")
GROUP_KEYS = ("hosts", "parallel")
JOB_PREFIX_KEYS = ("env.NAME", "param.NAME.KEY")
PARAM_KEYS = ("type", "label", "help", "default", "required", "pattern", "min", "max", "choices")

JOB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s)?")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class CatalogError(Exception):
    """A jobs.ini that must not be served; `problems` lists every one found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(map(str, problems)))


@dataclass
class Settings:
    title: str = "Pushbutton"
    max_concurrent_runs: int = 8
    retention_days: int = 90
    allowed_hosts: list[str] = field(default_factory=list)


@dataclass
class Host:
    """One SSH target: where to connect, as whom, and which host keys to trust."""

    name: str
    address: str = ""
    port: int = 22
    user: str | None = None  # None: ssh's default (the local user, or ~/.ssh/config)
    identity: Path | None = None  # None: the SSH agent, then the user's default keys
    known_hosts: Path | None = None  # None: ~/.ssh/known_hosts (and the system-wide file)
    connect_timeout: float = 10.0


@dataclass
class Group:
    name: str
    members: list[str]  # host names, and group:NAME for nested groups
    parallel: int = 10


@dataclass(frozen=True)
class Target:
    """One host of a job, and the group (named in `targets`) whose `parallel` cap it counts against."""

    host: Host
    group: str | None = None
    parallel: int = 1


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


def find_jobs_file(explicit: str | os.PathLike | None = None) -> Path:
    """--jobs, else beside a built executable, else the current folder, else the user config dir."""
    if explicit is not None:
        return Path(explicit)
    for place in candidate_paths():
        if place.is_file():
            return place
    raise FileNotFoundError(
        "no jobs.ini found; looked in: " + ", ".join(str(p) for p in candidate_paths())
    )


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


def parse_duration(text: str) -> float:
    """`90`, `90s`, `30m`, `1h30m` -> seconds."""
    text = text.strip().lower()
    parts = DURATION_RE.findall(text)
    if not text or DURATION_RE.sub("", text).strip():
        raise ValueError(f"{text!r} is not a duration like 90s, 30m or 1h")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1, "": 1}[u] for n, u in parts)


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in configparser.ConfigParser.BOOLEAN_STATES:
        return configparser.ConfigParser.BOOLEAN_STATES[word]
    raise ValueError(f"{text!r} is not yes or no")


class _Lines:
    """Where each section and key was written, and the duplicates."""

    def __init__(self, text: str, file: str):
        self.sections: dict[str, int] = {}
        self.keys: dict[tuple[str, str], int] = {}
        self.duplicates: list[Problem] = []
        section = None
        for number, line in enumerate(text.splitlines(), 1):
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


class _Reader:
    """Turns one parsed file into a Catalog, collecting problems instead of stopping at one."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.file = str(path)
        self.lines = _Lines(text, self.file)
        self.problems: list[Problem] = list(self.lines.duplicates)
        self.job_targets: dict[str, str] = {}  # job id -> raw `targets`, resolved once all is read

    def problem(self, section: str, key: str | None, message: str) -> None:
        where = f"[{section}] {key}: " if key else f"[{section}]: "
        self.problems.append(Problem(self.file, self.lines.of(section, key), where + message))

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
        for section in parser.sections():
            kind, _, name = section.partition(":")
            if section == "pushbutton":
                settings = self.settings(section, parser[section])
            elif kind == "job" and name:
                if not JOB_ID_RE.match(name):
                    self.problem(section, None, "job id may use letters, digits, '.', '_' and '-'")
                job = self.job(name, section, parser[section])
                if job is not None:
                    jobs[name] = job
            elif kind in ("host", "group") and name:
                if not JOB_ID_RE.match(name):
                    self.problem(section, None, f"{kind} name may use letters, digits, '.', '_' and '-'")
                if kind == "host":
                    hosts[name] = self.host(name, section, parser[section])
                else:
                    groups[name] = self.group(name, section, parser[section])
            else:
                self.problem(section, None, "unknown section; expected [pushbutton], [job:ID], [host:NAME] "
                             "or [group:NAME]")
        if not jobs and not self.problems:
            self.problems.append(Problem(self.file, 1, "no [job:ID] section"))
        expanded = {name: self.expand(name, hosts, groups) for name in groups}
        for job_id, raw in self.job_targets.items():
            jobs[job_id].targets = self.targets(f"job:{job_id}", raw, hosts, groups, expanded)
        return Catalog(self.path, settings, jobs, hosts, groups)

    def settings(self, section: str, items) -> Settings:
        s = Settings()
        for key, raw in items.items():
            if key == "title":
                s.title = raw
            elif key == "max_concurrent_runs":
                s.max_concurrent_runs = self.convert(section, key, raw, _positive_int, 8)
            elif key == "retention_days":
                s.retention_days = self.convert(section, key, raw, _non_negative_int, 90)
            elif key == "allowed_hosts":
                s.allowed_hosts = [h.lower() for h in split_list(raw)]
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
                job.workdir = (self.path.parent / os.path.expanduser(raw)).resolve()
                if not job.workdir.is_dir():
                    self.problem(section, key, f"folder {str(job.workdir)!r} does not exist")
            elif key == "timeout":
                job.timeout = self.convert(section, key, raw, _positive_duration)
            elif key == "grace":
                job.grace = self.convert(section, key, raw, parse_duration, 10.0)
            elif key == "concurrency":
                job.concurrency = self.convert(section, key, raw, _positive_int)
            elif key == "targets":
                self.job_targets[job_id] = raw
                if (section, "workdir") in self.lines.keys:
                    self.problem(section, "workdir", "workdir applies to jobs run on this machine; a remote "
                                 "command starts in the login directory (use shell = yes and cd)")
            else:
                self.problem(section, key, "unknown key")
        job.params = list(params.values())
        for p in job.params:
            self.check_param(section, param_lines[p.name], p)
        self.check_command(section, job)
        return job

    # -- remote hosts ------------------------------------------------------------------------

    def host(self, name: str, section: str, items) -> Host:
        host = Host(name=name)
        for key, raw in items.items():
            if key == "address":
                host.address = self.convert(section, key, raw, _ssh_word, "")
            elif key == "user":
                host.user = self.convert(section, key, raw, _ssh_word)
            elif key == "port":
                host.port = self.convert(section, key, raw, _port, 22)
            elif key == "connect_timeout":
                host.connect_timeout = self.convert(section, key, raw, _positive_duration, 10.0)
            elif key in ("identity", "known_hosts"):
                setattr(host, key, self.key_file(section, key, raw))
            else:
                self.problem(section, key, "unknown key")
        if not host.address and (section, "address") not in self.lines.keys:
            self.problem(section, None, "missing address")
        return host

    def key_file(self, section: str, key: str, raw: str) -> Path | None:
        """A file ssh must read: checked now, so a typo fails `check` rather than a run."""
        path = (self.path.parent / os.path.expanduser(raw)).resolve()
        what = "key file" if key == "identity" else "known_hosts file"
        if '"' in str(path) or "\n" in str(path):
            self.problem(section, key, f"{what} path may not contain quotes or newlines")
            return None
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            self.problem(section, key, f"cannot read {what} {str(path)!r}: {exc.strerror}")
            return None
        if key == "identity" and os.name == "posix" and path.stat().st_mode & 0o077:
            self.problem(section, key, f"key file {str(path)!r} is readable by other users and ssh refuses "
                         "it; run chmod 600 on it")
        return path

    def group(self, name: str, section: str, items) -> Group:
        group = Group(name=name, members=[])
        for key, raw in items.items():
            if key == "hosts":
                group.members = split_list(raw)
            elif key == "parallel":
                group.parallel = self.convert(section, key, raw, _positive_int, 10)
            else:
                self.problem(section, key, "unknown key")
        if not group.members:
            self.problem(section, "hosts", "a group needs hosts = NAME, NAME, ...")
        return group

    def expand(self, name: str, hosts: dict[str, Host], groups: dict[str, Group],
               path: tuple[str, ...] = ()) -> list[str]:
        """A group's host names, nested groups flattened in order. Unknown names are reported at
        the group that names them, each cycle once."""
        path = (*path, name)
        out: list[str] = []
        for member in groups[name].members:
            kind, _, ref = member.rpartition(":")
            if kind == "group" and ref in path:
                cycle = (*path[path.index(ref):], ref)
                if ref == path[0] == min(cycle):
                    self.problem(f"group:{name}", "hosts", "group cycle: " + " -> ".join(cycle))
            elif kind == "group" and ref in groups:
                out += self.expand(ref, hosts, groups, path)
            elif kind in ("", "host") and ref in hosts:
                out.append(ref)
            elif len(path) == 1:
                hint = f" (for the group, write group:{ref})" if ref in groups else ""
                self.problem(f"group:{name}", "hosts", f"unknown {kind or 'host'} {ref!r}{hint}")
        return list(dict.fromkeys(out))

    def targets(self, section: str, raw: str, hosts: dict[str, Host], groups: dict[str, Group],
                expanded: dict[str, list[str]]) -> list[Target]:
        found: dict[str, Target] = {}
        if not split_list(raw):
            self.problem(section, "targets", "targets is empty; leave it out to run on this machine")
        for item in split_list(raw):
            kind, _, name = item.partition(":")
            if kind == "host" and name in hosts:
                found.setdefault(name, Target(hosts[name]))
            elif kind == "group" and name in groups:
                for host in expanded[name]:
                    found.setdefault(host, Target(hosts[host], name, groups[name].parallel))
            elif kind in ("host", "group"):
                self.problem(section, "targets", f"unknown {kind} {name!r}")
            else:
                self.problem(section, "targets", f"{item!r}: expected host:NAME or group:NAME")
        return list(found.values())

    def param_key(self, section: str, key: str, p: Param, pkey: str, raw: str) -> None:
        if pkey == "type":
            if raw not in TYPES:
                self.problem(section, key, f"unknown type {raw!r}; expected one of {', '.join(TYPES)}")
            else:
                p.type = raw
        elif pkey in ("label", "help"):
            setattr(p, pkey, raw)
        elif pkey == "required":
            p.required = self.convert(section, key, raw, parse_bool, False)
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

    def check_param(self, section: str, first_key: str, p: Param) -> None:
        def where(pkey: str) -> str:
            key = f"param.{p.name}.{pkey}"
            return key if (section, key) in self.lines.keys else first_key

        if p.type in ("choice", "multichoice"):
            if not p.choices:
                self.problem(section, where("type"), f"a {p.type} parameter needs choices")
        elif p.choices:
            self.problem(section, where("choices"), f"choices only apply to choice and multichoice, not {p.type}")
        if p.pattern is not None and p.type not in ("text", "multiline", "secret"):
            self.problem(section, where("pattern"), f"pattern only applies to text, multiline and secret, not {p.type}")
        bound_parser = Param(name=p.name, type=p.type, choices=p.choices)
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
            except ValueError as exc:
                if p.type in ("choice", "multichoice"):
                    message = f"default is not among the choices: {exc}"
                else:
                    message = f"default {exc}"
                self.problem(section, where("default"), message)
                p.default = None

    def check_command(self, section: str, job: Job) -> None:
        if not job.command.strip():
            self.problem(section, None, "missing command")
            return
        names = {p.name: p for p in job.params}
        if job.shell:
            job.argv = ["/bin/sh", "-c", job.command, job.id]
            if placeholders(job.command):
                self.problem(section, "command", "shell = yes: parameters reach the script only as "
                             "$PB_NAME variables; {name} is not substituted")
        else:
            try:
                job.argv = shlex.split(job.command)
            except ValueError as exc:
                self.problem(section, "command", f"cannot split command: {exc}")
                return
            for name in dict.fromkeys(n for element in job.argv for n in placeholders(element)):
                if name not in names:
                    self.problem(section, "command", f"{{{name}}} names no parameter ({{{{ }}}} write literal braces)")
                elif names[name].secret:
                    self.problem(section, "command", f"secret {{{name}}} in the command line is visible to every "
                                 f"user of the host; the process gets it as $PB_{name.upper()}")
        for name in placeholders(job.confirm):
            if name not in names:
                self.problem(section, "confirm", f"{{{name}}} names no parameter")
            elif names[name].secret:
                self.problem(section, "confirm", f"the confirm text would show secret {{{name}}}")


def _int_at_least(low: int):
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a whole number") from None
        if value < low:
            raise ValueError(f"must be at least {low}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _port(raw: str) -> int:
    value = _positive_int(raw)
    if value > 65535:
        raise ValueError("must be at most 65535")
    return value


def _ssh_word(raw: str) -> str:
    """An address or user name that ssh cannot mistake for an option."""
    if not raw or raw.startswith("-") or any(c.isspace() or ord(c) < 32 for c in raw):
        raise ValueError(f"{raw!r} must be one word, not starting with '-'")
    return raw


def _positive_duration(raw: str) -> float:
    value = parse_duration(raw)
    if value <= 0:
        raise ValueError("must be longer than 0s")
    return value


def load(path: str | os.PathLike) -> Catalog:
    """Parse and check a jobs.ini; raise CatalogError listing every problem."""
    path = Path(path).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError([Problem(str(path), 0, f"cannot read: {exc}")]) from None
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
        raise CatalogError([Problem(str(path), n, f"cannot parse {lines[n - 1].strip()}: expected key = value")
                            for n, _ in exc.errors]) from None
    reader = _Reader(path, text)
    catalog = reader.read(parser)
    if reader.problems:
        raise CatalogError(sorted(reader.problems, key=lambda p: p.line))
    return catalog
