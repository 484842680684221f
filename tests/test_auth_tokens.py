"""Personal API tokens against a real server: made by the users command or the API, acting as their
user with that user's rights, listed without their value, and dead the moment they are revoked."""

from __future__ import annotations

import time

import pytest

from tests.auth_helpers import add_user, bearer, local_jobs, sign_in, users
from tests.helpers import wait_for


@pytest.fixture
def pb(pushbutton, write_jobs):
    server = pushbutton(write_jobs(local_jobs()))
    add_user(server, "alice")
    add_user(server, "bob")
    return server


def cli_token(pb, name: str) -> str:
    done = users(pb, "token", name, "--label", "ci")
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1]


def test_users_token_prints_a_token_alone_on_its_last_line_that_acts_as_the_user(pb):
    token = cli_token(pb, "bob")
    assert token.startswith("pb_") and len(token) >= 3 + 43  # 32 random bytes, base64url
    me = bearer(pb, token).get("/api/me")
    assert me.status_code == 200
    assert me.json() == {"user": "bob", "teams": ["analysts"], "admin": False, "method": "api-token", "auth": "local"}
    client = bearer(pb, token)
    assert [j["id"] for j in client.get("/api/jobs").json()["jobs"]] == ["report"]  # bob's rights, no more
    assert client.post("/api/jobs/report/runs", json={"params": {}}).status_code == 202
    assert client.post("/api/jobs/deploy/runs", json={"params": {}}).status_code == 404


def test_users_tokens_lists_without_values_and_users_revoke_stops_the_token_at_once(pb):
    token = cli_token(pb, "bob")
    listed = users(pb, "tokens", "bob")
    assert listed.returncode == 0
    token_id, label = listed.stdout.strip().split("\t")
    assert label == "ci" and token not in listed.stdout
    client = bearer(pb, token)
    assert client.get("/api/me").status_code == 200
    assert users(pb, "revoke", "alice", token_id).returncode == 1  # not alice's token
    assert client.get("/api/me").status_code == 200
    assert users(pb, "revoke", "bob", token_id).returncode == 0
    assert client.get("/api/me").status_code == 401
    assert users(pb, "tokens", "bob").stdout == ""


def test_users_token_needs_an_existing_user_with_auth_local(pb):
    done = users(pb, "token", "mallory")
    assert done.returncode == 1 and "no user" in done.stderr


def test_tokens_made_from_the_page_are_shown_once_listed_without_value_and_revocable(pb):
    bob = sign_in(pb, "bob")
    res = bob.post("/api/tokens", json={"name": "nightly  report"})
    assert res.status_code == 201
    made = res.json()
    assert made["name"] == "nightly report" and made["token"].startswith("pb_")
    listed = bob.get("/api/tokens")
    assert listed.json()["tokens"] == [{"id": made["id"], "name": "nightly report", "created": listed.json()
                                        ["tokens"][0]["created"], "last_used": None}]
    assert made["token"] not in listed.text
    script = bearer(pb, made["token"])
    assert script.get("/api/me").json()["user"] == "bob"
    wait_for(lambda: bob.get("/api/tokens").json()["tokens"][0]["last_used"] is not None)  # use is noted
    assert bob.delete(f"/api/tokens/{made['id']}").status_code == 204
    assert script.get("/api/me").status_code == 401
    assert bob.get("/api/tokens").json()["tokens"] == []
    assert bob.delete(f"/api/tokens/{made['id']}").status_code == 404


def test_a_user_can_neither_list_nor_revoke_another_users_tokens(pb):
    made = sign_in(pb, "bob").post("/api/tokens", json={"name": "mine"}).json()
    alice = sign_in(pb, "alice")
    assert alice.get("/api/tokens").json()["tokens"] == []
    assert alice.delete(f"/api/tokens/{made['id']}").status_code == 404
    assert bearer(pb, made["token"]).get("/api/me").status_code == 200


def test_a_token_cannot_make_more_tokens(pb):
    client = bearer(pb, cli_token(pb, "bob"))
    assert client.post("/api/tokens", json={"name": "another"}).status_code == 403
    assert client.get("/api/tokens").status_code == 200


def test_a_token_name_is_required_and_bounded(pb):
    bob = sign_in(pb, "bob")
    for name in ("", "   ", "x" * 101, "line\x00break", 7):
        assert bob.post("/api/tokens", json={"name": name}).status_code == 400, name


def test_removing_a_user_revokes_their_tokens(pb):
    client = bearer(pb, cli_token(pb, "bob"))
    assert client.get("/api/me").status_code == 200
    assert users(pb, "remove", "bob").returncode == 0
    assert client.get("/api/me").status_code == 401


def test_an_unknown_or_forged_token_is_anonymous(pb):
    real = cli_token(pb, "bob")
    for forged in ("pb_", "pb_" + "A" * 43, real[:-1] + ("A" if real[-1] != "A" else "B"), real + "x"):
        assert bearer(pb, forged).get("/api/me").status_code == 401, forged
    time.sleep(0)  # the real one still works after all those
    assert bearer(pb, real).get("/api/me").status_code == 200
