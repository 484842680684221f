"""Who is asking, and what they may do: sign-in methods, sessions, tokens, rights, the audit log.

Modules, one concern each: `guard` (per-launch token, Host and Origin checks), `identity` (the
`User` a request acts as), `schema` (the tables), `rights` and `rules` (what a user may do, and the
rule every route declares), `passwords`, `users`, `sessions`, `limits`, `methods`, `authenticate`
(signing in), `audit` (what was done, by whom).
"""

from server.auth.guard import Guard, new_token

__all__ = ["Guard", "new_token"]
