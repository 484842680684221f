"""The user a request acts as: a name, the teams it belongs to, and whether it is an admin.

Sign-in methods produce a name (and, for a proxy or an identity provider, groups); `Rights`
turns that into a `User` from jobs.ini's teams and admins, so a change to jobs.ini changes what a
signed-in user may do at once.
"""

from __future__ import annotations

import functools
import getpass
from dataclasses import dataclass, field

METHODS = ("token", "local", "header")  # [pushbutton] auth; the next issue adds oidc and ldap


@dataclass(frozen=True)
class User:
    name: str
    teams: frozenset[str] = field(default_factory=frozenset)
    admin: bool = False
    method: str = "token"  # token | local | header | api-token | cli
    groups: frozenset[str] = field(default_factory=frozenset)  # as the provider sent them

    def public(self) -> dict:
        return {"user": self.name, "teams": sorted(self.teams), "admin": self.admin, "method": self.method}


@functools.cache
def os_user() -> str:
    """The account this process runs as: the one user of `auth = token` (the desktop window).
    Looked up once: every request of that mode names it (a passwd lookup each time)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container) and no LOGNAME
        return "local"
