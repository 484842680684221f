"""A session is bound to the identity source it was opened under, as a personal API token is
(`identity.identity_source`: `auth`, and for ldap and oidc the directory tree or the provider that
names users). After ops point the server at another directory tree (or issuer) and restart, an
old session is nobody: the page offers the sign-in form, nothing fails. Switching back revives it
(within `session_idle` and `session_max`). A session of an older version, which names no source,
is ended at the upgrade."""

from __future__ import annotations

import sqlite3

import pytest

from tests.auth_helpers import add_user, local_jobs, sign_in
from tests.sso.ldap import slapd as S
from tests.test_auth_ldap import ldap_jobs, signed_in


@pytest.fixture(scope="module")
def directory():
    reason = S.missing()
    if reason:
        pytest.fail(f"LDAP tests cannot run: {reason}")
    d = S.start()
    yield d
    d.close()


def restart(pb, text: str) -> None:
    """Ops edit jobs.ini and restart the server on the same data dir and port (the browser's
    cookies are the same)."""
    port = pb.url.rsplit(":", 1)[1]
    pb.stop()
    pb.jobs.write_text(text)
    pb.start("--port", port)


def signed_out_page(c) -> None:
    """What the page sees: `/api/me` 401 (it shows the sign-in form), the page itself and the API
    answer as to anyone signed out, never a 500."""
    assert c.get("/api/me").status_code == 401
    assert c.get("/api/jobs").status_code == 401
    page = c.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()


def test_an_ldap_session_is_refused_after_a_restart_onto_another_directory_tree(pushbutton, write_jobs, directory,
                                                                                tmp_path):
    tree_a = ldap_jobs(directory, tmp_path)  # users under ou=people
    tree_b = ldap_jobs(directory, tmp_path, ldap_user_base=S.BASE)  # the whole tree: another source
    pb = pushbutton(write_jobs(tree_a))
    alice = signed_in(pb, "alice")
    assert alice.get("/api/me").json()["user"] == "alice"

    restart(pb, tree_b)  # within session_max (7 days), the same auth = ldap
    signed_out_page(alice)
    again = signed_in(pb, "alice")  # a sign-in under the new tree works, and is a session of it
    assert again.get("/api/me").json()["method"] == "ldap"

    restart(pb, tree_a)  # back to the tree it was opened under: the same people again
    assert alice.get("/api/me").json()["user"] == "alice"
    assert again.get("/api/me").status_code == 401


def test_a_session_of_an_older_version_without_a_source_is_ended_at_the_upgrade(pushbutton, write_jobs):
    pb = pushbutton(write_jobs(local_jobs()))
    add_user(pb, "bob")
    bob = sign_in(pb, "bob")
    assert bob.get("/api/me").json()["user"] == "bob"
    port = pb.url.rsplit(":", 1)[1]
    pb.stop()
    with sqlite3.connect(pb.data_dir / "history.sqlite3") as db:  # the sessions table as an older version had it
        db.executescript("""
            CREATE TABLE old (hash TEXT PRIMARY KEY, user TEXT NOT NULL, method TEXT NOT NULL,
                              groups TEXT NOT NULL DEFAULT '[]', created REAL NOT NULL, last_seen REAL NOT NULL);
            INSERT INTO old SELECT hash, user, method, groups, created, last_seen FROM sessions;
            DROP TABLE sessions;
            ALTER TABLE old RENAME TO sessions;
        """)
        assert db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 1
    pb.start("--port", port)
    signed_out_page(bob)
    with sqlite3.connect(pb.data_dir / "history.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 0  # ended, not kept
    assert sign_in(pb, "bob").get("/api/me").json()["user"] == "bob"
