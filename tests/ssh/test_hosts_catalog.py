"""[host:]/[group:]/targets in jobs.ini, the remote wrapper's environment decoding, and the stored
`hosts` column. None of these needs an sshd."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from server import catalog as C
from server.executors.ssh import encode_env, remote_command, ssh_argv
from server.executors.ssh_shared import SHARED
from server.run_record import public
from server.store import Store
from tests.helpers import BIN


def problems(write_jobs, text: str) -> list[str]:
    path = write_jobs(text)
    with pytest.raises(C.CatalogError) as info:
        C.load(path)
    return [str(p).replace(str(path), "FILE") for p in info.value.problems]


def test_hosts_groups_and_targets_are_read(write_jobs, tmp_path):
    key = tmp_path / "deploy_key"
    key.write_text("not checked here")
    key.chmod(0o600)
    (tmp_path / "known").write_text("")
    catalog = C.load(write_jobs("""
        [host:web1]
        address = 10.0.0.5
        port = 2222
        user = deploy
        identity = deploy_key
        known_hosts = known
        connect_timeout = 3s
        control_persist = 5m
        [host:web2]
        address = web2.example.com
        [host:db1]
        address = 10.0.0.9
        control_persist = 0
        [group:db]
        hosts = db1
        [group:web]
        hosts = web1, host:web2, group:db
        parallel = 3
        [job:restart]
        command = systemctl restart app
        targets = group:web, host:web1, host:db1
        [job:local]
        command = true
        """))
    web1 = catalog.hosts["web1"]
    assert (web1.address, web1.port, web1.user, web1.connect_timeout) == ("10.0.0.5", 2222, "deploy", 3.0)
    assert (web1.identity, web1.known_hosts) == (key, tmp_path / "known")
    web2 = catalog.hosts["web2"]
    assert (web2.port, web2.user, web2.identity, web2.known_hosts, web2.connect_timeout) == (22, None, None, None, 10)
    assert [catalog.hosts[h].control_persist for h in ("web1", "web2", "db1")] == [300, 60, 0]
    assert catalog.groups["web"].members == ["web1", "host:web2", "group:db"]
    targets = catalog.jobs["restart"].targets
    # a host named twice runs once, with the cap of the group that named it first
    assert [(t.host.name, t.group, t.parallel) for t in targets] == [
        ("web1", "web", 3), ("web2", "web", 3), ("db1", "web", 3)]
    assert catalog.jobs["local"].targets == []
    assert catalog.jobs["restart"].public()["targets"] == ["web1", "web2", "db1"]


def test_every_host_and_group_problem_is_reported_with_its_line(write_jobs, tmp_path):
    open_key = tmp_path / "open_key"
    open_key.write_text("x")
    open_key.chmod(0o644)
    assert problems(write_jobs, f"""
        [host:a]
        port = 70000
        identity = /nonexistent/key
        [host:b]
        address = -oProxyCommand=touch
        user = bad user
        known_hosts = /nonexistent/known
        [host:c]
        address = c.example
        identity = {open_key}
        colour = blue
        control_persist = soon
        [group:loop1]
        hosts = group:loop2
        [group:loop2]
        hosts = group:loop1, c
        [group:typos]
        hosts = cc, group:nope, loop1
        parallel = 0
        [group:empty]
        hosts =
        [host:bad name!]
        address = x
        [job:j]
        command = true
        targets = group:typos, host:zz, c
        workdir = .
        """) == [
        "FILE:1: [host:a]: missing address",
        "FILE:2: [host:a] port: must be at most 65535",
        "FILE:3: [host:a] identity: cannot read key file '/nonexistent/key': No such file or directory",
        "FILE:5: [host:b] address: '-oProxyCommand=touch' must be one word, not starting with '-'",
        "FILE:6: [host:b] user: 'bad user' must be one word, not starting with '-'",
        "FILE:7: [host:b] known_hosts: cannot read known_hosts file '/nonexistent/known': No such file or directory",
        f"FILE:10: [host:c] identity: key file '{open_key}' is readable by other users and ssh refuses it; "
        "run chmod 600 on it",
        "FILE:11: [host:c] colour: unknown key",
        "FILE:12: [host:c] control_persist: 'soon' is not a duration like 90s, 30m or 1h",
        "FILE:16: [group:loop2] hosts: group cycle: loop1 -> loop2 -> loop1",
        "FILE:18: [group:typos] hosts: unknown host 'cc'",
        "FILE:18: [group:typos] hosts: unknown group 'nope'",
        "FILE:18: [group:typos] hosts: unknown host 'loop1' (for the group, write group:loop1)",
        "FILE:19: [group:typos] parallel: must be at least 1",
        "FILE:21: [group:empty] hosts: a group needs hosts = NAME, NAME, ...",
        "FILE:22: [host:bad name!]: host name starts with a letter or digit, then letters, digits, '.', '_' and '-'",
        "FILE:26: [job:j] targets: unknown host 'zz'",
        "FILE:26: [job:j] targets: 'c': expected host:NAME or group:NAME",
        "FILE:27: [job:j] workdir: workdir applies to jobs run on this machine; a remote command starts in the "
        "login directory (use shell = yes and cd)",
    ]


def test_an_address_or_user_that_ssh_would_refuse_is_refused_by_check(write_jobs):
    """ssh says "hostname contains invalid characters" on its stderr before its log opens: a run
    would only say that ssh failed."""
    assert problems(write_jobs, """
        [host:a]
        address = 127.0.0.1;id
        user = o'brien
        [host:b]
        address = deploy@db1.example
        user = CORP\\deploy
        [host:c]
        address = fe80::1%eth0
        user = svc.deploy-2@corp.example
        """) == [
        "FILE:2: [host:a] address: '127.0.0.1;id': a host name or IP address cannot hold ;",
        "FILE:3: [host:a] user: \"o'brien\": a user name cannot hold '",
        "FILE:5: [host:b] address: 'deploy@db1.example': a host name or IP address cannot hold @ (a user goes in "
        "`user =`, a port in `port =`)",
    ]


def test_check_accepts_hosts_and_an_empty_targets_is_an_error(write_jobs, tmp_path):
    ok = write_jobs("[host:h]\naddress = h.example\n[job:j]\ncommand = true\ntargets = host:h\n")
    out = subprocess.run([BIN, "check", "--jobs", str(ok)], capture_output=True, text=True)
    assert out.returncode == 0 and "OK, 1 job(s): j" in out.stdout
    assert problems(write_jobs, "[job:j]\ncommand = true\ntargets =\n") == [
        "FILE:3: [job:j] targets: targets is empty; leave it out to run on this machine"]


def test_the_command_line_carries_quoted_argv_and_no_environment(tmp_path):
    host = C.Host(name="h", address="10.0.0.5", port=2200, user="deploy", identity=tmp_path / "k%1 x",
                  known_hosts=tmp_path / "kh")
    remote = remote_command(["printf", "%s", "$(id)", "a'b"], "abc123", 2.5)
    argv = ssh_argv(host, remote, tmp_path / "log", tmp_path / "c.sock", master=True)
    assert Path(argv[0]).name == "ssh"
    assert argv[1:7] == ["-T", "-E", str(tmp_path / "log"), "-p", "2200", "-l"]
    assert argv[-3:] == ["--", "10.0.0.5", remote]
    options = dict(a.split("=", 1) for a in argv[argv.index("-l") + 2:-3] if a != "-o")
    assert options["StrictHostKeyChecking"] == "yes" and options["BatchMode"] == "yes"
    assert options["IdentityFile"] == f'"{tmp_path}/k%%1 x"' and options["IdentitiesOnly"] == "yes"
    assert options["UserKnownHostsFile"] == f'"{tmp_path}/kh"' and options["GlobalKnownHostsFile"] == "none"
    assert options["ControlMaster"] == "yes" and options["ControlPath"] == f'"{tmp_path}/c.sock"'
    assert remote.endswith(" pushbutton abc123 25 printf %s '$(id)' 'a'\"'\"'b'")
    assert options["ControlPersist"] == "no"  # a run's own connection ends with its session


def test_a_kept_open_connection_is_shared_by_sessions_that_connect_alike(tmp_path):
    """ssh_shared: one socket per host and settings; a session uses it (`auto`) and keeps it open."""
    host = C.Host(name="h", address="10.0.0.5", control_persist=90)
    shared = SHARED.acquire(host)
    try:
        assert shared is not None and shared == SHARED.acquire(C.Host(name="h", address="10.0.0.5"))
        assert SHARED.acquire(C.Host(name="h", address="10.0.0.5", user="other")) not in (shared, None)
        assert SHARED.acquire(C.Host(name="h", address="10.0.0.5", control_persist=0)) is None
        argv = ssh_argv(host, "true", tmp_path / "log", shared, master=True, persist=host.control_persist)
        options = dict(a.split("=", 1) for a in argv if "=" in a)
        assert (options["ControlMaster"], options["ControlPersist"]) == ("auto", "90s")
        stop = dict(a.split("=", 1) for a in ssh_argv(host, "true", tmp_path / "log", shared) if "=" in a)
        assert (stop["ControlMaster"], stop["ControlPersist"]) == ("no", "no")  # a stop's session never opens one
    finally:
        SHARED.sessions.clear()


@pytest.mark.parametrize("shell", ["/bin/sh", "bash"])
def test_the_wrapper_restores_every_environment_value_exactly(shell):
    """The remote login shell runs the command line; the wrapper reads the environment from stdin."""
    values = {
        "PB_ALL": "".join(chr(c) for c in range(1, 0x250)),
        "PB_EMPTY": "",
        "PB_NEWLINES": "\n\nend\n\n",
        "PB_ESCAPES": "\\c \\0101 %s %b \\n '\"$(x)`y`",
        "PB_EQUALS": "=a=b=",
    }
    script = ('for v in PB_ALL PB_EMPTY PB_NEWLINES PB_ESCAPES PB_EQUALS; do '
              'eval "printf %s \\"\\$$v\\"" | od -An -tx1 -v; echo --; done')
    command = remote_command(["sh", "-c", script], "n0nce", 1)
    out = subprocess.run([shell, "-c", command], input=encode_env(values, "n0nce"), capture_output=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    first_line, rest = out.stdout.decode().split("\n", 1)
    assert first_line.split()[0] == "n0nce" and int(first_line.split()[1]) > 1
    dumps = ["".join(chunk.split()) for chunk in rest.split("--\n")][:-1]
    assert dumps == [v.encode().hex() for v in values.values()]


def test_without_its_environment_the_wrapper_runs_nothing(tmp_path):
    mark = tmp_path / "ran"
    command = remote_command(["touch", str(mark)], "n0nce", 1)
    block = encode_env({"PB_X": "1\nn0nc"}, "n0nce")
    for cut in range(len(block)):  # the connection may drop anywhere before the nonce line
        out = subprocess.run(["/bin/sh", "-c", command], input=block[:cut], capture_output=True, timeout=30)
        assert out.returncode == 255 and not mark.exists()


def test_an_older_database_gains_the_hosts_column(tmp_path):
    old = sqlite3.connect(tmp_path / "history.sqlite3")
    old.executescript("""
        CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, state TEXT NOT NULL,
            params TEXT NOT NULL, created REAL NOT NULL, started REAL, finished REAL, exit_code INTEGER,
            progress REAL, message TEXT, owner TEXT NOT NULL);
        INSERT INTO runs (job, state, params, created, finished, owner) VALUES ('old', 'succeeded', '{}', 1, 2, 'x');
        INSERT INTO runs (job, state, params, created, owner) VALUES ('old', 'running', '{}', 1, 'gone');
    """)
    old.commit()
    old.close()
    store = Store(tmp_path)
    try:
        assert store.run(1)["hosts"] == [] and public(store.run(1))["hosts"] == []
        hosts = [{"name": "a", "state": "running", "exit_code": None, "error": None},
                 {"name": "b", "state": "failed", "exit_code": 1, "error": None}]
        store.call(Store.update_run, 2, {"hosts": hosts})
        assert store.run(2)["hosts"] == hosts
        assert list(store.recover()) == [2]
        assert [h["state"] for h in store.run(2)["hosts"]] == ["interrupted", "failed"]
    finally:
        store.close()
    columns = [row[1] for row in sqlite3.connect(tmp_path / "history.sqlite3").execute("PRAGMA table_info(runs)")]
    assert columns.count("hosts") == 1
    assert json.loads(sqlite3.connect(tmp_path / "history.sqlite3").execute(
        "SELECT hosts FROM runs WHERE id = 2").fetchone()[0])[0]["state"] == "interrupted"


def test_hosts_still_queued_connecting_or_running_end_interrupted_when_their_run_is_recovered(tmp_path):
    store = Store(tmp_path)
    try:
        hosts = [{"name": name, "state": state, "exit_code": None, "error": None}
                 for name, state in (("q", "queued"), ("c", "connecting"), ("r", "running"), ("f", "failed"))]
        run_id = store.call(Store.insert_run, {"job": "remote", "state": "running", "params": {}, "created": 1,
                                               "owner": "gone", "hosts": hosts})
        assert list(store.recover()) == [run_id]
        assert [h["state"] for h in store.run(run_id)["hosts"]] == ["interrupted"] * 3 + ["failed"]
    finally:
        store.close()
