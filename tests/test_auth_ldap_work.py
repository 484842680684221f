"""An LDAP sign-in does the same directory work whether the name exists or not: a wrong password for
a real user costs a connection and a bind as that user, so an unknown name (or one matching several
entries, or a locked one) does a bind too, against a DN that does not exist. Otherwise an unknown
name answers one round trip sooner (two and more with StartTLS or ldaps), telling a guesser which
names exist. Counted in-process around ldap3's Connection against the real slapd
(tests/sso/ldap/slapd.py), not timed: a wall clock on a busy machine would decide nothing."""

from __future__ import annotations

import pytest

from server.auth import ldap_directory as L
from server.catalog_ldap import Ldap
from tests.sso.ldap import slapd as S


@pytest.fixture(scope="module")
def directory():
    reason = S.missing()
    if reason:
        pytest.fail(f"LDAP tests cannot run: {reason}")
    d = S.start()
    yield d
    d.close()


@pytest.fixture
def work(monkeypatch):
    """The directory operations of each sign-in, in order: ('connect',), ('bind', who), ('search', base)."""
    done: list[tuple] = []

    class Counting(L.Connection):
        def __init__(self, server, user=None, **kwargs):
            done.append(("connect", server.name))
            self._who = "service" if user == S.SERVICE_DN else "other"
            super().__init__(server, user=user, **kwargs)

        def bind(self, *args, **kwargs):
            done.append(("bind", self._who))
            return super().bind(*args, **kwargs)

        def search(self, base, *args, **kwargs):
            done.append(("search", base))
            return super().search(base, *args, **kwargs)

    monkeypatch.setattr(L, "Connection", Counting)
    return done


def config(d: S.Slapd, **keys) -> Ldap:
    values = {"url": [d.url], "bind_dn": S.SERVICE_DN, "bind_password": S.SERVICE_PW, "user_base": S.PEOPLE,
              "user_filter": "(uid={user})", "group_base": S.GROUPS, "group_filter": "(member={dn})",
              "timeout": 5.0, **keys}
    return Ldap(**values)


def sign_in(cfg: Ldap, work: list, name: str, password: str, locked=lambda canonical: False):
    work.clear()
    found = L.check_password(cfg, name, password, locked)
    return found, list(work)


@pytest.mark.parametrize("starttls", [False, True])
def test_an_unknown_name_does_the_same_directory_work_as_a_wrong_password(directory, work, starttls):
    cfg = config(directory, starttls=starttls, ca_file=str(directory.ca))
    wrong, wrong_work = sign_in(cfg, work, "alice", "not-her-password")
    unknown, unknown_work = sign_in(cfg, work, "zoe", "not-her-password")
    assert wrong == L.Found("alice", signed_in=False) and unknown is None
    assert unknown_work == wrong_work
    assert [op for op in wrong_work if op[0] != "search"] == [("connect", directory.url), ("bind", "service"),
                                                              ("connect", directory.url), ("bind", "other")]


def test_a_name_matching_several_entries_or_a_locked_one_does_that_work_too(directory, work):
    _, wrong_work = sign_in(config(directory), work, "alice", "not-her-password")
    several = config(directory, user_filter="(|(uid={user})(objectClass=inetOrgPerson))")
    found, several_work = sign_in(several, work, "alice", "not-her-password")
    assert found is None and several_work == wrong_work
    found, locked_work = sign_in(config(directory), work, "alice", S.password("alice"), locked=lambda c: True)
    assert found == L.Found("alice", signed_in=False) and locked_work == wrong_work  # never her real bind


def test_the_right_password_still_signs_in_and_no_decoy_bind_ever_does(directory, work):
    found, _ = sign_in(config(directory), work, "alice", S.password("alice"))
    assert found is not None and found.signed_in and found.name == "alice"
    # The decoy DN is under the user base but names no entry: not even the service's password binds it.
    found, _ = sign_in(config(directory), work, "zoe", S.SERVICE_PW)
    assert found is None
