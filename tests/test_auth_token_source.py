"""A personal API token is bound to the identity source it was made under (`auth`, and for ldap and
oidc the directory or provider that names users): after ops switch `auth` and restart, the token is
refused (401, the reason in the log), `users tokens` shows it stale, and switching back revives it."""

from __future__ import annotations

import sqlite3

import pytest

from server.catalog import load as load_catalog
from tests.auth_helpers import add_user, bearer, local_jobs, sign_in, users

HEADER = """
[pushbutton]
auth = header
trusted_proxies = 10.0.0.0/8
admins = alice

[team:analysts]
members = bob

[job:report]
command = echo report
run_by = team:analysts
"""


@pytest.fixture
def pb(pushbutton, write_jobs):
    server = pushbutton(write_jobs(local_jobs()))
    add_user(server, "bob")
    return server


def switch(pb, text: str) -> None:
    """Ops edit `auth` in jobs.ini and restart the server on the same data dir."""
    pb.stop()
    pb.jobs.write_text(text)
    pb.start()


def test_a_token_made_under_one_auth_is_refused_after_a_switch_and_works_again_after_switching_back(pb):
    done = users(pb, "token", "bob", "--label", "ci")
    assert done.returncode == 0, done.stderr
    cli = done.stdout.splitlines()[-1]
    page = sign_in(pb, "bob").post("/api/tokens", json={"name": "nightly"}).json()
    for token in (cli, page["token"]):
        assert bearer(pb, token).get("/api/me").json()["user"] == "bob"

    switch(pb, HEADER)  # bob may now be whoever the proxy calls bob
    for token in (cli, page["token"]):
        assert bearer(pb, token).get("/api/me").status_code == 401
        assert bearer(pb, token).get("/api/jobs").status_code == 401
    log = pb.log.read_text()
    assert "made under auth = local" in log and "auth = header" in log, log[-2000:]
    listed = users(pb, "tokens", "bob")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [(r[1], r[2]) for r in rows] == [("ci", "stale: made under auth = local"),
                                            ("nightly", "stale: made under auth = local")]

    switch(pb, local_jobs())  # the same local accounts again: the same people
    for token in (cli, page["token"]):
        assert bearer(pb, token).get("/api/me").json()["user"] == "bob"
    assert [line.split("\t")[1:] for line in users(pb, "tokens", "bob").stdout.splitlines()] == [["ci"], ["nightly"]]


def test_the_access_token_mode_takes_no_personal_token(pb):
    token = users(pb, "token", "bob").stdout.splitlines()[-1]
    switch(pb, "[pushbutton]\nauth = token\n[job:report]\ncommand = echo report\n")
    assert bearer(pb, token).get("/api/me").status_code == 401


def test_a_stale_token_is_neither_listed_nor_revocable_from_the_page_of_the_new_source(pb, write_jobs):
    made = sign_in(pb, "bob").post("/api/tokens", json={"name": "old"}).json()
    switch(pb, local_jobs())
    bob = sign_in(pb, "bob")
    assert [t["name"] for t in bob.get("/api/tokens").json()["tokens"]] == ["old"]
    pb.stop()
    with sqlite3.connect(pb.data_dir / "history.sqlite3") as db:  # as if made under another source
        db.execute("UPDATE tokens SET source = 'oidc preferred_username at https://idp.example'")
    pb.start()
    bob = sign_in(pb, "bob")
    assert bob.get("/api/tokens").json()["tokens"] == []
    assert bob.delete(f"/api/tokens/{made['id']}").status_code == 404
    assert "stale: made under auth = oidc" in users(pb, "tokens", "bob").stdout


def test_tokens_of_an_older_version_are_taken_as_made_under_the_auth_the_server_next_starts_with(pb):
    token = users(pb, "token", "bob").stdout.splitlines()[-1]
    pb.stop()
    with sqlite3.connect(pb.data_dir / "history.sqlite3") as db:
        db.execute("UPDATE tokens SET source = NULL")
    pb.start()
    assert bearer(pb, token).get("/api/me").json()["user"] == "bob"
    switch(pb, HEADER)
    assert bearer(pb, token).get("/api/me").status_code == 401


def test_the_source_names_the_directory_or_provider_not_only_the_method(write_jobs):
    from server.auth.identity import identity_source

    def source(extra: str) -> str:
        jobs = write_jobs("[pushbutton]\n" + extra + "[job:a]\ncommand = true\n")
        return identity_source(load_catalog(jobs).settings)

    ldap = "auth = ldap\nldap_url = ldap://127.0.0.1\nldap_user_filter = (uid={user})\nldap_user_base = "
    oidc = "auth = oidc\noidc_client_id = pb\noidc_client_secret = s\noidc_issuer = "
    assert source("auth = local\n") == "local"
    assert source(ldap + "ou=people,dc=acme,dc=test\n") == source(ldap + "OU=People, DC=acme,DC=test\n")
    assert source(ldap + "ou=people,dc=acme,dc=test\n") != source(ldap + "ou=staff,dc=acme,dc=test\n")
    assert source(ldap + "ou=people,dc=acme,dc=test\n").startswith("ldap ")
    assert source(oidc + "https://idp.example/a\n") != source(oidc + "https://idp.example/b\n")
    assert source(oidc + "https://idp.example/a\n") != source(oidc + "https://idp.example/a\noidc_user_claim = sub\n")


def test_users_list_counts_stale_tokens_apart_as_users_tokens_marks_them(pb):
    assert users(pb, "token", "bob", "--label", "old").returncode == 0
    pb.jobs.write_text(HEADER)  # the command reads jobs.ini: no restart needed to see the switch
    assert users(pb, "token", "bob", "--label", "new").returncode == 0
    listed = users(pb, "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == ["bob\t2 token(s) (1 stale)"]
    assert [line.split("\t")[1:] for line in users(pb, "tokens", "bob").stdout.splitlines()] == [
        ["old", "stale: made under auth = local"], ["new"]]
    pb.jobs.write_text(local_jobs())  # back: the old one is live again, the header one stale
    assert users(pb, "list").stdout.splitlines() == ["bob\t2 token(s) (1 stale)"]
    assert users(pb, "revoke", "bob", "2").returncode == 0
    assert users(pb, "list").stdout.splitlines() == ["bob\t1 token(s)"]
