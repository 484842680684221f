"""What a job's process, and a `choices_from` command's, inherits from the server's environment:
all of it but the server's own credentials. Ops hand those over in the environment because a
command line is visible to every user of the machine; a job that printed its environment (`env`
on an error, a debug job) would otherwise show them to everyone allowed to read its output."""

from __future__ import annotations

import os

from server.catalog_access import PROXY_SECRET_ENV
from server.catalog_ldap import PASSWORD_ENV
from server.catalog_oidc import SECRET_ENV

TOKEN_ENV = "PUSHBUTTON_TOKEN"  # the headless server's API token (cli.py)
CREDENTIALS = (TOKEN_ENV, SECRET_ENV, PASSWORD_ENV, PROXY_SECRET_ENV)


def inherited() -> dict[str, str]:
    """The server's environment without its credentials, read now (a test may change it)."""
    env = dict(os.environ)
    for name in CREDENTIALS:
        env.pop(name, None)
    return env
