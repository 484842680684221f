"""Rights over a real jobs.ini with teams: who sees, runs and stops what."""

from __future__ import annotations

import pytest

from server import catalog as C
from server.auth.identity import User
from server.auth.rights import Rights

JOBS = """
    [pushbutton]
    auth = local
    admins = team:ops, root
    [team:ops]
    members = olga
    [team:analysts]
    members = ann, alan
    header_groups = cn=analysts, cn=data
    [team:devs]
    members = dev, ann
    [job:report]
    command = true
    run_by = team:analysts
    view_by = team:devs
    [job:status]
    command = true
    view_by = *
    [job:nobody]
    command = true
    [job:carols]
    command = true
    run_by = carol
    """


@pytest.fixture
def rights(write_jobs) -> Rights:
    return Rights(C.load(write_jobs(JOBS)))


def test_user_for_fills_teams_from_members_and_proxy_groups_and_admin_from_admins(rights):
    ann = rights.user_for("ann", method="local")
    assert ann == User("ann", frozenset({"analysts", "devs"}), admin=False, method="local")
    proxied = rights.user_for("zed", ["cn=data", "cn=other"], "header")
    assert proxied.teams == {"analysts"} and proxied.groups == {"cn=data", "cn=other"} and not proxied.admin
    assert rights.user_for("olga").admin and rights.user_for("olga").teams == {"ops"}
    assert rights.user_for("root").admin and rights.user_for("root").teams == frozenset()
    assert rights.user_for("stranger") == User("stranger", method="local")


def test_a_user_named_like_a_team_is_not_that_team(rights):
    """A directory's names are its own (an LDAP uid may hold `:`): `team:ops` as a user name must
    not match `admins = team:ops`, nor `run_by = team:analysts` give that user the job."""
    impostor = rights.user_for("team:ops", method="ldap")
    assert not impostor.admin and impostor.teams == frozenset()
    analysts = rights.user_for("team:analysts", method="ldap")
    assert not rights.can_run(analysts, rights.catalog.jobs["report"])


def test_run_by_implies_view_and_view_by_grants_no_run(rights):
    report = rights.catalog.jobs["report"]
    alan, dev = rights.user_for("alan"), rights.user_for("dev")
    assert rights.can_view(alan, report) and rights.can_run(alan, report)
    assert rights.can_view(dev, report) and not rights.can_run(dev, report)
    carol = rights.user_for("carol")
    assert not rights.can_view(carol, report) and not rights.can_run(carol, report)
    assert rights.can_run(carol, rights.catalog.jobs["carols"])


def test_a_job_that_names_nobody_is_for_admins_only(rights):
    nobody = rights.catalog.jobs["nobody"]
    for name in ("ann", "dev", "carol", "stranger"):
        user = rights.user_for(name)
        assert not rights.can_view(user, nobody) and not rights.can_run(user, nobody), name
    for name in ("olga", "root"):
        assert rights.can_view(rights.user_for(name), nobody) and rights.can_run(rights.user_for(name), nobody)


def test_star_is_every_signed_in_user_and_anonymous_may_do_nothing(rights):
    status = rights.catalog.jobs["status"]
    assert rights.can_view(rights.user_for("stranger"), status)
    assert not rights.can_run(rights.user_for("stranger"), status)
    for job in rights.catalog.jobs.values():
        assert not rights.can_view(None, job) and not rights.can_run(None, job)
    assert rights.visible_job_ids(None) == set()
    assert not rights.can_stop(None, {"job": "status", "user": None})


def test_visible_job_ids_per_user(rights):
    assert rights.visible_job_ids(rights.user_for("alan")) == {"report", "status"}
    assert rights.visible_job_ids(rights.user_for("dev")) == {"report", "status"}
    assert rights.visible_job_ids(rights.user_for("carol")) == {"carols", "status"}
    assert rights.visible_job_ids(rights.user_for("olga")) == {"report", "status", "nobody", "carols"}


def test_runners_stop_their_own_runs_admins_any_viewers_none(rights):
    alan, ann, dev, olga = (rights.user_for(n) for n in ("alan", "ann", "dev", "olga"))
    alans = {"job": "report", "user": "alan"}
    assert rights.can_stop(alan, alans)
    assert not rights.can_stop(ann, alans)  # a runner of the same job, not the one who started it
    assert not rights.can_stop(dev, alans) and not rights.can_stop(dev, {"job": "report", "user": "dev"})
    assert rights.can_stop(olga, alans) and rights.can_stop(olga, {"job": "report", "user": "cli:someone"})


def test_runs_of_a_job_removed_from_jobs_ini_are_for_admins_only(rights):
    gone = {"job": "removed", "user": "alan"}
    assert not rights.can_view_run(rights.user_for("alan"), gone)
    assert not rights.can_stop(rights.user_for("alan"), gone)
    assert rights.can_view_run(rights.user_for("olga"), gone)
    assert not rights.can_run(rights.user_for("olga"), None)


def test_the_token_holder_is_an_admin_who_sees_everything(rights):
    token = User("me", admin=True, method="token")
    assert rights.visible_job_ids(token) == set(rights.catalog.jobs)
    assert all(rights.can_run(token, job) for job in rights.catalog.jobs.values())
