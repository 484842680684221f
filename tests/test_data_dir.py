"""The data dir holds every run's output: it is private (folder 0700, files 0600) whatever the umask;
one that cannot be used, or is mistyped, is said in one line rather than a traceback or a new history."""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import sqlite3
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.helpers import BIN

JOBS = ROOT / "jobs.ini"


@contextlib.contextmanager
def umask(mask: int):
    """Children started inside inherit it, as a server started from a shell with that umask would."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    """Permission bits of every file and folder under `root` (itself included), by relative path."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_private(root: Path) -> dict[str, int]:
    found = modes(root)
    for name, mode in found.items():
        want = 0o700 if (root / name).is_dir() else 0o600
        assert mode == want, f"{name} is {mode:o}, want {want:o}: {found}"
    return found


def test_history_is_private_whatever_the_umask(pushbutton, tmp_path):
    data = tmp_path / "new" / "data"
    with umask(0):
        pb = pushbutton(JOBS, data_dir=data)
        run_id = pb.start_run("greet", name="ann")["id"]
        assert pb.wait(run_id)["state"] == "succeeded"
        # a terminal run beside the server: its own owner lock, its own connections
        out = subprocess.run([BIN, "run", "greet", "-p", "name=bob", "--jobs", str(JOBS), "--data-dir", str(data)],
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    found = assert_private(data)  # while the server runs: the WAL files exist
    assert {"history.sqlite3", "history.sqlite3-wal", "history.sqlite3-shm", "owners"} <= set(found)
    assert any(name.startswith("owners/") for name in found)
    pb.stop()
    assert_private(data)


def test_an_open_data_dir_left_by_an_older_version_is_made_private(pushbutton, tmp_path):
    data = tmp_path / "data"
    (data / "owners").mkdir(parents=True)
    (data / "owners" / "gone.lock").touch()
    keep = sqlite3.connect(data / "history.sqlite3")  # held open: its -wal and -shm stay
    keep.execute("PRAGMA journal_mode=WAL")
    keep.execute("CREATE TABLE old (x)")
    for path in [data, data / "owners", *data.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    assert (data / "history.sqlite3-wal").exists() and (data / "history.sqlite3-shm").exists()
    pushbutton(JOBS, data_dir=data)
    assert_private(data)
    keep.close()


def test_a_shared_folder_keeps_its_mode_but_history_in_it_is_private(pushbutton, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    (shared / "notes.txt").write_text("mine")
    (shared / "notes.txt").chmod(0o644)
    with umask(0):
        pb = pushbutton(JOBS, data_dir=shared)
    assert pb.wait(pb.start_run("greet")["id"])["state"] == "succeeded"
    found = modes(shared)
    assert (found["."], found["notes.txt"]) == (0o755, 0o644)  # not Pushbutton's to change
    ours = {name: mode for name, mode in found.items() if name not in (".", "notes.txt")}
    assert ours and all(mode == (0o700 if (shared / name).is_dir() else 0o600) for name, mode in ours.items()), ours


def _events_sql(data: Path) -> str:
    with contextlib.closing(sqlite3.connect(data / "history.sqlite3")) as conn:
        return conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()[0]


def test_a_history_made_with_the_former_events_table_keeps_working(pushbutton, tmp_path):
    """New histories keep `events` in a rowid table; one made before 2026-12-02 keeps its WITHOUT
    ROWID table, and runs write and read it the same way, across a restart."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir(mode=0o700)
    with contextlib.closing(sqlite3.connect(old / "history.sqlite3")) as conn:
        conn.execute("CREATE TABLE events (run_id INTEGER NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, "
                     "data TEXT NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID")
    (old / "history.sqlite3").chmod(0o600)
    for data in (old, new):
        pb = pushbutton(JOBS, data_dir=data)
        run_id = pb.start_run("greet", name="ann")["id"]
        assert pb.wait(run_id)["state"] == "succeeded"
        pb.stop()
        again = pushbutton(JOBS, data_dir=data)  # read back from SQLite, not from memory
        lines = again.output(run_id)
        assert lines[0].startswith("Hello, ann! Today is ") and lines[1:] == ["done; bye"]
        again.stop()
    assert "WITHOUT ROWID" in _events_sql(old) and "WITHOUT ROWID" not in _events_sql(new)


def pb(*args, data: Path, stdin: str = "", user: list[str] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*user, BIN, *args, "--jobs", str(JOBS), "--data-dir", str(data)], input=stdin,
                          capture_output=True, text=True, timeout=60)


COMMANDS = (["run", "greet", "-p", "name=ann"], ["users", "add", "ann"], ["audit"], ["--headless", "--port", "0"])


def test_a_data_dir_that_cannot_be_used_is_one_line_naming_it_and_exit_2(tmp_path):
    """Not "cannot listen on ..." (the port was fine), nor a traceback."""
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "history.sqlite3").write_bytes(b"this is not a database " * 10)
    for data, reason in ((a_file, "not a directory"), (corrupt, "history.sqlite3: file is not a database")):
        for args in COMMANDS:
            if args == ["audit"] and data == a_file:
                continue  # no history in it: the next test
            out = pb(*args, data=data, stdin="a-password-1\n")
            last = out.stderr.splitlines()[-1]
            assert (out.returncode, last) == (2, f"pushbutton: data dir {data}: {reason}"), (args, out.stderr)
            assert "Traceback" not in out.stderr and out.stdout == ""

    shared = Path(tempfile.mkdtemp())  # nobody (below) must reach jobs.ini and the binary
    try:
        shared.chmod(0o755)
        (shared / "locked").mkdir(mode=0o555)
        user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
        data = shared / "locked" / "data"
        for args in COMMANDS[:2] + COMMANDS[3:]:
            out = pb(*args, data=data, stdin="a-password-1\n", user=user)
            last = out.stderr.splitlines()[-1]
            assert (out.returncode, last) == (2, f"pushbutton: data dir {data}: cannot create it: Permission denied"), \
                (args, out.stderr)
    finally:
        shutil.rmtree(shared)


def test_users_commands_refuse_a_data_dir_without_history_but_add_begins_one(tmp_path):
    """A mistyped --data-dir made a new empty history (and users add landed there) without a word.
    `add` still works on a new install, before the server ever ran, and says it began a history."""
    typo = tmp_path / "typo"
    for args in (["list"], ["tokens", "ann"], ["token", "ann"], ["passwd", "ann"], ["remove", "ann"],
                 ["revoke", "ann", "1"]):
        out = pb("users", *args, data=typo, stdin="a-password-1\n")
        assert (out.returncode, out.stderr) == (2, f"pushbutton: no history in {typo} (see --data-dir)\n"), args
    assert not typo.exists()
    added = pb("users", "add", "ann", data=typo, stdin="a-password-1\n")
    assert added.returncode == 0 and f"no history in {typo} yet: starting one" in added.stderr
    assert pb("users", "list", data=typo).stdout.startswith("ann\t")


def test_users_commands_naming_a_user_that_does_not_exist_say_so_and_exit_1(tmp_path):
    """`users tokens NOSUCHUSER` printed nothing and exited 0, as if the user had no tokens; the
    others (remove, passwd, revoke) said "no user" and exited 1. A user known only by the tokens
    made for them (auth = header, ldap, oidc: no local account) is still known."""
    data = tmp_path / "data"
    assert pb("users", "add", "ann", data=data, stdin="a-password-1\n").returncode == 0
    for args in (["tokens", "nosuch"], ["revoke", "nosuch", "1"], ["remove", "nosuch"], ["passwd", "nosuch"]):
        out = pb("users", *args, data=data, stdin="a-password-1\n")
        assert out.returncode == 1 and out.stdout == "", (args, out)
        assert out.stderr.startswith("pushbutton: no user 'nosuch'") and out.stderr.count("\n") == 1, (args, out.stderr)
    assert pb("users", "tokens", "ann", data=data).returncode == 0  # a user without tokens: nothing to list
    revoked = pb("users", "revoke", "ann", "7", data=data)
    assert (revoked.returncode, revoked.stderr) == (1, "pushbutton: ann has no live token 7\n")
    with sqlite3.connect(data / "history.sqlite3") as db:  # a token made for a header-auth user
        db.execute("INSERT INTO tokens (user, name, hash, created) VALUES ('hal', 'ci', 'x', 0)")
    listed = pb("users", "tokens", "hal", data=data)
    assert (listed.returncode, listed.stdout.split("\t")[1:]) == (0, ["ci\n"])


def tree(root: Path) -> dict[str, tuple]:
    """Every file and folder under `root` (itself included): owner, mode, size and mtime."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in [".", *dirs, *files] if Path(folder) == root else [*dirs, *files]:
            info = Path(folder, name).lstat()
            found[str(Path(folder, name).relative_to(root))] = (info.st_uid, info.st_mode, info.st_size,
                                                                 info.st_mtime_ns)
    return found


def test_root_is_refused_a_data_dir_that_belongs_to_another_user_before_anything_is_written(tmp_path):
    """`sudo pushbutton users add ...` on the service's data dir made a root-owned history.sqlite3
    (or owners/, runs/) that the service, running as its own user, then could not open. As root,
    every command that opens the history says whose it is and the command to run instead, exit 2,
    with nothing written (and no value of the command's, which may be a secret). `backup` reads
    the history and writes elsewhere: root may run it."""
    if os.geteuid() != 0:
        pytest.skip("chowning a data dir to another user needs root (CI runs as root)")
    nobody = pwd.getpwuid(65534).pw_name
    fresh, used = tmp_path / "fresh", tmp_path / "used"
    fresh.mkdir(mode=0o700)
    assert pb("users", "add", "ann", data=used, stdin="a-password-1\n").returncode == 0
    assert pb("run", "greet", "-p", "name=ann", data=used).returncode == 0
    for data in (fresh, used):
        for path in (data, *data.rglob("*")):
            os.chown(path, 65534, 65534)
    for data in (fresh, used):
        before = tree(data)
        for args in (["users", "add", "bob"], ["users", "list"], ["users", "tokens", "ann"], ["audit"],
                     ["run", "greet", "-p", "name=bob"], ["--headless", "--port", "0"]):
            if args[0] == "--headless" and data == fresh:
                continue  # a server begins its own history: it runs as whoever will own it (a container's root)
            out = pb(*args, data=data, stdin="a-password-1\n")
            shown = [word.replace("name=bob", "name=...") for word in args]  # a run's values may be secrets
            command = shlex.join([BIN, *shown, "--jobs", str(JOBS), "--data-dir", str(data)])
            assert (out.returncode, out.stdout) == (2, ""), (args, out)
            assert out.stderr == (f"pushbutton: data dir {data} belongs to {nobody}, and this runs as root: what it "
                                  f"wrote would be root's, which {nobody} cannot open; run it as {nobody}: "
                                  f"sudo -u {nobody} {command}\n"), (args, out.stderr)
        assert tree(data) == before
    copy = tmp_path / "copy.sqlite3"
    assert pb("backup", str(copy), data=used).returncode == 0
    owners = {name: found[0] for name, found in tree(used).items()}  # SQLite's -wal and -shm came and went
    assert copy.stat().st_uid == 0 and owners == {name: found[0] for name, found in before.items()}
    with sqlite3.connect(copy) as db:
        assert db.execute("SELECT name FROM users").fetchall() == [("ann",)]
