"""`pushbutton users ...`: local accounts and personal API tokens, from the server's terminal.

They work on the data dir's database while the server runs (SQLite, one more writer), and take
effect at once: a new password or a removed user ends that user's sessions. A password is read
from stdin when stdin is not a terminal (one line), else asked twice without echo; never from the
command line, where `ps` would show it. Every change goes to the audit log as `cli:<OS user>`.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from server.auth.audit import Audit
from server.auth.identity import describe_source, identity_source, os_user
from server.auth.passwords import hash_password
from server.auth.users import UserError, Users, check_name, is_stale
from server.catalog import Catalog
from server.datadir import DB_NAME, require_history
from server.store import Store

MIN_PASSWORD = 8
MAX_PASSWORD = 1024


def add_parser(sub) -> None:
    users = sub.add_parser("users", help="local accounts (auth = local) and personal API tokens")
    actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    for name, help_text in (("add", "add a user (password from stdin, or asked twice)"),
                            ("passwd", "set a user's password (ends their sessions)"),
                            ("remove", "remove a user: their sessions end, their tokens are revoked"),
                            ("list", "list the users"),
                            ("token", "make a personal API token for a user; printed alone on the last line"),
                            ("tokens", "list a user's tokens (never their values)"),
                            ("revoke", "revoke one of a user's tokens by its id")):
        action = actions.add_parser(name, help=help_text)
        if name != "list":
            action.add_argument("name", metavar="NAME")
        if name == "token":
            action.add_argument("--label", default="cli", help="what the token is for (default: cli)")
        if name == "revoke":
            action.add_argument("token_id", metavar="ID", type=int)
        action.add_argument("--jobs", metavar="PATH", dest="sub_jobs")
        action.add_argument("--data-dir", metavar="DIR", dest="sub_data_dir")


def main(args: argparse.Namespace, catalog: Catalog, data_dir: Path) -> int:
    """Every action but `add` needs the history the server keeps: a mistyped --data-dir is refused
    as `audit` refuses it. `add` may begin one (a new install adds its first user before the
    server ever starts), and says so."""
    if args.users_command != "add":
        require_history(data_dir)
    elif not (data_dir / DB_NAME).is_file():
        print(f"pushbutton: note: no history in {data_dir} yet: starting one (check --data-dir if the server "
              "already ran)", file=sys.stderr)
    store = Store(data_dir)
    try:
        return _run(args, catalog, Users(store, on_hub=False), Audit(store))
    except UserError as exc:
        print(f"pushbutton: {exc}", file=sys.stderr)
        return 1
    except (EOFError, KeyboardInterrupt):
        print("pushbutton: no password given", file=sys.stderr)
        return 2
    finally:
        store.close()  # flushes the audit entries


def _run(args: argparse.Namespace, catalog: Catalog, users: Users, audit: Audit) -> int:
    action, name = args.users_command, getattr(args, "name", "")
    actor = f"cli:{os_user()}"
    source = identity_source(catalog.settings)  # a token of another source than jobs.ini's is refused: say so
    if action == "list":
        for user in users.list(source):
            stale = f" ({user['stale']} stale)" if user["stale"] else ""
            print(f"{user['user']}\t{user['tokens']} token(s){stale}")
        return 0
    if action in ("tokens", "revoke") and not users.known(name):
        raise UserError(f"no user {name!r} (no account, and no token was ever made for that name)")
    if action == "tokens":
        for token in users.all_tokens(name):
            made = token["source"]
            stale = f"\tstale: made under {describe_source(made)}" if is_stale(made, source) else ""
            print(f"{token['id']}\t{token['name']}{stale}")
        return 0
    if action == "add":
        check_name(name)
        if catalog.settings.auth != "local":
            print(f"pushbutton: note: {catalog.path} has auth = {catalog.settings.auth}; local accounts "
                  "sign in only with auth = local", file=sys.stderr)
        users.add(name, hash_password(read_password()))
        audit.record("user.add", actor, target=f"user:{name}")
        print(f"added user {name}")
    elif action == "passwd":
        if not users.exists(name):
            raise UserError(f"no user {name!r}")
        users.set_hash(name, hash_password(read_password()))
        audit.record("user.passwd", actor, target=f"user:{name}")
        print(f"changed the password of {name}; their sessions have ended")
    elif action == "remove":
        users.remove(name)
        audit.record("user.remove", actor, target=f"user:{name}")
        print(f"removed user {name}; their sessions have ended and their tokens are revoked")
    elif action == "token":
        check_name(name)
        if catalog.settings.auth == "token":
            raise UserError("personal tokens need auth = local, header, ldap or oidc (with auth = token the access "
                            "token is the credential)")
        if catalog.settings.auth == "local" and not users.exists(name):
            raise UserError(f"no user {name!r} (add it first: pushbutton users add {name})")
        token_id, value = users.create_token(name, args.label, source)
        audit.record("token.create", actor, target=f"token:{token_id}", detail={"for": name})
        print(f"token {token_id} for {name} (shown once; revoke with: pushbutton users revoke {name} {token_id}):")
        print(value)
    elif action == "revoke":
        if not users.revoke_token(name, args.token_id):
            raise UserError(f"{name} has no live token {args.token_id}")
        audit.record("token.revoke", actor, target=f"token:{args.token_id}", detail={"for": name})
        print(f"revoked token {args.token_id} of {name}")
    return 0


def read_password() -> str:
    """One line of stdin when it is not a terminal; else asked twice, hidden."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        password = line.removesuffix("\n").removesuffix("\r")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise UserError("the two passwords differ")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UserError(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password
