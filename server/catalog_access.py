"""jobs.ini's access keys: how users sign in, the teams, the admins, and who may view or run a job.

Only names live in jobs.ini (it is copied around with builds): never a password or a secret. The
proxy secret comes from `proxy_secret_file` or the environment (PROXY_SECRET_ENV); in jobs.ini
itself (`proxy_secret`) it is accepted with a warning.
A name list mixes user names and `team:NAME`; `*` means every signed-in user. A job that names
nobody is for admins only, so forgetting `run_by` never hands a production button to everyone.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from server.auth.proxies import TrustedProxies
from server.catalog_values import positive_duration
from server.params import split_list

AUTH_METHODS = ("token", "local", "header", "oidc", "ldap")
ACCESS_KEYS = ("auth", "admins", "trusted_proxies", "proxy_secret", "proxy_secret_file", "user_header",
               "groups_header", "session_idle", "session_max", "certfile", "keyfile", "base_path")
TEAM_KEYS = ("members", "header_groups", "oidc_groups", "ldap_groups")
JOB_ACCESS_KEYS = ("run_by", "view_by", "approve_by", "approve_within")
JOB_NAME_KEYS = ("run_by", "view_by", "approve_by")  # the lists of names among them
PROXY_SECRET_ENV = "PUSHBUTTON_PROXY_SECRET"
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"),
            ipaddress.ip_network("::ffff:127.0.0.0/104"))
EVERYONE = "*"
USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]*\Z")
HEADER_RE = re.compile(r"[A-Za-z0-9-]+\Z")
BASE_PATH_RE = re.compile(r"(/[A-Za-z0-9._~-]+)*\Z")


@dataclass
class Team:
    name: str
    members: list[str] = field(default_factory=list)
    header_groups: list[str] = field(default_factory=list)  # groups a proxy's groups header may carry
    oidc_groups: list[str] = field(default_factory=list)  # groups in the identity provider's groups claim
    ldap_groups: list[str] = field(default_factory=list)  # group DNs in the directory


@dataclass
class Access:
    """The `[pushbutton]` access settings (a part of Settings)."""

    auth: str = "token"
    admins: list[str] = field(default_factory=list)
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)  # networks, and the proxy secret
    user_header: str = "X-Forwarded-User"
    groups_header: str = ""
    session_idle: float = 8 * 3600.0
    session_max: float = 7 * 24 * 3600.0
    certfile: Path | None = None
    keyfile: Path | None = None
    base_path: str = ""


def _auth(raw: str) -> str:
    value = raw.strip().lower()
    if value not in AUTH_METHODS:
        raise ValueError(f"{raw!r} is not one of: {', '.join(AUTH_METHODS)}")
    return value


def _networks(raw: str) -> list:
    out = []
    for item in split_list(raw):
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network like 10.0.0.0/8") from None
    return out


def _header(raw: str) -> str:
    value = raw.strip()
    if value and not HEADER_RE.match(value):
        raise ValueError(f"{raw!r} is not a header name")
    return value


def base_path(raw: str) -> str:
    """`ops/`, `/ops`, `/ops/` -> `/ops`; `/` or empty -> `` (served at the root)."""
    value = "/" + raw.strip().strip("/") if raw.strip().strip("/") else ""
    if not BASE_PATH_RE.match(value) or any(part in (".", "..") for part in value.split("/")):
        raise ValueError(f"{raw!r} is not a path like /ops (letters, digits, '.', '_', '~', '-')")
    return value


class AccessChecks:
    """The reader's access keys: `[pushbutton]` settings, `[team:NAME]`, a job's run_by/view_by."""

    def access_setting(self, section: str, key: str, raw: str, access: Access) -> None:
        if key == "auth":
            access.auth = self.convert(section, key, raw, _auth, "token")
        elif key == "admins":
            access.admins = self.names(section, key, raw)
        elif key == "trusted_proxies":
            networks = self.convert(section, key, raw, _networks, [])
            access.trusted_proxies = TrustedProxies(networks, access.trusted_proxies.secret)
        elif key in ("proxy_secret", "proxy_secret_file"):
            self.proxy_secret(section, key, raw, access)
        elif key in ("user_header", "groups_header"):
            setattr(access, key, self.convert(section, key, raw, _header, ""))
        elif key in ("session_idle", "session_max"):
            setattr(access, key, self.convert(section, key, raw, positive_duration, getattr(access, key)))
        elif key in ("certfile", "keyfile"):
            path = (self.path.parent / os.path.expanduser(raw.strip())).resolve()
            try:
                with open(path, "rb"):
                    setattr(access, key, path)
            except OSError as exc:
                self.problem(section, key, f"cannot read {str(path)!r}: {exc.strerror}")
        elif key == "base_path":
            access.base_path = self.convert(section, key, raw, base_path, "")

    def proxy_secret(self, section: str, key: str, raw: str, access: Access) -> None:
        secret = raw.strip()
        if key == "proxy_secret":
            self.problem(section, key, "the proxy secret sits in jobs.ini, which is copied around: put it in a "
                         f"file (proxy_secret_file) or the environment ({PROXY_SECRET_ENV})", warning=True)
        else:
            path = (self.path.parent / os.path.expanduser(secret)).resolve()
            try:
                secret = path.read_bytes().decode("utf-8", "replace").strip("\r\n")
            except OSError as exc:
                self.problem(section, key, f"cannot read {str(path)!r}: {exc.strerror}")
                return
            if not secret:
                self.problem(section, key, f"{str(path)!r} is empty")
                return
        access.trusted_proxies = TrustedProxies(access.trusted_proxies, secret)

    def job_access(self, section: str, key: str, raw: str, job) -> None:
        """A job's run_by, view_by, approve_by (names) or approve_within (a duration)."""
        if key == "approve_within":
            job.approve_within = self.convert(section, key, raw, positive_duration)
        else:
            setattr(job, key, self.names(section, key, raw))

    def team(self, name: str, section: str, items) -> Team:
        team = Team(name=name)
        for key, raw in items.items():
            if key == "members":
                team.members = self.names(section, key, raw, teams_allowed=False)
            elif key in ("header_groups", "oidc_groups"):
                setattr(team, key, split_list(raw))
            elif key == "ldap_groups":  # DNs hold commas: one per line, or separated by ';'
                team.ldap_groups = [g.strip() for g in raw.replace("\n", ";").split(";") if g.strip()]
            else:
                self.problem(section, key, "unknown key")
        return team

    def names(self, section: str, key: str, raw: str, teams_allowed: bool = True) -> list[str]:
        """A list of user names, `team:NAME` (where allowed) and `*`; bad items are problems."""
        out = []
        for item in split_list(raw):
            if item == EVERYONE or USER_RE.match(item) or (teams_allowed and item.startswith("team:")):
                out.append(item)
            else:
                what = "a user name, team:NAME or *" if teams_allowed else "a user name"
                self.problem(section, key, f"{item!r} is not {what}")
        return out

    def check_access(self, access: Access, teams: dict[str, Team], jobs: dict) -> None:
        """Every `team:NAME` named must exist; settings that cannot work together are problems."""
        named = [("pushbutton", "admins", access.admins)]
        named += [(f"job:{job.id}", key, getattr(job, key)) for job in jobs.values() for key in JOB_NAME_KEYS]
        for section, key, items in named:
            for item in items:
                if item.startswith("team:") and item[5:] not in teams:
                    self.problem(section, key, f"{item} names no [team:{item[5:]}] section")
        for job in jobs.values():
            self.check_approvers(job, teams)
        if (access.certfile is None) != (access.keyfile is None):
            given, missing = ("keyfile", "certfile") if access.certfile is None else ("certfile", "keyfile")
            self.problem("pushbutton", given, f"{given} needs {missing}: they go together")
        if access.auth == "header" and not access.trusted_proxies:
            self.problem("pushbutton", "auth", "auth = header needs trusted_proxies: the addresses of the proxies "
                         "whose user header is believed")
        self.check_proxy_secret(access)
        if access.auth != "token" and not access.admins:
            self.problem("pushbutton", "admins", f"nobody is an admin: with auth = {access.auth}, name the admins "
                         "(admins = team:ops, alice), or jobs without run_by/view_by are for nobody", warning=True)

    def check_proxy_secret(self, access: Access) -> None:
        """A proxy on loopback proves nothing by its address: every local user and job shares it."""
        if self.has_key("proxy_secret") and self.has_key("proxy_secret_file"):
            self.problem("pushbutton", "proxy_secret", "set proxy_secret or proxy_secret_file, not both")
        proxies = access.trusted_proxies
        if not proxies.secret and os.environ.get(PROXY_SECRET_ENV, "").strip():
            access.trusted_proxies = proxies = TrustedProxies(proxies, os.environ[PROXY_SECRET_ENV].strip())
        if proxies.secret and not proxies:
            self.problem("pushbutton", "trusted_proxies", "a proxy secret is set but no trusted_proxies: it "
                         "does nothing", warning=True)
        loopback = any(net.version == lo.version and net.overlaps(lo) for net in proxies for lo in LOOPBACK)
        if access.auth == "header" and loopback and not proxies.secret:
            self.problem("pushbutton", "trusted_proxies", "a loopback address is trusted and no proxy secret is "
                         "set: any local user or job could sign in as anyone (set proxy_secret_file, "
                         "and have the proxy send it: docs/deploy.md)", warning=True)

    def check_approvers(self, job, teams: dict[str, Team]) -> None:
        """Warn when the second pair of eyes may be no second person: approvers who are every
        possible requester too (`*`, or approve_by covering run_by) approve one another's runs,
        and a lone approver who may run the job can never have their own runs approved."""
        section = f"job:{job.id}"
        if not job.approve_by:
            if job.approve_within is not None:
                self.problem(section, "approve_within", "approve_within does nothing without approve_by", warning=True)
            return
        if EVERYONE in job.approve_by or (job.run_by and set(job.run_by) <= set(job.approve_by)):
            self.problem(section, "approve_by", "everyone who may run this job may also approve it: requesters "
                         "would approve one another's runs (name approvers who do not run it)", warning=True)
            return
        team_names = [item[5:] for item in job.approve_by if item.startswith("team:")]
        people = {item for item in job.approve_by if not item.startswith("team:")}
        for name in team_names:
            team = teams.get(name)
            if team is None or team.header_groups or team.oidc_groups or team.ldap_groups:
                return  # members come from a provider too: their number is unknown here
            people |= set(team.members)
        runner_teams = {item[5:] for item in job.run_by if item.startswith("team:")}
        runs_it = any(p in job.run_by or any(p in teams[t].members for t in runner_teams if t in teams)
                      for p in people)
        if len(people) == 1 and runs_it:
            self.problem(section, "approve_by", f"the only approver, {next(iter(people))}, may also run this job: "
                         "their own runs can never be approved", warning=True)
