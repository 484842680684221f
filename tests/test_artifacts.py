"""Run artifacts on a real server: what a job leaves in $PB_ARTIFACTS is indexed when it ends,
listed and downloaded exactly, never anything outside the run's folder, within the caps, and
gone with the run."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, unquote

import httpx
import pytest

from server.files import artifacts
from server.files.ready import ReadyFolders
from server.store import Store
from tests.helpers import in_ci, parse_sse, sse_lines, wait_for
from tests.test_api import security_header_problems

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent
ODD = ["report.csv", "sub/deeper/data.bin", "with space.txt", "ünïcødé ✓.txt", "-rf", "100%.txt", "50%2f.txt",
       "quote\"d.txt", "a?b#c.txt"]
# Writes the files named on its command line (content: the name, twice), plus what its options ask for.
WRITER = r"""
import os, sys
root = os.environ["PB_ARTIFACTS"]
assert os.listdir(root) == [], "the folder starts empty"
print("mode", oct(os.stat(root).st_mode & 0o777))
for arg in sys.argv[1:]:
    kind, _, name = arg.partition(":")
    name, _, extra = name.partition("=")  # big:NAME=BYTES, link:NAME=TARGET, hardlink:NAME=TARGET
    path = os.path.join(root, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if kind == "file":
        with open(path, "w") as f:
            f.write(name * 2)
    elif kind == "big":
        with open(path, "wb") as f:
            f.truncate(int(extra))
    elif kind == "link":
        os.symlink(extra, path)
    elif kind == "hardlink":
        os.link(extra, path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "bytes":  # a name that is not UTF-8
        open(os.fsencode(root) + b"/bad\xff.txt", "w").close()
    elif kind == "sleep":
        print("written", flush=True)
        import time; time.sleep(float(name))
"""


def shell_writer(tmp_path, *args: str) -> str:
    """A job command for the writer with exact arguments (names with spaces and quotes)."""
    (tmp_path / "args.json").write_text(json.dumps(list(args)))
    return f"{PY} -c 'import json,runpy,sys; sys.argv=[\"w\"]+json.load(open(\"{tmp_path}/args.json\")); " \
           f"runpy.run_path(\"{tmp_path}/writer.py\", run_name=\"__main__\")'"


@pytest.fixture
def writer(tmp_path, write_jobs, pushbutton):
    """A server with one job `w` writing what `args` name, and the data dir."""

    def start(*args: str, settings: str = "", job_extra: str = "", **kwargs):
        (tmp_path / "writer.py").write_text(WRITER)
        text = f"[pushbutton]\n{settings}\n[job:w]\ncommand = {shell_writer(tmp_path, *args)}\n{job_extra}\n"
        return pushbutton(write_jobs("\n".join(line.strip() for line in text.splitlines())), **kwargs)

    return start


def run(pb, job: str = "w", **params) -> dict:
    """Start a run and wait for its end."""
    res = pb.client.post(f"/api/jobs/{job}/runs", json={"params": params})
    assert res.status_code == 202, res.text
    return pb.wait(res.json()["run"]["id"])


def listing(pb, run_id: int) -> list[dict]:
    res = pb.client.get(f"/api/runs/{run_id}/artifacts")
    assert res.status_code == 200, res.text
    return res.json()["artifacts"]


def folder(pb, run_id: int) -> Path:
    return pb.data_dir / "runs" / str(run_id) / "artifacts"


def raw_get(pb, path: str) -> tuple[int, bytes]:
    """GET exactly this path (no client-side normalising of `..` or `%2f`)."""
    host, port = pb.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", path, headers={"Authorization": "Bearer test-token-123"})
    res = conn.getresponse()
    body = res.read()
    conn.close()
    return res.status, body


def test_files_a_job_leaves_are_listed_and_download_byte_for_byte_whatever_their_names(writer, tmp_path):
    pb = writer(*(f"file:{name}" for name in ODD))
    done = run(pb)
    assert done["state"] == "succeeded"
    assert "mode 0o700" in pb.output(done["id"])  # an empty private folder, made before the job starts
    got = listing(pb, done["id"])
    assert [a["name"] for a in got] == sorted(ODD)
    for entry in got:
        content = (entry["name"] * 2).encode()
        assert entry["size"] == len(content) and entry["sha256"] == hashlib.sha256(content).hexdigest()
        assert entry["modified"].endswith("Z")
        res = pb.client.get(f"/api/runs/{done['id']}/artifacts/{quote(entry['name'])}")
        assert res.status_code == 200, (entry["name"], res.text)
        assert res.content == content
        assert res.headers["content-type"] == "application/octet-stream"
        assert res.headers["x-content-type-options"] == "nosniff" and security_header_problems(res) == []
        disposition = res.headers["content-disposition"]
        assert disposition.startswith("attachment; filename=\"")
        assert unquote(disposition.split("filename*=UTF-8''", 1)[1]) == entry["name"].rsplit("/", 1)[-1]
    for path in folder(pb, done["id"]).rglob("*"):  # files 0600, folders 0700
        assert stat.S_IMODE(path.lstat().st_mode) == (0o700 if path.is_dir() else 0o600), path
    # Recorded on the run itself, before its end was stored: notifications read it there.
    with sqlite3.connect(pb.data_dir / "history.sqlite3") as db:
        (stored,) = db.execute("SELECT artifacts FROM runs WHERE id = ?", (done["id"],)).fetchone()
    assert json.loads(stored) == got


def test_a_job_that_leaves_nothing_has_an_empty_list_and_every_run_a_fresh_folder(writer):
    pb = writer()
    first, second = run(pb), run(pb)
    assert listing(pb, first["id"]) == listing(pb, second["id"]) == []
    assert pb.client.get(f"/api/runs/{first['id']}/artifacts/nothing").status_code == 404


def test_symlinks_hard_links_fifos_and_non_utf8_names_are_not_kept_and_the_run_says_so(writer, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")
    outside.chmod(0o644)
    pb = writer("file:kept.txt", "link:passwd=/etc/passwd", "link:up=../../..", "link:rel=../../../history.sqlite3",
                f"hardlink:hard={outside}", "fifo:pipe", "bytes:", "file:sub/x.txt", "link:sub/back=/etc")
    done = run(pb)
    assert [a["name"] for a in listing(pb, done["id"])] == ["kept.txt", "sub/x.txt"]
    notes = [line for line in pb.output(done["id"]) if line.startswith("pushbutton: artifacts:")]
    assert len(notes) == 1 and all(n in notes[0] for n in ("'passwd'", "'hard'", "'pipe'", "'sub/back'", "'up'"))
    left = sorted(str(p.relative_to(folder(pb, done["id"]))) for p in folder(pb, done["id"]).rglob("*"))
    assert left == ["kept.txt", "sub", "sub/x.txt"]  # the rest is gone from disk
    assert outside.read_text() == "not yours" and stat.S_IMODE(outside.stat().st_mode) == 0o644  # untouched
    for name in ("passwd", "up/etc/passwd", "rel", "hard", "pipe", "sub/back/passwd"):
        assert pb.client.get(f"/api/runs/{done['id']}/artifacts/{name}").status_code == 404


def test_no_encoded_traversal_or_absolute_path_reaches_outside_the_folder(writer):
    pb = writer("file:report.csv", "file:sub/inner.txt")
    done = run(pb)
    other = run(pb)
    base = f"/api/runs/{done['id']}/artifacts/"
    attempts = ["..%2f..%2f..%2fhistory.sqlite3", "%2e%2e/%2e%2e/%2e%2e/history.sqlite3",
                "%2e%2e%2f%2e%2e%2f%2e%2e%2fhistory.sqlite3", "..%252f..%252fhistory.sqlite3",
                "%2fetc%2fpasswd", "/etc/passwd", "//etc/passwd", "sub/../report.csv", "sub/%2e%2e/report.csv",
                "./report.csv", "sub//inner.txt", f"..%2f..%2f{other['id']}%2fartifacts%2freport.csv",
                "..%5c..%5chistory.sqlite3", "report.csv%00.txt", "REPORT.CSV", "sub", "sub/"]
    for attempt in attempts:
        status, body = raw_get(pb, base + attempt)
        assert status == 404, (attempt, status, body[:200])
        assert b"SQLite format" not in body and b"root:" not in body
    assert raw_get(pb, base + "sub%2finner.txt")[0] == 200  # the same name, its slash encoded


def test_a_file_swapped_for_a_symlink_after_indexing_is_not_followed(writer):
    pb = writer("file:a.txt", "file:sub/b.txt", "file:c.txt")
    done = run(pb)
    root = folder(pb, done["id"])
    (root / "a.txt").unlink()
    (root / "a.txt").symlink_to("/etc/passwd")
    (root / "sub" / "b.txt").unlink()
    (root / "sub").rmdir()
    (root / "sub").symlink_to(root.parent.parent.parent)  # the data dir: sub/b.txt would be DATA/b.txt
    (pb.data_dir / "b.txt").write_text("outside")
    (root / "c.txt").unlink()
    os.mkfifo(root / "c.txt")  # would block a reader that opened it without O_NONBLOCK
    for name in ("a.txt", "sub/b.txt", "c.txt"):
        res = pb.client.get(f"/api/runs/{done['id']}/artifacts/{name}", timeout=10)
        assert res.status_code == 404, name
        assert b"root:" not in res.content and b"outside" not in res.content


def test_a_secret_value_in_a_file_name_drops_the_file_and_is_masked_in_the_message(tmp_path, write_jobs, pushbutton):
    secret = "Zq-artifact-secret-9d1c"
    jobs = write_jobs("""
        [job:leak]
        command = sh -c 'touch "$PB_ARTIFACTS/key-$PB_TOKEN.txt" "$PB_ARTIFACTS/fine.txt"'
        param.token.type = secret
        """)
    pb = pushbutton(jobs)
    done = run(pb, "leak", token=secret)
    assert [a["name"] for a in listing(pb, done["id"])] == ["fine.txt"]
    assert "'key-********.txt'" in "\n".join(pb.output(done["id"]))
    pb.stop()
    for path in pb.data_dir.rglob("*"):
        assert secret not in path.name
        if path.is_file():
            assert secret.encode() not in path.read_bytes()


def test_files_beyond_the_count_cap_are_dropped_in_name_order_with_a_message(writer):
    pb = writer(*(f"file:f{i}.txt" for i in range(5)), settings="artifacts_max_files = 3")
    done = run(pb)
    assert [a["name"] for a in listing(pb, done["id"])] == ["f0.txt", "f1.txt", "f2.txt"]
    out = "\n".join(pb.output(done["id"]))
    assert "2 file(s) dropped, over the caps of 3 files" in out and "'f3.txt', 'f4.txt'" in out
    assert sorted(p.name for p in folder(pb, done["id"]).iterdir()) == ["f0.txt", "f1.txt", "f2.txt"]


def test_the_per_run_and_total_byte_caps_keep_what_fits(writer):
    pb = writer("big:a.bin=600", "big:b.bin=600", "big:c.bin=100",
                settings="artifacts_max_run = 1KB\n    artifacts_max_total = 2KB")
    sizes = []
    for _ in range(3):
        done = run(pb)
        sizes.append({a["name"]: a["size"] for a in listing(pb, done["id"])})
        assert sorted(p.name for p in folder(pb, done["id"]).iterdir()) == sorted(sizes[-1])
    # per run: a (600) fits, b would make 1200 > 1024, c makes 700. In total 2048: 700, 1400, then 600 fits
    # (2000) but c's 100 more would not.
    assert sizes == [{"a.bin": 600, "c.bin": 100}, {"a.bin": 600, "c.bin": 100}, {"a.bin": 600}]
    assert "over the caps of 1000 files and 1KB per run, 2KB for all runs kept" in "\n".join(pb.output(done["id"]))


def test_runs_ending_together_keep_no_more_than_the_total_cap_between_them(pushbutton, write_jobs):
    """Each run's index read the others' artifacts from SQLite, where runs ending that moment were
    not yet: runs ending together each kept what the cap had room for once (a review saw 1.4 MB
    kept under 1 MB)."""
    pb = pushbutton(write_jobs("""
        [pushbutton]
        artifacts_max_total = 1MB

        [job:w]
        shell = yes
        command = head -c 300000 /dev/zero > "$PB_ARTIFACTS/part.bin"
        """))
    ids = [pb.start_run("w")["id"] for _ in range(6)]
    for run_id in ids:
        pb.wait(run_id)
    kept = [a["size"] for run_id in ids for a in listing(pb, run_id)]
    assert kept == [300_000] * 3, kept  # three fit in 1 MB, a fourth would not


def test_bad_caps_and_a_parameter_named_artifacts_are_reported_by_check_with_their_line(write_jobs):
    from server import catalog as C

    path = write_jobs("""
        [pushbutton]
        artifacts_max_run = lots
        artifacts_max_files = -1
        artifacts_max_total = 5GB
        [job:a]
        command = echo $PB_ARTIFACTS
        shell = yes
        param.artifacts.type = text
        """)
    with pytest.raises(C.CatalogError) as info:
        C.load(path)
    assert [str(p).replace(str(path), "FILE") for p in info.value.problems] == [
        "FILE:2: [pushbutton] artifacts_max_run: 'lots' is not a size like 100KB, 64MB or 1GB",
        "FILE:3: [pushbutton] artifacts_max_files: must be at least 0",
        "FILE:8: [job:a] param.artifacts.type: PB_ARTIFACTS is the run's artifacts folder: rename the parameter"]


def test_a_user_who_cannot_see_the_run_gets_404_exactly_as_for_a_missing_run(writer):
    pb = writer("file:report.csv", settings="""auth = header
    trusted_proxies = 127.0.0.1
    [team:a]
    members = ann
    [team:v]
    members = vic""", job_extra="run_by = team:a\n    view_by = team:v")
    clients = {name: httpx.Client(base_url=pb.url, headers={"X-Forwarded-User": name}, timeout=30)
               for name in ("ann", "vic", "otto")}
    res = clients["ann"].post("/api/jobs/w/runs", json={"params": {}})
    run_id = res.json()["run"]["id"]
    wait_for(lambda: clients["ann"].get(f"/api/runs/{run_id}").json()["state"] == "succeeded", 30)
    for who in ("ann", "vic"):
        assert clients[who].get(f"/api/runs/{run_id}/artifacts/report.csv").content == b"report.csvreport.csv"
    for path in (f"/api/runs/{run_id}/artifacts", f"/api/runs/{run_id}/artifacts/report.csv"):
        hidden = clients["otto"].get(path)
        missing = clients["otto"].get(path.replace(f"/{run_id}/", f"/{run_id + 99}/"))
        assert hidden.status_code == missing.status_code == 404
        assert hidden.text.replace(str(run_id), "ID") == missing.text.replace(str(run_id + 99), "ID")
        assert httpx.get(pb.url + path).status_code == 401


def test_a_pruned_run_takes_its_artifacts_with_it(writer):
    pb = writer("file:old.txt", settings="retention_days = 1")
    old, recent = run(pb), run(pb)
    assert folder(pb, old["id"]).joinpath("old.txt").exists()
    pb.stop()
    with sqlite3.connect(pb.data_dir / "history.sqlite3") as db:  # `old` ended two days ago
        db.execute("UPDATE runs SET finished = ? WHERE id = ?", (time.time() - 2 * 86400, old["id"]))
    pb.start()  # prunes at start
    assert pb.client.get(f"/api/runs/{old['id']}").status_code == 404
    assert not (pb.data_dir / "runs" / str(old["id"])).exists()
    assert [a["name"] for a in listing(pb, recent["id"])] == ["old.txt"]


def test_a_run_interrupted_by_a_crash_keeps_what_it_wrote(writer):
    pb = writer("file:partial.csv", "link:escape=/etc/passwd", "sleep:60")
    res = pb.client.post("/api/jobs/w/runs", json={"params": {}})
    run_id = res.json()["run"]["id"]
    wait_for(lambda: (folder(pb, run_id) / "partial.csv").exists(), 30)
    pb.stop(signal.SIGKILL)
    pb.start()
    assert pb.run(run_id)["state"] == "interrupted"
    assert [a["name"] for a in listing(pb, run_id)] == ["partial.csv"]
    assert pb.client.get(f"/api/runs/{run_id}/artifacts/partial.csv").content == b"partial.csvpartial.csv"
    assert pb.client.get(f"/api/runs/{run_id}/artifacts/escape").status_code == 404
    assert not os.path.lexists(folder(pb, run_id) / "escape")


def test_the_preview_names_pb_artifacts_for_local_jobs_only(write_jobs, pushbutton, tmp_path):
    pb = pushbutton(write_jobs("""
        [host:far]
        address = 127.0.0.1
        [job:here]
        command = true
        [job:there]
        command = true
        targets = host:far
        """))
    here = pb.client.post("/api/jobs/here/preview", json={"params": {}}).json()
    there = pb.client.post("/api/jobs/there/preview", json={"params": {}}).json()
    assert "PB_ARTIFACTS" in here["env"] and "PB_ARTIFACTS" not in there["env"]
    runs = pb.data_dir / "runs"
    assert not runs.exists() or not any(f.name.isdigit() for f in runs.iterdir())  # a preview makes no run's folder


def test_a_large_artifact_is_hashed_and_streamed_without_growing_the_server(writer):
    size = 300 * 1024 * 1024
    pb = writer(f"big:huge.bin={size}")
    done = run(pb)
    (entry,) = listing(pb, done["id"])
    assert entry["size"] == size
    before = _hwm(pb.proc.pid)
    digest, got = hashlib.sha256(), 0
    with pb.client.stream("GET", f"/api/runs/{done['id']}/artifacts/huge.bin", timeout=120) as res:
        assert res.headers["content-length"] == str(size)
        for chunk in res.iter_bytes():
            digest.update(chunk)
            got += len(chunk)
    assert got == size and digest.hexdigest() == entry["sha256"]
    assert _hwm(pb.proc.pid) - before < 32 * 1024, "the server's peak memory grew by 32 MiB or more"


def _hwm(pid: int) -> int:
    """The process's peak resident memory, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("made_ahead", [0, 4], ids=["none-made-ahead", "made-ahead"])
def test_a_folder_left_by_a_data_dir_reused_without_its_database_is_emptied_before_the_run(tmp_path, made_ahead):
    store = Store(tmp_path)
    try:
        ready = ReadyFolders(store, lambda: made_ahead)
        ready.fill()
        left = tmp_path / "runs" / "7" / "artifacts"
        (left / "deep").mkdir(parents=True)
        (left / "deep" / "old.txt").write_text("from another database")
        fresh = tmp_path / "runs" / "8" / "artifacts"
        assert artifacts.prepare(ready, 7, remote=False) == str(left)
        assert artifacts.prepare(ready, 8, remote=False) == str(fresh)
        for folder in (left, fresh, fresh.parent):
            assert folder.is_dir() and stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert list(left.iterdir()) == [] and list(fresh.iterdir()) == []
        assert len(ready.stock) == max(0, made_ahead - 1)  # 8 took one; 7 had a folder: made the usual way
        assert artifacts.prepare(ready, 9, remote=True) is None
    finally:
        store.close()


def test_a_run_that_never_ran_here_lists_and_serves_nothing_an_older_database_left(pushbutton, write_jobs, tmp_path):
    """A data dir reused without its database: run 2, cancelled while queued, never had a folder
    of its own; the one under its id is the old run 2's and is not its to show."""
    old = tmp_path / "data" / "runs" / "2" / "artifacts"
    old.mkdir(parents=True)
    (old / "payroll.csv").write_text("alice,100000\n")
    pb = pushbutton(write_jobs("""
        [pushbutton]
        max_concurrent_runs = 1
        [job:slow]
        command = sleep 30
        """), data_dir=tmp_path / "data")
    first, second = pb.start_run("slow"), pb.start_run("slow")
    assert second["id"] == 2 and second["state"] == "queued"
    assert pb.client.post("/api/runs/2/cancel").status_code == 202
    assert pb.client.post(f"/api/runs/{first['id']}/cancel").status_code == 202
    assert pb.wait(2)["state"] == "cancelled"
    assert listing(pb, 2) == []
    assert pb.client.get("/api/runs/2/artifacts/payroll.csv").status_code == 404


def test_a_cancel_after_the_process_ended_is_refused_not_recorded_as_a_stop(pushbutton, write_jobs):
    """While a finished run's artifacts are indexed (hashing 2 GB takes a moment) it still reads
    `running`; a cancel then changed nothing, yet the run ended `succeeded` with "stopped by"."""
    pb = pushbutton(write_jobs("""
        [pushbutton]
        artifacts_max_run = 4GB
        artifacts_max_total = 8GB

        [job:big]
        shell = yes
        command = truncate -s 2G "$PB_ARTIFACTS/big.bin"; echo done
        """))
    run_id = pb.start_run("big")["id"]
    with pb.client.stream("GET", f"/api/runs/{run_id}/events", timeout=60) as res:
        for event in parse_sse(sse_lines(res)):
            if event.type == "output" and "done" in event.data["lines"]:
                break
    time.sleep(0.3)  # the process is gone: an indexing run, or an ended one, refuses the cancel alike
    refused = pb.client.post(f"/api/runs/{run_id}/cancel")
    assert refused.status_code == 409, refused.text
    done = pb.wait(run_id, timeout=60)
    assert (done["state"], done["stopped_by"]) == ("succeeded", None)
    assert pb.client.get("/api/audit", params={"action": "run.stop"}).json()["entries"] == []


# A job that took its own permissions away, indexed and pruned by a server that is not root.
LOCKED = r"""
import json, os, sys
from server import files
from server.files import artifacts as A
data = sys.argv[1]
root = A.folder(data, 1)
os.makedirs(root / "locked" / "deeper")
with open(root / "locked" / "deeper" / "big.bin", "wb") as f:
    f.truncate(5_000_000)  # over the 1 MB cap below
with open(root / "locked" / "small.txt", "w") as f:
    f.write("kept")
with open(root / "noperm.txt", "w") as f:
    f.write("x")
with open(root / "theirs.txt", "w") as f:
    f.write("y")
for path in ("theirs.txt", "noperm.txt", "locked/deeper", "locked"):
    os.chmod(root / path, 0)
try:  # a file of another user's, which the server may not make readable
    os.chown(root / "theirs.txt", 65534, 65534)
    theirs = True
except PermissionError:
    theirs = False
kept, notes = A.index(data, 1, A.Limits(max_files=10, max_run=1_000_000, max_total=1_000_000), lambda: 0)
left = sorted(os.path.relpath(os.path.join(d, n), root) for d, ds, fs in os.walk(root) for n in ds + fs)
os.makedirs(root / "later" / "inner")  # left locked, after indexing: pruning removes it all the same
os.chmod(root / "later" / "inner", 0)
os.chmod(root / "later", 0)
files.remove_run_folder(data, 1)
print(json.dumps({"kept": [k["name"] for k in kept], "notes": notes, "left": left, "theirs": theirs,
                  "pruned": not os.path.exists(os.path.join(data, "runs", "1"))}))
"""


def not_root(script: str, *args: str) -> str:
    """Run `script` as a server that is not root: as root, under setpriv without the capabilities
    that override file modes (a root server would read mode 000 anyway); its standard output."""
    command = [PY, "-c", script, *args]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            if in_ci():
                pytest.fail("setpriv (util-linux) is needed to test as a server that is not root")
            pytest.skip("running as root without setpriv")
        caps = "-dac_override,-dac_read_search,-fowner"
        command = [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}", *command]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_artifacts_a_job_made_unreadable_are_indexed_reported_and_pruned(tmp_path):
    """Folders and files of mode 000 are made their owner's again and indexed like the rest (big.bin
    over the cap, not hidden from it); what still cannot be opened is deleted with a note saying
    so; a locked folder does not outlive its run's pruning."""
    seen = json.loads(not_root(LOCKED, str(tmp_path)))
    assert seen["kept"] == ["locked/small.txt", "noperm.txt"]
    assert seen["notes"][-1].startswith("pushbutton: artifacts: 1 file(s) dropped, over the caps of")
    assert seen["notes"][-1].endswith(": 'locked/deeper/big.bin'")
    if seen["theirs"]:
        assert seen["notes"][0] == ("pushbutton: artifacts: 1 not kept: could not be opened, even made "
                                    "readable by its owner: 'theirs.txt'")
    assert len(seen["notes"]) == 1 + seen["theirs"]
    assert seen["left"] == ["locked", "locked/deeper", "locked/small.txt", "noperm.txt"]
    assert seen["pruned"]
