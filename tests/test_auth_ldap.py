"""`auth = ldap` against a real OpenLDAP slapd (tests/sso/ldap/slapd.py) through a real server:
groups to teams, wrong and empty passwords, filter characters in names, a directory that is down
or hung, StartTLS and ldaps with a CA file, the bind password kept out of logs and the data dir,
the route matrix for directory users, and `check` problems."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from server.auth.ldap_directory import check_password, fill
from server.auth.limits import PER_NAME
from server.catalog_ldap import PASSWORD_ENV, Ldap, dn_key
from tests import test_route_matrix as matrix
from tests.auth_helpers import client, data_files, session_name, users
from tests.helpers import BIN, wait_for
from tests.sso.ldap import slapd as S
from tests.test_auth_leaks import secrets_in

NOT_ANSWERING = {"error": "the directory is not answering: try again later"}


@pytest.fixture(scope="module")
def directory():
    reason = S.missing()
    if reason:
        pytest.fail(f"LDAP tests cannot run: {reason}")
    d = S.start()
    yield d
    d.close()


@pytest.fixture
def own_directory():
    """A directory of this test's own, to stop and start."""
    d = S.start()
    yield d
    d.close()


def settings(d: S.Slapd, tmp_path: Path, **keys: str | None) -> str:
    """The [pushbutton] keys of a directory server; a key given None is left out."""
    secret = tmp_path / "bind-password"
    secret.write_text(S.SERVICE_PW + "\n")
    values = {"auth": "ldap", "admins": "team:ops", "ldap_url": d.url, "ldap_bind_dn": S.SERVICE_DN,
              "ldap_bind_password_file": str(secret), "ldap_user_base": S.PEOPLE, "ldap_group_base": S.GROUPS,
              "ldap_timeout": "2s", **keys}
    return "".join(f"{k} = {v}\n" for k, v in values.items() if v is not None)


def ldap_jobs(d: S.Slapd, tmp_path: Path, **keys: str | None) -> str:
    # The team's DNs are written in another case and spacing than the directory's: DNs compare as DNs.
    return "[pushbutton]\n" + settings(d, tmp_path, **keys) + f"""
[team:ops]
ldap_groups = {S.group_dn("ops")}

[team:analysts]
ldap_groups = CN=Analysts, OU=Groups, DC=Acme, DC=Test ; cn=unused,{S.GROUPS}

[job:report]
command = echo report
run_by = team:analysts

[job:deploy]
command = echo deploy
"""


@pytest.fixture
def server(pushbutton, write_jobs, directory, tmp_path):
    def start(**keys: str | None):
        return pushbutton(write_jobs(ldap_jobs(directory, tmp_path, **keys)))

    return start


def attempt(pb, name: str, password: str, source: str = "127.0.0.1") -> httpx.Response:
    return client(pb, source).post("/api/session", json={"user": name, "password": password})


def signed_in(pb, name: str, password: str | None = None) -> httpx.Client:
    c = client(pb)
    res = c.post("/api/session", json={"user": name, "password": password or S.password(name)})
    assert res.status_code == 200, res.text
    return c


def jobs_of(c: httpx.Client) -> list[str]:
    return sorted(j["id"] for j in c.get("/api/jobs").json()["jobs"])


@pytest.mark.parametrize("groups", ["group search", "memberOf"])
def test_directory_users_sign_in_and_their_groups_are_their_teams(server, groups):
    keys = {"ldap_group_base": None, "ldap_groups_attribute": "memberOf"} if groups == "memberOf" else {}
    pb = server(**keys)
    alice = client(pb)
    res = alice.post("/api/session", json={"user": "alice", "password": S.password("alice")})
    assert res.status_code == 200
    assert res.json() == {"user": "alice", "teams": ["analysts"], "admin": False, "method": "ldap", "auth": "ldap"}
    assert f"{session_name(pb)}=" in res.headers["set-cookie"] and "HttpOnly" in res.headers["set-cookie"]
    assert jobs_of(alice) == ["report"]
    olga = signed_in(pb, "olga")
    assert olga.get("/api/me").json()["admin"] is True  # admins = team:ops, ops from the directory
    assert jobs_of(olga) == ["deploy", "report"]
    # the directory's spelling is the user name, whatever case was typed
    assert signed_in(pb, "ALICE", S.password("alice")).get("/api/me").json()["user"] == "alice"
    assert alice.delete("/api/session").status_code == 204
    assert alice.get("/api/me").status_code == 401


def test_a_wrong_password_or_an_unknown_user_is_refused_alike(server):
    pb = server()
    wrong, unknown = attempt(pb, "alice", "not-her-password"), attempt(pb, "zoe", "any-password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"error": "wrong user name or password"}
    assert "set-cookie" not in wrong.headers and "set-cookie" not in unknown.headers
    assert attempt(pb, "alice", S.password("olga")).status_code == 401  # another user's password


def test_an_empty_password_never_signs_in_though_the_directory_accepts_it_as_anonymous(server, directory):
    pb = server()
    res = attempt(pb, "alice", "")
    assert res.status_code == 400 and "set-cookie" not in res.headers
    # This directory, like many, takes a DN with an empty password as an (anonymous) bind...
    whoami = subprocess.run(["ldapwhoami", "-x", "-H", directory.url, "-D", S.user_dn("alice"), "-w", ""],
                            capture_output=True, text=True, timeout=30)
    assert whoami.returncode == 0 and whoami.stdout.strip() == "anonymous"
    # ...so the method refuses it itself, whoever calls it.
    cfg = Ldap(url=[directory.url], bind_dn=S.SERVICE_DN, bind_password=S.SERVICE_PW, user_base=S.PEOPLE)
    assert check_password(cfg, "alice", "") is None
    assert check_password(cfg, "alice", S.password("alice")) is not None


def test_a_user_in_no_team_signs_in_and_sees_no_job(server):
    nick = signed_in(server(), "nick")
    assert nick.get("/api/me").json() == {"user": "nick", "teams": [], "admin": False, "method": "ldap",
                                          "auth": "ldap"}
    assert jobs_of(nick) == []


def test_filter_characters_in_a_name_match_only_that_name(server):
    pb = server()
    injector = signed_in(pb, S.INJECTION)  # a real user named `a*)(uid=*`: exactly that user, no team
    assert injector.get("/api/me").json()["user"] == S.INJECTION and jobs_of(injector) == []
    bob = signed_in(pb, S.BACKSLASH)  # DN `cn=bob\5C\28,...`: the group search escapes the DN too
    assert bob.get("/api/me").json()["teams"] == ["analysts"]
    names = ("*", "a*", "*)(uid=*", "alice)(|(uid=*", "alice*", "al*ce", "*)(objectClass=*", "bob\\", "\\2a",
             "alice\x00", "bob\\5c\\28", S.INJECTION.upper() + "*")
    for n, name in enumerate(names, 2):
        for password in (S.password("alice"), S.password(S.INJECTION), S.password(S.BACKSLASH)):
            res = attempt(pb, name, password, f"127.0.0.{n}")  # each name from its own address: no lock
            assert res.status_code == 401, (name, res.status_code, res.text)
    assert fill("(&(uid={user})(member={dn}))", user="*)(uid=*", dn="cn=a\\,b") == \
        "(&(uid=\\2a\\29\\28uid=\\2a)(member=cn=a\\5c,b))"


def test_a_user_found_by_another_attribute_signs_in_under_the_name_attributes_value(server):
    """With a filter that matches two attributes (AD's sAMAccountName or userPrincipalName), one
    person typing either spelling is one user, named by the first attribute: two names would let
    them approve their own run under the other."""
    pb = server(ldap_user_filter="(|(uid={user})(cn={user}))")
    for typed in (S.INJECTION, "Injection Test", "injection test"):  # its uid, its cn in two cases
        assert signed_in(pb, typed, S.password(S.INJECTION)).get("/api/me").json()["user"] == S.INJECTION
    assert signed_in(pb, "ALICE", S.password("alice")).get("/api/me").json()["user"] == "alice"

def test_failed_sign_ins_are_limited_as_for_local_accounts(server):
    pb = server()
    for _ in range(PER_NAME):
        assert attempt(pb, "olga", "guess").status_code == 401
    locked = attempt(pb, "olga", S.password("olga"))
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0


def test_a_locked_name_stays_locked_under_every_spelling_the_directory_takes(server):
    """The directory matches names loosely (`ｏｌｇａ` finds olga; with an alias filter, a cn finds
    its uid), so a guesser could otherwise take 5 guesses per spelling. Each attempt comes from a
    new address, as from a botnet: only the per-name limit applies."""
    sources = iter(f"127.0.{n // 200}.{n % 200 + 2}" for n in range(1000))

    def tries(pb, name: str, password: str) -> int:
        return attempt(pb, name, password, next(sources)).status_code

    pb = server(ldap_user_filter="(|(uid={user})(cn={user}))")
    assert [tries(pb, "olga", "guess") for _ in range(PER_NAME)] == [401] * PER_NAME
    for spelling in ("ｏｌｇａ", " OLGA", "ol\u00adga", "ｏlga"):  # fullwidth, case, space, soft hyphen
        assert tries(pb, spelling, S.password("olga")) == 429, spelling
    assert [tries(pb, S.INJECTION, "guess") for _ in range(PER_NAME)] == [401] * PER_NAME
    assert tries(pb, "Injection Test", S.password(S.INJECTION)) == 401  # its cn: found, locked, not tried
    assert tries(pb, S.INJECTION, S.password(S.INJECTION)) == 429

    pb = server(ldap_user_filter="(|(uid={user})(cn={user}))")  # failures under the cn lock the uid
    assert [tries(pb, "Injection Test", "guess") for _ in range(PER_NAME)] == [401] * PER_NAME
    assert tries(pb, S.INJECTION, S.password(S.INJECTION)) == 429
    assert signed_in(pb, "alice").get("/api/me").json()["user"] == "alice"  # others unaffected


def test_a_rotated_bind_password_file_is_applied_by_a_reload_and_later_edits_still_apply(
        pushbutton, write_jobs, own_directory, tmp_path):
    """Ops rotate the service account's password in the directory, replace the file jobs.ini names
    and send SIGHUP, as docs/reload.md says: sign-ins work again, with no restart, and the next
    edit of jobs.ini applies (the rotation was once refused as "needs a restart", and every later
    reload with it)."""
    pb = pushbutton(write_jobs(ldap_jobs(own_directory, tmp_path)))
    assert attempt(pb, "alice", S.password("alice")).status_code == 200
    new = "svc-rotated-Secret-91d2"
    done = subprocess.run(["ldappasswd", "-x", "-H", own_directory.url, "-D", S.ROOT_DN, "-w", S.ROOT_PW,
                           "-s", new, S.SERVICE_DN], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert attempt(pb, "alice", S.password("alice")).status_code == 503  # the old password: refused
    (tmp_path / "bind-password").write_text(new + "\n")
    pb.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: attempt(pb, "alice", S.password("alice")).status_code == 200)
    olga = signed_in(pb, "olga")
    assert olga.get("/api/jobs").json().get("config_error") is None
    pb.jobs.write_text(pb.jobs.read_text() + "\n[job:added]\ncommand = echo added\n")
    assert wait_for(lambda: "added" in jobs_of(olga))
    assert secrets_in(Path(pb.log).read_bytes(), [new, S.SERVICE_PW]) == []


def test_a_directory_that_is_down_gives_a_clear_error_and_no_session(pushbutton, write_jobs, own_directory, tmp_path):
    pb = pushbutton(write_jobs(ldap_jobs(own_directory, tmp_path)))
    assert attempt(pb, "alice", S.password("alice")).status_code == 200
    own_directory.stop()
    for _ in range(PER_NAME + 1):  # not the user's fault: never counted towards the lock
        res = attempt(pb, "alice", S.password("alice"))
        assert res.status_code == 503 and res.json() == NOT_ANSWERING
        assert "set-cookie" not in res.headers
    assert client(pb).get("/healthz").status_code == 200
    own_directory.start()
    alice = signed_in(pb, "alice")  # back: sign-ins work again
    assert alice.get("/api/me").status_code == 200

    def failed() -> list[dict]:
        done = subprocess.run([BIN, "audit", "--action", "signin.failed", "--jobs", str(pb.jobs), "--data-dir",
                               str(pb.data_dir)], capture_output=True, text=True, timeout=60)
        return [json.loads(line) for line in done.stdout.splitlines()]

    entries = wait_for(lambda: len(got := failed()) == PER_NAME + 1 and got)
    assert all(e["detail"] == {"method": "ldap", "reason": NOT_ANSWERING["error"]} and not e["ok"] for e in entries)
    log = Path(pb.log).read_text()
    assert "not answering" in log and "Connection refused" in log
    assert "Traceback" not in log  # a directory that is down is reported, not logged as a crash


def test_a_hung_directory_times_out_within_ldap_timeout_and_the_server_keeps_serving(pushbutton, write_jobs,
                                                                                     directory, tmp_path):
    hung = socket.socket()  # accepts connections (the kernel does) and never answers
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)
    url = f"ldap://127.0.0.1:{hung.getsockname()[1]}"
    pb = pushbutton(write_jobs(ldap_jobs(directory, tmp_path, ldap_url=url, ldap_timeout="1s")))
    token = users(pb, "token", "olga").stdout.splitlines()[-1]  # a store read per request
    olga = client(pb, headers={"Authorization": f"Bearer {token}"})
    answers: list[tuple[int, float]] = []

    def sign_in():
        started = time.monotonic()
        res = attempt(pb, "alice", S.password("alice"))
        answers.append((res.status_code, time.monotonic() - started))

    threads = [threading.Thread(target=sign_in) for _ in range(4)]
    for t in threads:
        t.start()
    lags = []
    while any(t.is_alive() for t in threads):
        started = time.monotonic()
        assert client(pb).get("/healthz").status_code == 200
        assert olga.get("/api/jobs").status_code == 200
        lags.append(time.monotonic() - started)
    for t in threads:
        t.join()
    hung.close()
    assert [status for status, _ in answers] == [503] * 4
    assert max(took for _, took in answers) < 2.5, answers  # ldap_timeout = 1s, and a margin
    assert len(lags) > 5 and max(lags) < 0.5, lags


def test_a_second_directory_takes_over_when_the_first_is_down_or_hung(server, directory):
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)
    down = f"ldap://127.0.0.1:{S.free_port()}"
    pb = server(ldap_url=f"{down}, ldap://127.0.0.1:{hung.getsockname()[1]}, {directory.url}", ldap_timeout="1s")
    assert signed_in(pb, "alice").get("/api/me").json()["teams"] == ["analysts"]
    hung.close()


@pytest.mark.parametrize("tls", ["starttls", "ldaps"])
def test_tls_verifies_the_directory_against_the_ca_file_and_fails_closed_without_it(server, directory, tls):
    url = {"ldap_url": directory.ldaps_url}
    if tls == "starttls":
        url = {"ldap_url": directory.url, "ldap_starttls": "yes"}
    pb = server(ldap_ca_file=str(directory.ca), **url)
    assert signed_in(pb, "alice").get("/api/me").json()["user"] == "alice"
    pb.stop()
    for ca in (directory.other_ca, None):  # a CA that did not sign it, and the system's CAs
        pb = server(ldap_ca_file=str(ca) if ca else None, **url)
        res = attempt(pb, "alice", S.password("alice"))
        assert res.status_code == 503 and "set-cookie" not in res.headers
        assert "CERTIFICATE_VERIFY_FAILED" in Path(pb.log).read_text()
        pb.stop()


@pytest.mark.parametrize("source", ["file", "environment"])
def test_the_bind_password_never_reaches_the_log_the_data_dir_or_the_audit(server, directory, monkeypatch,
                                                                           source):
    if source == "environment":
        monkeypatch.setenv(PASSWORD_ENV, S.SERVICE_PW)  # the server inherits it
        pb = server(ldap_bind_password_file=None)
    else:
        pb = server()
    assert signed_in(pb, "olga").get("/api/me").json()["admin"] is True
    assert attempt(pb, "alice", "wrong-Pa55word-xyz").status_code == 401
    alice = signed_in(pb, "alice")
    assert alice.delete("/api/session").status_code == 204
    running = b"".join(p.read_bytes() for p in data_files(pb))
    assert pb.stop() == 0
    stored = b"".join(p.read_bytes() for p in data_files(pb))
    audit = subprocess.run([BIN, "audit", "--jobs", str(pb.jobs), "--data-dir", str(pb.data_dir)],
                           capture_output=True, timeout=60)
    check = subprocess.run([BIN, "check", "--jobs", str(pb.jobs)], capture_output=True, timeout=60)
    assert audit.returncode == 0 and b'"action": "signin"' in audit.stdout
    values = [S.SERVICE_PW, S.password("olga"), S.password("alice"), "wrong-Pa55word-xyz"]
    for where, blob in (("data dir while running", running), ("data dir", stored),
                        ("server log", Path(pb.log).read_bytes()), ("audit", audit.stdout + audit.stderr),
                        ("check", check.stdout + check.stderr)):
        assert secrets_in(blob, values) == [], where


def test_check_warns_about_a_bind_password_in_jobs_ini_and_plain_ldap_to_another_host(directory, write_jobs,
                                                                                       tmp_path):
    text = ldap_jobs(directory, tmp_path, ldap_bind_password_file=None, ldap_bind_password=S.SERVICE_PW,
                     ldap_url="ldap://ldap.acme.test")
    path = write_jobs(text)
    done = subprocess.run([BIN, "check", "--jobs", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    out = (done.stdout + done.stderr).replace(str(path), "FILE")
    line = {key: n for n, key in enumerate((ln.split(" =")[0] for ln in text.splitlines()), 1)}
    assert f"FILE:{line['ldap_bind_password']}: warning: [pushbutton] ldap_bind_password: the bind password " \
           "sits in jobs.ini" in out
    assert f"FILE:{line['ldap_url']}: warning: [pushbutton] ldap_url: ldap://ldap.acme.test without " \
           "ldap_starttls" in out
    assert S.SERVICE_PW not in out


def test_directory_users_get_exactly_the_rights_of_the_route_matrix(pushbutton, write_jobs, directory, tmp_path):
    """tests/test_route_matrix.py's whole matrix, each kind of user signed in through the directory
    (teams from ldap_groups instead of members). Signing out (DELETE /api/session) ends a
    session: the client signs in again at once, as the header-based users never sign out."""
    jobs = matrix.JOBS.replace("    auth = header\n    trusted_proxies = 127.0.0.1\n",
                               "".join(f"    {line}\n" for line in settings(directory, tmp_path).splitlines()
                                       if not line.startswith("admins")))
    jobs = re.sub(r"\[team:(\w+)\]\n    members = .*", lambda m: f"[team:{m[1]}]\n    ldap_groups = "
                  f"{S.group_dn(m[1])}", jobs)
    assert "members" not in jobs and "auth = ldap" in jobs
    pb = pushbutton(write_jobs(jobs))

    def kind_client(kind: str) -> httpx.Client:
        if kind == "anonymous":
            return client(pb)
        name = matrix.NAMES[kind]
        c = signed_in(pb, name)

        def sign_in_again(res: httpx.Response) -> None:
            if res.request.method == "DELETE" and res.request.url.path.endswith("/api/session"):
                c.cookies.set(session_name(pb), signed_in(pb, name).cookies[session_name(pb)])

        c.event_hooks["response"] = [sign_in_again]
        return c

    got, want = matrix.statuses({kind: kind_client(kind) for kind in matrix.KINDS})
    assert got == want


def test_dns_compare_in_any_case_spacing_and_escaping():
    assert dn_key("CN=Ops, OU=Groups,DC=acme,DC=test") == dn_key("cn=ops,ou=groups,dc=acme,dc=test")
    assert dn_key(r"cn=a\2Cb,dc=t") == dn_key(r"cn=a\,b,dc=t") != dn_key("cn=a,dc=b,dc=t")
    assert dn_key("cn=x+uid=y,dc=t") == dn_key("uid=y+cn=x,dc=t")
    with pytest.raises(ValueError):
        dn_key("not a dn")
