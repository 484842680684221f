"""Live reload of jobs.ini (server/reload.py) against real `pushbutton --headless` processes.

Edits are saved as editors save them: a temporary file renamed over jobs.ini (`save`), or the
file truncated and then written. Jobs that must stay running wait for a gate file.
"""

from __future__ import annotations

import os
import re
import signal
import textwrap
import threading
import time

import httpx
import pytest

from tests.helpers import TOKEN, parse_sse, sse_lines, wait_for

GATE_JOB = """
[job:{id}]
title = {title}
shell = yes
command = while [ ! -e gate ]; do sleep 0.05; done; echo {id}-{version}
{extra}
"""


def job(id: str, version: str = "v1", title: str = "", extra: str = "") -> str:
    """A job that waits until the file `gate` exists beside jobs.ini, then prints ID-VERSION."""
    return GATE_JOB.format(id=id, version=version, title=title or id, extra=extra)


def save(path, text: str) -> None:
    """As most editors save: write a temporary file beside it, then rename it over the old one."""
    tmp = path.with_name(f".{path.name}.{time.monotonic_ns()}.tmp")
    tmp.write_text(textwrap.dedent(text).lstrip())
    os.replace(tmp, path)


def listing(pb, client: httpx.Client | None = None) -> dict:
    return (client or pb.client).get("/api/jobs").json()


def applied(pb, predicate, timeout: float = 15) -> dict:
    """GET /api/jobs once `predicate(answer)` holds (the watcher polls every second)."""
    return wait_for(lambda: predicate(got := listing(pb)) and got, timeout, interval=0.1)


def ids(answer: dict) -> set[str]:
    return {j["id"] for j in answer["jobs"]}


def audit(pb, action: str, client: httpx.Client | None = None) -> list[dict]:
    return (client or pb.client).get("/api/audit", params={"action": action}).json()["entries"]


def states(pb, run_ids) -> list[str]:
    return [pb.run(i)["state"] for i in run_ids]


def test_a_running_run_finishes_under_its_old_definition_while_jobs_are_added_changed_and_removed(
        pushbutton, write_jobs, tmp_path):
    path = write_jobs(job("slow") + job("gone"))
    pb = pushbutton(path)
    slow, gone = pb.start_run("slow")["id"], pb.start_run("gone")["id"]
    wait_for(lambda: states(pb, (slow, gone)) == ["running", "running"])

    save(path, job("slow", "v2", "Slow v2") + job("fresh"))
    now = applied(pb, lambda got: ids(got) == {"slow", "fresh"})
    assert {j["id"]: j["title"] for j in now["jobs"]} == {"slow": "Slow v2", "fresh": "fresh"}
    assert now["config_error"] is None
    assert states(pb, (slow, gone)) == ["running", "running"]  # a reload stops nothing

    (tmp_path / "gate").touch()
    assert [pb.wait(i)["state"] for i in (slow, gone)] == ["succeeded", "succeeded"]
    assert pb.output(slow) == ["slow-v1"]  # the definition it started with
    assert pb.output(gone) == ["gone-v1"]  # its job is gone, its history is not
    assert pb.client.get(f"/api/runs/{gone}/log").text == "gone-v1\n"
    again = pb.start_run("slow")["id"]
    assert pb.wait(again)["state"] == "succeeded" and pb.output(again) == ["slow-v2"]
    assert pb.output(pb.wait(pb.start_run("fresh")["id"])["id"]) == ["fresh-v1"]
    assert pb.client.post("/api/jobs/gone/runs", json={"params": {}}).status_code == 404
    assert pb.client.post(f"/api/runs/{gone}/rerun", json={"params": {}}).status_code == 403  # seen, not runnable

    entry = wait_for(lambda: audit(pb, "config.reload"))[0]
    assert (entry["ok"], entry["target"], entry["detail"]) == (
        True, f"file:{path}", {"trigger": "file", "added": ["fresh"], "removed": ["gone"], "changed": ["slow"]})
    assert f"reloaded {path} (file): added fresh; removed gone; changed slow" in pb.log.read_text()


def test_a_broken_edit_keeps_the_last_good_jobs_and_says_why_until_a_fix_replaces_it(pushbutton, write_jobs):
    path = write_jobs("[job:a]\ncommand = echo a\n")
    pb = pushbutton(path)
    with pb.client.stream("GET", "/api/events", timeout=30) as stream:
        events = parse_sse(sse_lines(stream))
        assert next(events).type == "ready"
        save(path, "[job:a]\ncommand = echo a\n\n[job:b]\ncommand = echo b\nbogus = 1\nrun_by = team:nobody\n")
        assert next(events).type == "catalog"  # the page hears of it at once, and reconnects
        assert next(events, None) is None  # the stream ends: a reconnect carries the reader's new rights
    got = listing(pb)
    assert got["config_error"] == (f"{path}:6: [job:b] bogus: unknown key\n"
                                   f"{path}:7: [job:b] run_by: team:nobody names no [team:nobody] section")
    assert ids(got) == {"a"}  # the last good catalog is still served, and runs
    assert pb.output(pb.wait(pb.start_run("a")["id"])["id"]) == ["a"]
    entry = wait_for(lambda: audit(pb, "config.error"))[0]
    assert (entry["ok"], entry["detail"]["trigger"], entry["detail"]["problems"]) == (
        False, "file", got["config_error"].split("\n"))
    assert f"{path}:6: [job:b] bogus: unknown key" in pb.log.read_text()

    save(path, "[job:a]\ncommand = echo a\n\n[job:b]\ncommand = echo b\n")
    fixed = applied(pb, lambda got: got["config_error"] is None)
    assert ids(fixed) == {"a", "b"}
    assert wait_for(lambda: audit(pb, "config.reload"))[0]["detail"]["added"] == ["b"]


def test_an_empty_or_missing_jobs_ini_is_an_error_not_an_empty_catalog(pushbutton, write_jobs):
    path = write_jobs("[job:a]\ncommand = echo a\n")
    pb = pushbutton(path)
    path.write_text("")
    got = applied(pb, lambda got: got["config_error"] is not None)
    assert got["config_error"] == f"{path}:1: no [job:ID] section" and ids(got) == {"a"}
    path.unlink()
    got = applied(pb, lambda got: "cannot read" in got["config_error"])
    assert ids(got) == {"a"}
    save(path, "[job:a]\ncommand = echo a\n")
    assert ids(applied(pb, lambda got: got["config_error"] is None)) == {"a"}


def test_a_rapid_series_of_saves_ends_with_the_last_one_applied_and_no_error(pushbutton, write_jobs):
    path = write_jobs("[job:v0]\ncommand = echo 0\n")
    pb = pushbutton(path)
    for n in range(1, 16):
        save(path, f"[pushbutton]\ntitle = version {n}\n[job:v{n}]\ncommand = echo {n}\n")
        time.sleep(0.03)
    got = applied(pb, lambda got: got["title"] == "version 15")
    assert ids(got) == {"v15"} and got["config_error"] is None
    time.sleep(2.5)  # nothing older comes back later
    got = listing(pb)
    assert (got["title"], ids(got), got["config_error"]) == ("version 15", {"v15"}, None)
    assert audit(pb, "config.error") == []


def test_a_reload_while_an_editor_has_truncated_the_file_waits_for_its_content(pushbutton, write_jobs):
    """A truncate-then-write editor shows an empty file for a moment: a reload then (the watcher's,
    SIGHUP's, the API's) must wait until two reads agree, not report an empty jobs.ini."""
    path = write_jobs("[job:a]\ncommand = echo a\n")
    pb = pushbutton(path)
    answers = []
    with open(path, "w") as f:  # truncated: empty on disk
        f.flush()
        asked = threading.Thread(target=lambda: answers.append(pb.client.post("/api/reload")))
        asked.start()
        time.sleep(0.15)
        f.write("[job:a]\ncommand = echo a\n[job:b]\ncommand = echo b\n")
    asked.join(30)
    assert (answers[0].status_code, answers[0].json()) == (200, {"config_error": None})
    assert ids(listing(pb)) == {"a", "b"}
    assert audit(pb, "config.error") == []


def test_settings_read_at_start_up_need_a_restart_and_keep_the_last_good_jobs(pushbutton, write_jobs):
    path = write_jobs("[job:a]\ncommand = echo a\n")
    pb = pushbutton(path)
    save(path, "[pushbutton]\ntitle = new\nauth = local\nadmins = ann\nbase_path = /ops\n[job:a]\ncommand = echo a\n"
               "[job:b]\ncommand = echo b\n")
    got = applied(pb, lambda got: got["config_error"] is not None)
    assert got["config_error"] == "\n".join(
        f"{path}:{line}: [pushbutton] {key}: changing it needs a restart of Pushbutton; until then the jobs.ini "
        "loaded last stays in force" for line, key in ((3, "auth"), (5, "base_path")))
    assert (got["title"], ids(got)) == ("Pushbutton", {"a"})  # nothing of it applied, not even the rest
    assert pb.client.get("/api/me").json()["auth"] == "token"
    save(path, "[pushbutton]\ntitle = new\n[job:a]\ncommand = echo a\n[job:b]\ncommand = echo b\n")
    got = applied(pb, lambda got: got["config_error"] is None)
    assert (got["title"], ids(got)) == ("new", {"a", "b"})


STARTUP_CHANGES = {  # every setting read once at start-up: a valid change of each
    "auth": "auth = local\nadmins = ann", "trusted_proxies": "trusted_proxies = 10.0.0.0/8",
    "user_header": "user_header = X-User", "groups_header": "groups_header = X-Groups",
    "session_idle": "session_idle = 1h", "session_max": "session_max = 2d",
    "certfile": "certfile = cert.pem\nkeyfile = key.pem", "base_path": "base_path = /ops",
    "allowed_hosts": "allowed_hosts = ops.example",
}
METHODS = {  # a server signing in through a directory or a provider: its own settings, changed
    "ldap": ("auth = ldap\nadmins = ann\nldap_user_base = ou=people,dc=example\nldap_url = ldaps://{host}",
             "ldap.example", "ldap2.example"),
    "oidc": ("auth = oidc\nadmins = ann\noidc_client_id = pb\noidc_issuer = https://{host}",
             "id.example", "id2.example"),
}


def test_every_setting_read_at_start_up_is_refused_live_and_the_rest_is_not(pushbutton, write_jobs, tmp_path):
    from server.reload import RESTART_KEYS

    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    path = write_jobs("[job:a]\ncommand = echo a\n")
    pb = pushbutton(path)
    covered = set()
    for key, lines in STARTUP_CHANGES.items():
        save(path, f"[pushbutton]\n{lines}\n[job:a]\ncommand = echo a\n")
        res = pb.client.post("/api/reload")
        assert res.status_code == 422, key
        refused = re.findall(r"\[pushbutton\] (\w+): changing it needs a restart", res.json()["config_error"])
        assert key in refused, res.json()
        covered |= set(refused)
    assert covered == set(RESTART_KEYS) - set(METHODS)  # those: below, under their own method
    # keys of a sign-in method not in use do nothing yet: no restart for them
    save(path, "[pushbutton]\ntitle = live\noidc_issuer = https://id.example\nadmins = ann\nmax_concurrent_runs = 2\n"
               "retention_days = 5\n[job:a]\ncommand = echo a\n")
    assert (pb.client.post("/api/reload").json(), listing(pb)["title"]) == ({"config_error": None}, "live")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_directory_or_provider_setting_needs_a_restart_under_its_method(method, pushbutton, write_jobs,
                                                                        monkeypatch):
    monkeypatch.setenv("PUSHBUTTON_OIDC_CLIENT_SECRET", "client-secret-for-tests")
    lines, before, after = METHODS[method]
    path = write_jobs(f"[pushbutton]\n{lines.format(host=before)}\n[job:a]\ncommand = echo a\n")
    pb = pushbutton(path)
    save(path, f"[pushbutton]\n{lines.format(host=after)}\n[job:a]\ncommand = echo a\n")
    key = "ldap_url" if method == "ldap" else "oidc_issuer"
    # nobody here can sign in (no directory, no provider): the server's log says it
    wait_for(lambda: f"{path}:5: [pushbutton] {key}: changing it needs a restart" in pb.log.read_text(), 15)


def test_command_line_overrides_of_start_up_settings_stay_in_force_across_reloads(pushbutton, write_jobs):
    path = write_jobs("[job:a]\ncommand = echo a\n")
    pb = pushbutton(path, "--base-path", "/ops")
    assert pb.url.endswith("/ops")
    save(path, "[job:a]\ncommand = echo a\n[job:b]\ncommand = echo b\n")
    got = applied(pb, lambda got: ids(got) == {"a", "b"})  # still answered under /ops
    assert got["config_error"] is None
    assert httpx.get(pb.url.removesuffix("/ops") + "/api/jobs", headers=pb.client.headers).status_code == 404


def test_sighup_reloads_what_the_watcher_cannot_see(pushbutton, write_jobs, tmp_path):
    """jobs.ini unchanged, a folder it names created: only SIGHUP (or POST /api/reload) notices."""
    path = write_jobs("[job:a]\ncommand = echo a\n")
    pb = pushbutton(path)
    save(path, "[job:a]\ncommand = echo a\n[job:b]\ncommand = pwd\nworkdir = sub\n")
    got = applied(pb, lambda got: got["config_error"] is not None)
    assert "[job:b] workdir: folder" in got["config_error"]
    (tmp_path / "sub").mkdir()
    time.sleep(2.5)
    assert listing(pb)["config_error"] is not None  # the file did not change: the watcher keeps quiet
    pb.proc.send_signal(signal.SIGHUP)
    got = applied(pb, lambda got: got["config_error"] is None)
    assert ids(got) == {"a", "b"} and pb.proc.poll() is None
    assert pb.output(pb.wait(pb.start_run("b")["id"])["id"]) == [str(tmp_path / "sub")]
    entry = wait_for(lambda: audit(pb, "config.reload"))[0]
    assert (entry["user"], entry["detail"]["trigger"]) == (None, "signal")


def test_concurrency_and_max_concurrent_runs_changes_apply_to_queued_runs(pushbutton, write_jobs, tmp_path):
    path = write_jobs(job("c", extra="concurrency = 1") + job("d"))
    pb = pushbutton(path)
    runs = [pb.start_run("c")["id"] for _ in range(3)]
    wait_for(lambda: states(pb, runs) == ["running", "queued", "queued"])
    save(path, job("c", extra="concurrency = 3") + job("d"))
    wait_for(lambda: states(pb, runs) == ["running"] * 3, 15)  # the queued ones start under the new limit

    def settings(title: str, limit: int, cap: int) -> None:
        save(path, f"[pushbutton]\ntitle = {title}\nmax_concurrent_runs = {limit}\n"
             + job("c", extra=f"concurrency = {cap}") + job("d"))
        applied(pb, lambda got: got["title"] == title)

    settings("three", 3, 3)
    d = pb.start_run("d")
    assert d["state"] == "queued"  # three running: the server-wide limit
    settings("four", 4, 3)
    assert pb.run(d["id"])["state"] == "running"  # a raised limit starts what waits

    settings("lower", 4, 1)
    assert states(pb, runs) == ["running"] * 3  # a lower limit stops nothing already running
    more = pb.start_run("c")
    assert more["state"] == "queued"
    (tmp_path / "gate").touch()
    assert pb.wait(more["id"])["state"] == "succeeded"


TEAMS = """
[pushbutton]
auth = header
trusted_proxies = 127.0.0.1
admins = {admins}
[team:analysts]
members = {analysts}
[job:report]
command = echo report
run_by = team:analysts
[job:{extra}]
command = echo {extra}
run_by = *
"""


def as_user(pb, name: str | None) -> httpx.Client:
    return httpx.Client(base_url=pb.url, headers={"X-Forwarded-User": name} if name else {}, timeout=30)


def test_rights_follow_the_reloaded_file_for_users_already_signed_in(pushbutton, write_jobs):
    path = write_jobs(TEAMS.format(admins="olga", analysts="alan", extra="old"))
    pb = pushbutton(path)
    ann, olga = as_user(pb, "ann"), as_user(pb, "olga")
    assert ann.post("/api/jobs/report/runs", json={"params": {}}).status_code == 404
    old = ann.post("/api/jobs/old/runs", json={"params": {}}).json()["run"]["id"]
    assert ann.get("/api/audit").status_code == 403
    with ann.stream("GET", "/api/events", timeout=30) as stream:
        events = parse_sse(sse_lines(stream))
        assert next(events).type == "ready"
        save(path, TEAMS.format(admins="olga", analysts="alan, ann", extra="new"))
        while (event := next(events)).type == "state":
            pass
        assert event.type == "catalog"
    wait_for(lambda: ann.post("/api/jobs/report/runs", json={"params": {}}).status_code == 202)  # a team joined
    # the removed job's run: its rights came from the job, which is gone; admins still read it
    assert ann.get(f"/api/runs/{old}").status_code == 404
    assert olga.get(f"/api/runs/{old}").json()["job"] == "old"
    assert olga.get(f"/api/runs/{old}/log").text == "old\n"

    save(path, TEAMS.format(admins="olga, ann", analysts="alan", extra="new"))
    wait_for(lambda: ann.get("/api/audit").status_code == 200)  # made an admin
    assert ann.get("/api/me").json()["admin"] is True


def test_reload_route_is_for_admins_and_config_error_details_too(pushbutton, write_jobs, tmp_path):
    path = write_jobs(TEAMS.format(admins="olga", analysts="ann", extra="other"))
    pb = pushbutton(path)
    ann, olga, anonymous = as_user(pb, "ann"), as_user(pb, "olga"), as_user(pb, None)
    assert anonymous.post("/api/reload").status_code == 401
    assert ann.post("/api/reload").status_code == 403
    assert (olga.post("/api/reload").status_code, olga.post("/api/reload").json()) == (200, {"config_error": None})

    broken = TEAMS.format(admins="olga", analysts="ann", extra="other") + "[job:hidden]\ncommand = pwd\nworkdir = x\n"
    save(path, broken)
    wait_for(lambda: listing(pb, olga)["config_error"])
    problem = f"{path}:15: [job:hidden] workdir: folder {str(tmp_path / 'x')!r} does not exist"
    assert listing(pb, olga)["config_error"] == problem
    # it names jobs and files a user may not see: others learn only that the last good version is in force
    assert listing(pb, ann)["config_error"] == \
        "jobs.ini has an error (an admin can see which); its last good version stays in force"
    res = olga.post("/api/reload")
    assert (res.status_code, res.json()) == (422, {"config_error": problem})
    (tmp_path / "x").mkdir()
    assert (olga.post("/api/reload").status_code, listing(pb, ann)["config_error"]) == (200, None)
    assert "hidden" in ids(listing(pb, olga))
    # written behind the answer: wait until the newest reload entry is this one
    entry = wait_for(lambda: (found := audit(pb, "config.reload", olga)) and "hidden" in found[0]["detail"]["added"]
                     and found[0])
    assert (entry["user"], entry["detail"]["trigger"], entry["detail"]["added"]) == ("olga", "api", ["hidden"])
    assert [e["detail"]["trigger"] for e in audit(pb, "config.error", olga)] == ["api", "file"]


def test_the_desktop_window_reloads_its_jobs_ini_and_keeps_serving_its_one_user(write_jobs, tmp_path):
    """The window serves `auth = token` whatever jobs.ini says (for_the_window): a reload keeps that,
    and is no "restart needed" change."""
    from server import catalog as C
    from server.auth.methods import for_the_window
    from server.runtime import Server

    path = write_jobs("[pushbutton]\nauth = local\nadmins = ann\n[job:a]\ncommand = echo a\n")
    server = Server(for_the_window(C.load(path)), tmp_path / "window-data")  # as desktop/app.py starts it
    server.start()
    try:
        window = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30)
        save(path, "[pushbutton]\nauth = local\nadmins = ann\n[job:a]\ncommand = echo a\n[job:b]\ncommand = echo b\n")
        got = wait_for(lambda: len((now := window.get("/api/jobs").json())["jobs"]) == 2 and now, 15)
        assert got["config_error"] is None
        assert window.get("/api/me").json()["auth"] == "token"
        assert server.runs.catalog.settings.auth == "token"
    finally:
        server.stop(30)


def test_the_per_launch_token_is_unaffected_and_unknown_clients_stay_out(pushbutton, write_jobs):
    path = write_jobs("[job:a]\ncommand = echo a\n")
    pb = pushbutton(path)
    assert httpx.post(pb.url + "/api/reload").status_code == 401
    assert pb.client.post("/api/reload", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


TICKER = TEAMS + """
[job:ticker]
shell = yes
command = i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo tick $i; sleep 0.02; done
run_by = team:analysts
"""


def test_an_open_run_stream_follows_the_reloaded_rights_and_resumes_for_who_keeps_them(pushbutton, write_jobs):
    """Before, a stream checked its rule only when it opened: ann, removed from the team, kept
    receiving the run's output until it ended. Now every run stream ends at a reload; the browser
    reconnects after the last event it has, through the rule again."""
    path = write_jobs(TICKER.format(admins="olga", analysts="alan, ann", extra="other"))
    pb = pushbutton(path)
    ann, alan = as_user(pb, "ann"), as_user(pb, "alan")
    run = alan.post("/api/jobs/ticker/runs", json={"params": {}}).json()["run"]["id"]
    seen: dict[str, list] = {"ann": [], "alan": []}
    with ann.stream("GET", f"/api/runs/{run}/events") as a, alan.stream("GET", f"/api/runs/{run}/events") as b:
        streams = {"ann": parse_sse(sse_lines(a)), "alan": parse_sse(sse_lines(b))}
        for name, events in streams.items():  # both read some output first
            while not [e for e in seen[name] if e.type == "output"]:
                seen[name].append(next(events))
        save(path, TICKER.format(admins="olga", analysts="alan", extra="other"))
        for name, events in streams.items():
            seen[name] += list(events)  # to the stream's end: it must come, and not as the run's `end`
            assert seen[name][-1].type != "end", f"{name}'s stream ran to the run's end"
    assert as_user(pb, "olga").get(f"/api/runs/{run}").json()["state"] == "running"  # ended at the reload
    last = {name: int(events[-1].id) for name, events in seen.items()}
    assert ann.get(f"/api/runs/{run}/events", headers={"Last-Event-ID": str(last["ann"])}).status_code == 404
    with alan.stream("GET", f"/api/runs/{run}/events", headers={"Last-Event-ID": str(last["alan"])}) as c:
        for event in parse_sse(sse_lines(c)):
            seen["alan"].append(event)
            if event.type == "end":
                break
    assert [int(e.id) for e in seen["alan"]] == list(range(1, int(seen["alan"][-1].id) + 1))  # none lost or twice
    ticks = [line for e in seen["alan"] if e.type == "output" for line in e.data["lines"]]
    assert ticks == [f"tick {i}" for i in range(1, 301)]


# -- in one process: the reloader against the file, with no server around it -------------------

def until(predicate, timeout: float = 5) -> None:
    """`wait_for` on the hub: these tests' reloader and runs are greenlets of this process."""
    import gevent

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        gevent.sleep(0.05)


def in_process(tmp_path, text: str, poll: float = 0.1):
    """(jobs.ini, Runs, Reloader) as the server builds them: the catalog is loaded first."""
    from server import catalog as C
    from server.reload import Reloader
    from server.runs import Runs
    from server.store import Store

    path = tmp_path / "jobs.ini"
    path.write_text(text)
    runs = Runs(C.load(path), Store(tmp_path / "data"))
    return path, runs, Reloader(runs, path, poll=poll)


def test_an_edit_saved_while_the_server_starts_is_applied_at_the_first_look(tmp_path):
    from server import catalog as C
    from server.reload import Reloader
    from server.runs import Runs
    from server.store import Store

    path = tmp_path / "jobs.ini"
    path.write_text("[job:a]\ncommand = true\n")
    catalog = C.load(path)  # the command line loads jobs.ini; the server then recovers and prunes history
    path.write_text("[job:a]\ncommand = true\n[job:b]\ncommand = true\n")  # saved meanwhile
    runs = Runs(catalog, Store(tmp_path / "data"))
    reloader = Reloader(runs, path, poll=0.1)
    reloader.start()
    try:
        until(lambda: set(runs.catalog.jobs) == {"a", "b"})
    finally:
        reloader.stop()
        runs.store.close()


def test_a_reload_applies_the_settled_bytes_it_compared_not_a_later_read(tmp_path, monkeypatch):
    import gevent

    from server.reload import Reloader

    path, runs, reloader = in_process(tmp_path, "[job:a]\ncommand = true\n")
    path.write_text("[job:a]\ncommand = true\n[job:b]\ncommand = true\n")
    settled = Reloader._settled

    def then_written_again(self):
        text = settled(self)
        path.write_text("[job:a]\ncommand = true\n[job:c]\ncommand = true\n")  # lands before the parse
        return text

    monkeypatch.setattr(Reloader, "_settled", then_written_again)
    try:
        assert reloader.reload("api") is None
        assert set(runs.catalog.jobs) == {"a", "b"}  # what was compared; c is the next change
        monkeypatch.setattr(Reloader, "_settled", settled)
        reloader.start()
        until(lambda: set(runs.catalog.jobs) == {"a", "c"})
    finally:
        reloader.stop()
        gevent.sleep(0)
        runs.store.close()


GUARDED = "[pushbutton]\nauth = local\n[job:a]\ncommand = true\n"
WHOLE = GUARDED + "[job:b]\ncommand = true\nrun_by = ann\napprove_by = bob\n"


def test_a_run_awaiting_approval_outlives_a_file_applied_half_written(tmp_path, monkeypatch):
    """Written in two pieces 0.7 s apart (a slow pipe, a network share): the first piece is a valid
    file without b, applied for a moment; b's waiting run is still waiting once the rest arrives."""
    import gevent

    monkeypatch.setattr("server.approvals.ORPHAN_GRACE", 2.0, raising=False)
    path, runs, reloader = in_process(tmp_path, WHOLE, poll=0.2)
    waiting = runs.start("b", {}, user="ann")
    reloader.start()
    try:
        with open(path, "w") as f:
            f.write(GUARDED)
            f.flush()
            until(lambda: set(runs.catalog.jobs) == {"a"})
            f.write(WHOLE[len(GUARDED):])
        until(lambda: set(runs.catalog.jobs) == {"a", "b"})
        gevent.sleep(2.5)  # past the grace
        assert waiting.state == "awaiting_approval"
    finally:
        reloader.stop()
        runs.store.close()


def test_a_run_awaiting_approval_is_cancelled_once_its_job_stays_gone_or_a_second_reload_lacks_it(
        tmp_path, monkeypatch):
    monkeypatch.setattr("server.approvals.ORPHAN_GRACE", 1.0, raising=False)
    path, runs, reloader = in_process(tmp_path, WHOLE)
    first = runs.start("b", {}, user="ann")
    try:
        path.write_text(GUARDED)
        assert reloader.reload("api") is None
        assert first.state == "awaiting_approval"  # not at once
        until(lambda: first.state == "cancelled")
        assert first.record["message"].startswith("jobs.ini changed before anyone decided: its job was removed")
        path.write_text(WHOLE)
        reloader.reload("api")
        second = runs.start("b", {}, user="ann")
        monkeypatch.setattr("server.approvals.ORPHAN_GRACE", 600.0, raising=False)
        path.write_text(GUARDED)
        reloader.reload("api")
        assert second.state == "awaiting_approval"
        reloader.reload("signal")  # a later reload that still lacks it confirms it
        assert second.state == "cancelled"
    finally:
        runs.store.close()
