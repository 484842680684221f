"""The user a request acts as: a name, the teams it belongs to, and whether it is an admin.

Sign-in methods produce a name (and, for a proxy or an identity provider, groups); `Rights`
turns that into a `User` from jobs.ini's teams and admins, so a change to jobs.ini changes what a
signed-in user may do at once.
"""

from __future__ import annotations

import functools
import getpass
from dataclasses import dataclass, field

from server.catalog_ldap import dn_key


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


def identity_source(settings) -> str:
    """What names users on a server with these settings: its `auth`, and for `ldap` and `oidc` the
    directory tree (the name attribute under `ldap_user_base`, the base compared as a DN) or the
    provider (the user claim at `oidc_issuer`). A personal API token is bound to the source it was
    made under: another source may call someone else by the same name, so there it is refused."""
    if settings.auth == "ldap":
        base = ",".join("+".join(f"{attr}={value}" for attr, value in rdn) for rdn in dn_key(settings.ldap.user_base))
        return f"ldap {settings.ldap.name_attribute or 'name'} under {base}"
    if settings.auth == "oidc":
        return f"oidc {settings.oidc.user_claim or 'sub'} at {settings.oidc.issuer}"
    return settings.auth


def describe_source(source: str | None) -> str:
    """`local` -> `auth = local`; `oidc sub at https://idp` -> `auth = oidc (sub at https://idp)`."""
    method, _, rest = (source or "an older version").partition(" ")
    return f"auth = {method}" + (f" ({rest})" if rest else "") if source else "an older version"
