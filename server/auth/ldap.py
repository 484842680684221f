"""`auth = ldap`: user names and passwords checked by a directory (OpenLDAP, Active Directory).

`POST /api/session` as with local accounts; the password is checked by binding to the directory
as the user (ldap_directory.py), whose groups (DNs) then go on the session and map to teams through
`[team:NAME] ldap_groups`. Directory calls block, so they run on the hub's threadpool, at most
`SLOTS` at once (more wait; beyond `MAX_WAITING` the answer is 503 at once), each socket bounded
by `ldap_timeout`: a slow directory slows only sign-ins, never the rest of the server. A directory
that is down is `Unavailable` (503), never a sign-in. ldap3 is imported when this method is
chosen, so servers with other methods do not pay for it at start-up.
"""

from __future__ import annotations

import logging

from server.auth.methods import Claim, Method, Unavailable, Wrong
from server.auth.passwords import OffHub

log = logging.getLogger("pushbutton")

SLOTS = 4  # directory calls at once: each may hold a threadpool thread for a few ldap_timeouts
MAX_WAITING = 64


class LdapMethod(Method):
    name = "ldap"
    uses_password = True

    def __init__(self, authn):
        super().__init__(authn)
        from server.auth import ldap_directory

        self.directory = ldap_directory
        self.settings = authn.catalog.settings.ldap
        if not (self.settings.url and self.settings.user_base):
            raise ValueError("auth = ldap needs ldap_url and ldap_user_base")
        self.slots = OffHub(SLOTS, MAX_WAITING)

    def current(self):
        """The settings as they are now: a reload may bring a rotated bind password (server/reload.py);
        every other `ldap_*` key needs a restart, so these are the start-up ones."""
        return self.authn.rights.catalog.settings.ldap

    def sign_in(self, name: str, password: str) -> Claim | Wrong | None:
        if not password:  # an unauthenticated bind "succeeds" on many directories: never a sign-in
            return None
        try:
            found = self.slots.run(self.directory.check_password, self.current(), name, password,
                                   self.authn.limiter.locked)
        except self.directory.DirectoryDown as exc:
            log.warning("LDAP sign-in of %r: the directory is not answering: %s", name[:100], exc)
            raise Unavailable("the directory is not answering: try again later") from None
        if found is None:
            return None
        return Claim(found.name, found.groups) if found.signed_in else Wrong(found.name)
