"""What a user may do, from jobs.ini: teams, admins, and each job's `run_by`, `view_by`, `approve_by`.

Read from the catalog on every question, never cached, so what a user may do is always what
jobs.ini says. A job that names nobody is for admins only (the safe default); `run_by` and
`approve_by` imply view (an approver must see what they approve); `*` is every signed-in user.
Anonymous (None) may do nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from server.auth.identity import User
from server.catalog import Catalog, Job
from server.catalog_access import EVERYONE, Team
from server.catalog_ldap import dn_keys


class Rights:
    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def user_for(self, name: str, groups: Iterable[str] = (), method: str = "local") -> User:
        """The User a sign-in method's name (and a provider's groups) stands for: its teams are
        those listing it as a member or one of its groups among the team's groups for its method
        (`header_groups`, `oidc_groups`, `ldap_groups`)."""
        groups = frozenset(groups)
        teams = frozenset(t.name for t in self.catalog.teams.values()
                          if name in t.members or _in_groups(t, groups, method))
        admin = _named(self.catalog.settings.admins, name, teams)
        return User(name, teams, admin, method, groups)

    def can_view(self, user: User | None, job: Job | None) -> bool:
        if user is None:
            return False
        if user.admin:
            return True  # a removed job's runs included
        return job is not None and _named([*job.run_by, *job.view_by, *job.approve_by], user.name, user.teams)

    def can_run(self, user: User | None, job: Job | None) -> bool:
        if user is None or job is None:
            return False  # a run of a job no longer in jobs.ini cannot run again
        return user.admin or _named(job.run_by, user.name, user.teams)

    def can_view_run(self, user: User | None, record: dict) -> bool:
        """A run is seen by whoever sees its job; a removed job's runs by admins only."""
        return self.can_view(user, self.catalog.jobs.get(record["job"]))

    def can_stop(self, user: User | None, record: dict) -> bool:
        """Admins stop any run; a runner stops the runs they started."""
        if user is None:
            return False
        if user.admin:
            return True
        return record.get("user") == user.name and self.can_run(user, self.catalog.jobs.get(record["job"]))

    def can_approve(self, user: User | None, record: dict) -> bool:
        """Named in the job's approve_by, sees the job, and is not who requested the run: the
        second person of the two-person rule (the requester's own API tokens carry their name,
        so they cannot approve either). Admins are approvers only where approve_by names them."""
        job = self.catalog.jobs.get(record["job"])
        if user is None or job is None or not self.can_view(user, job) or user.name == record.get("user"):
            return False
        return _named(job.approve_by, user.name, user.teams)

    def visible_job_ids(self, user: User | None) -> set[str]:
        return {job_id for job_id, job in self.catalog.jobs.items() if self.can_view(user, job)}


def _in_groups(team: Team, groups: frozenset[str], method: str) -> bool:
    """Is one of the groups a method's provider sent one of the team's groups for that method? A
    directory's group DNs compare as DNs (case, spaces, escapes: `dn_keys`)."""
    if not groups:
        return False
    if method == "ldap":
        return bool(dn_keys(groups) & dn_keys(team.ldap_groups))
    if method == "oidc":  # an identity provider's group names or ids, compared exactly
        return bool(groups & set(team.oidc_groups))
    return method == "header" and bool(groups & set(team.header_groups))


def _named(items: Iterable[str], name: str, teams: frozenset[str]) -> bool:
    """Does a list of user names, `team:NAME` and `*` include this signed-in user?"""
    return any(item == EVERYONE or (item[5:] in teams if item.startswith("team:") else item == name)
               for item in items)  # a team item is never a user's name: a directory may name one `team:ops`
