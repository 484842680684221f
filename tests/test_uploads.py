"""File parameters (server/files/uploads.py) through a real server process: multipart starts,
what the job sees, what history keeps, refusals that leave nothing on disk, and the run's files
removed whatever its end. Large files and memory: tests/test_uploads_large.py; the catalog's
keys: tests/test_uploads_catalog.py; remote hosts: tests/ssh/test_remote_files.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import stat
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import small_disk, wait_for

SCRIPT = Path(__file__).with_name("upload_job.py")
JOBS = f"""
[job:load]
command = {sys.executable} {SCRIPT} --file={{data}}
param.data.type = file
param.data.max_size = 100KB
param.data.accept = .csv, text/plain
param.data.required = yes
param.note.type = text

[job:optional]
command = {sys.executable} {SCRIPT} {{data}}
param.data.type = file

[job:fails]
command = sh -c 'test -s "$PB_DATA" && exit 3'
param.data.type = file

[job:waits]
command = sleep 60
param.data.type = file

[job:plain]
command = echo {{who}}
param.who.type = text
"""


@pytest.fixture
def pb(pushbutton, write_jobs):
    return pushbutton(write_jobs(JOBS))


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "pbtestboundary42") -> tuple[bytes, str]:
    """A multipart/form-data body written byte for byte (names as given: the test decides what
    odd bytes a client sends); (body, content type)."""
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'.encode()
        if filename is not None:
            disposition += b'; filename="' + filename.encode("utf-8", "surrogateescape") + b'"'
        out += b"--" + boundary.encode() + b"\r\nContent-Disposition: " + disposition + b"\r\n"
        if filename is not None:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + data + b"\r\n"
    out += b"--" + boundary.encode() + b"--\r\n"
    return out, f"multipart/form-data; boundary={boundary}"


def start(pb, job: str, params: dict, files: list[tuple[str, str, bytes]], path: str | None = None):
    body, ctype = multipart([("json", None, json.dumps({"params": params}).encode()),
                             *[(name, filename, data) for name, filename, data in files]])
    return pb.client.post(path or f"/api/jobs/{job}/runs", content=body, headers={"Content-Type": ctype})


def report(pb, run_id: int) -> dict:
    """What upload_job.py saw, from the run's output."""
    lines = pb.output(run_id)
    return json.loads(next(line for line in lines if line.startswith("{")))


def leftovers(pb) -> list[Path]:
    """Every file the server keeps for uploads: staging and the runs' upload folders."""
    found = []
    for folder, dirs, files in os.walk(pb.data_dir / "runs"):  # a folder removed meanwhile is skipped
        found += [p for name in dirs + files if "incoming" in (p := Path(folder, name)).parts or "uploads" in p.parts]
    return sorted(found)


def test_job_gets_the_path_in_argv_and_env_and_the_users_name(pb):
    data = b"id,name\n1,alpha\n"
    res = start(pb, "load", {"note": "x"}, [("data", "accounts.csv", data)])
    assert res.status_code == 202, res.text
    run = pb.wait(res.json()["run"]["id"])
    assert run["state"] == "succeeded", pb.output(run["id"])
    seen = report(pb, run["id"])
    path = seen["argv"][0].removeprefix("--file=")
    assert path == seen["env"]["PB_DATA"]
    assert seen["env"]["PB_DATA_FILENAME"] == "accounts.csv"
    assert seen["sha256"] == hashlib.sha256(data).hexdigest()
    # DATA/runs/<id>/uploads/<generated name>: 0700 folder, 0600 file, not the user's name
    assert Path(path).parent == pb.data_dir / "runs" / str(run["id"]) / "uploads"
    assert len(Path(path).name) == 32 and int(Path(path).name, 16) >= 0
    assert seen["file_mode"] == 0o600 and seen["dir_mode"] == 0o700
    # the run's stored preview is what ran: the path the job got
    assert run["preview"]["argv"][-1] == "--file=" + path


def test_history_keeps_name_size_and_sha256_never_the_content(pb):
    data = b"secret-ish content 7f3a9c\n" * 10
    run = start(pb, "load", {}, [("data", "dump.csv", data)]).json()["run"]
    assert run["params"]["data"] == {"name": "dump.csv", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    pb.wait(run["id"])
    listed = pb.client.get("/api/runs").json()["runs"][0]
    assert listed["params"]["data"]["name"] == "dump.csv"
    with sqlite3.connect(pb.data_dir / "history.sqlite3") as db:
        dumped = "\n".join(db.iterdump())
    assert "7f3a9c" not in dumped and "dump.csv" in dumped


@pytest.mark.parametrize("value", ["/etc/passwd", {"name": "a.csv", "size": 1, "sha256": "0" * 64}, ["/etc/passwd"]])
def test_a_path_or_description_given_as_json_is_refused(pb, value):
    """Only a file the server received itself: else a request could point a job at any file."""
    res = pb.client.post("/api/jobs/load/runs", json={"params": {"data": value}})
    assert res.status_code == 400 and set(res.json()["fields"]) == {"data"}, res.text
    res = start(pb, "load", {"data": value}, [])  # the same in a multipart's json part
    assert res.status_code == 400 and set(res.json()["fields"]) == {"data"}, res.text
    assert pb.client.get("/api/runs").json()["runs"] == []


def test_json_only_starts_keep_working_for_jobs_without_files(pb):
    run = pb.start_run("plain", who="world")
    assert pb.output(run["id"]) == ["world"]
    res = start(pb, "plain", {"who": "multi"}, [])  # and multipart with only the json part
    assert res.status_code == 202, res.text
    assert pb.output(res.json()["run"]["id"]) == ["multi"]


def test_an_optional_file_left_empty_is_no_file(pb):
    res = start(pb, "optional", {}, [("data", "", b"")])  # a form's empty file input
    assert res.status_code == 202, res.text
    run = pb.wait(res.json()["run"]["id"])
    assert run["params"]["data"] is None and report(pb, run["id"])["argv"] == [""]


def test_oversize_upload_is_refused_with_a_field_error_and_leaves_nothing(pb):
    res = start(pb, "load", {}, [("data", "big.csv", b"x" * 300_000)])
    assert res.status_code == 413, res.text
    assert res.json()["fields"] == {"data": "larger than the 100KB allowed"}
    assert leftovers(pb) == [p for p in leftovers(pb) if p.is_dir()]  # no file anywhere
    assert not any(p.is_file() for p in leftovers(pb))
    assert pb.client.get("/api/runs").json()["runs"] == []


def test_a_declared_length_over_every_limit_is_refused_before_reading(pb):
    with _connect(pb) as sock:
        sock.sendall(_head(pb, "load", 10**9))  # no body at all: the answer comes from the headers
        answer = sock.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 413"), answer
    assert not any(p.is_file() for p in leftovers(pb))


def test_a_name_accept_does_not_allow_is_refused(pb):
    res = start(pb, "load", {}, [("data", "payload.exe", b"MZ")])
    assert res.status_code == 400 and res.json()["fields"] == {"data": "must be one of: .csv, text/plain"}
    for name in ("UPPER.CSV", "notes.txt"):  # case-blind; a media type stands for its extensions
        assert start(pb, "load", {}, [("data", name, b"1")]).status_code == 202
    assert not any(p.is_file() for p in leftovers(pb) if "incoming" in p.parts)


def test_a_part_for_a_parameter_that_is_not_a_file_is_refused(pb):
    res = start(pb, "load", {}, [("data", "a.csv", b"1"), ("note", "n.csv", b"1")])
    assert res.status_code == 400 and set(res.json()["fields"]) == {"note"}
    assert not any(p.is_file() for p in leftovers(pb))


@pytest.mark.parametrize(("given", "kept"), [
    ("../../../etc/passwd.csv", "passwd.csv"),
    ("..\\..\\windows\\win.csv", "win.csv"),
    ("..hidden.csv", "hidden.csv"),  # a leading dot would hide it (and `..` name a parent)
    ("e\u0301t\u00e9.csv", "\u00e9t\u00e9.csv"),  # NFC
    ("a\x1b[31mred\x07\x7f.csv", "a[31mred.csv"),  # control characters gone
    ("r\u202egnp.csv", "rgnp.csv"),  # a right-to-left override would disguise the extension
    ("x" * 300 + ".csv", "x" * 196 + ".csv"),  # length capped, extension kept
])
def test_odd_file_names_are_cleaned_for_display_and_env(pb, given, kept):
    res = start(pb, "load", {}, [("data", given, b"1")])
    assert res.status_code == 202, res.text
    run = pb.wait(res.json()["run"]["id"])
    assert run["params"]["data"]["name"] == kept
    seen = report(pb, run["id"])
    assert seen["env"]["PB_DATA_FILENAME"] == kept
    path = Path(seen["env"]["PB_DATA"])  # the file itself is under a generated name, in the run's folder
    assert path.parent == pb.data_dir / "runs" / str(run["id"]) / "uploads" and kept not in str(path)


def _connect(pb) -> socket.socket:
    host, port = pb.url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)))


def _head(pb, job: str, length: int, boundary: str = "pbtestboundary42") -> bytes:
    host = pb.url.removeprefix("http://")
    return (f"POST /api/jobs/{job}/runs HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer test-token-123\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n\r\n").encode()


def test_a_dropped_upload_leaves_nothing_behind(pb):
    body, _ = multipart([("json", None, b'{"params": {}}'), ("data", "half.csv", b"y" * 90_000)])
    sock = _connect(pb)
    sock.sendall(_head(pb, "load", len(body)) + body[:80_000])  # then the client is gone
    staged = wait_for(lambda: [p for p in leftovers(pb) if p.is_file()], timeout=10)
    assert staged and "incoming" in staged[0].parts  # it was being written...
    sock.close()
    wait_for(lambda: not any(p.is_file() for p in leftovers(pb)), timeout=10)  # ...and is gone
    assert not list((pb.data_dir / "runs" / "incoming").glob("*/*"))  # the server's own folder only
    assert pb.client.get("/api/runs").json()["runs"] == []


def _half_sent(pb, size: int = 200_000):
    """A start on `load` whose file is not all sent (its first 64 KiB chunk is): (socket, the rest
    of the body, the staged file)."""
    body, _ = multipart([("json", None, b'{"params": {}}'), ("data", "slow.csv", b"y" * size)])
    sock = _connect(pb)
    sock.sendall(_head(pb, "load", len(body)) + body[:-1000])
    staged = wait_for(lambda: [p for p in leftovers(pb) if p.is_file()], timeout=10)
    return sock, body[-1000:], staged[0]


def _answer(sock) -> bytes:
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    sock.close()
    return answer


def test_a_second_server_never_removes_an_upload_still_arriving(pushbutton, write_jobs):
    """Two servers on one data dir: B's start-up sweep leaves A's staging alone, however long its
    upload has been arriving (a 4GB file on a slow link)."""
    jobs = write_jobs(JOBS.replace("param.data.max_size = 100KB", "param.data.max_size = 1MB"))
    a = pushbutton(jobs)
    sock, rest, staged = _half_sent(a)
    old = time.time() - 2 * 3600
    os.utime(staged.parent, (old, old))
    pushbutton(jobs, data_dir=a.data_dir)  # server B starts
    assert staged.exists()
    sock.sendall(rest)
    assert _answer(sock).startswith(b"HTTP/1.1 202")
    assert a.wait(1)["state"] == "succeeded"


def test_a_run_whose_files_cannot_be_moved_ends_failed_not_queued(pb):
    """Its staging removed behind the request: the run, already recorded, ends failed saying why,
    instead of a 500 and a run queued for ever."""
    sock, rest, staged = _half_sent(pb, 90_000)
    for path in staged.parent.iterdir():
        path.unlink()
    staged.parent.rmdir()
    sock.sendall(rest)
    answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 202"), answer[:300]
    run = json.loads(answer.split(b"\r\n\r\n", 1)[1])["run"]
    assert run["state"] == "failed"
    assert run["message"] == "its uploaded files could not be moved into its folder: No such file or directory"
    assert [(r["id"], r["state"]) for r in pb.client.get("/api/runs").json()["runs"]] == [(run["id"], "failed")]


@pytest.mark.parametrize(("job", "end"), [("load", "succeeded"), ("fails", "failed"), ("waits", "cancelled")])
def test_the_runs_files_are_removed_whatever_its_end(pb, job, end):
    res = start(pb, job, {}, [("data", "a.csv", b"1,2\n")])
    run = res.json()["run"]
    folder = pb.data_dir / "runs" / str(run["id"]) / "uploads"
    if end == "cancelled":  # the others may be over already: each shows it had the file (below)
        assert len(list(folder.iterdir())) == 1  # there while the run is
        assert pb.client.post(f"/api/runs/{run['id']}/cancel").status_code == 202
    done = pb.wait(run["id"])
    assert done["state"] == end
    if job == "fails":
        assert done["exit_code"] == 3  # `test -s "$PB_DATA"` held
    if job == "load":
        assert report(pb, run["id"])["sha256"] == hashlib.sha256(b"1,2\n").hexdigest()
    wait_for(lambda: not folder.exists(), timeout=10)


def test_rerun_asks_for_the_file_again(pb):
    first = start(pb, "load", {"note": "n"}, [("data", "a.csv", b"1")]).json()["run"]
    pb.wait(first["id"])
    res = pb.client.post(f"/api/runs/{first['id']}/rerun", json={"params": {}})
    assert res.status_code == 400
    assert res.json()["fields"] == {"data": "choose the file again: files are not kept after a run"}
    res = start(pb, "load", {}, [("data", "b.csv", b"22")], path=f"/api/runs/{first['id']}/rerun")
    assert res.status_code == 202, res.text
    again = pb.wait(res.json()["run"]["id"])
    assert again["params"]["note"] == "n" and again["params"]["data"]["name"] == "b.csv"
    assert report(pb, again["id"])["env"]["PB_DATA_FILENAME"] == "b.csv"


def test_preview_takes_a_description_of_the_file_not_the_file(pb):
    res = pb.client.post("/api/jobs/load/preview", json={"params": {"data": {"name": "a.csv", "size": 10}}})
    assert res.status_code == 200, res.text
    assert res.json()["argv"][-1] == "--file=<data upload>"
    assert "PB_DATA_FILENAME" in res.json()["env"]
    res = pb.client.post("/api/jobs/load/preview", json={"params": {"data": {"name": "a.csv", "size": 200_000}}})
    assert res.status_code == 400 and res.json()["fields"] == {"data": "larger than the 100KB allowed"}
    res = pb.client.post("/api/jobs/load/preview", json={"params": {}})
    assert res.status_code == 400 and res.json()["fields"] == {"data": "required"}


def test_files_of_runs_a_dead_server_left_are_removed_at_start(pushbutton, write_jobs, tmp_path):
    pb = pushbutton(write_jobs(JOBS))
    run = start(pb, "waits", {}, [("data", "a.csv", b"1")]).json()["run"]
    folder = pb.data_dir / "runs" / str(run["id"]) / "uploads"
    stale = pb.data_dir / "runs" / "incoming" / "0badc0ffee00"  # a server that is gone, a moment ago
    (stale / "f00d").mkdir(parents=True)
    (stale / "f00d" / "x").write_bytes(b"1")
    pb.proc.kill()  # no chance to tidy
    pb.proc.wait()
    assert folder.exists()
    pb.start()
    assert not folder.exists() and not stale.exists()
    assert stat.S_IMODE((pb.data_dir / "runs").stat().st_mode) == 0o700


def test_a_full_disk_during_an_upload_answers_507_and_is_logged_not_blamed_on_the_client(
        pushbutton, write_jobs, tmp_path):
    """The data dir's disk (a real 3 MB tmpfs) fills while an 8 MB file arrives: the server's
    fault, said so (507) and logged; nothing is kept, and a file that fits is taken afterwards."""
    jobs = write_jobs(JOBS.replace("param.data.max_size = 100KB", "param.data.max_size = 20MB"))
    with small_disk(tmp_path / "disk", "3m") as disk:
        pb = pushbutton(jobs, data_dir=disk / "data")
        try:
            res = start(pb, "load", {}, [("data", "big.csv", b"y" * 8_000_000)])
            assert res.status_code == 507, res.text
            assert res.json() == {"error": "the server has no room for this upload: its disk is full"}
            log = (tmp_path / "server.log").read_text()
            assert "an upload for job load was refused: no room in the data dir" in log
            assert "No space left on device" in log
            wait_for(lambda: not any(p.is_file() for p in leftovers(pb)), timeout=10)
            assert pb.client.get("/api/runs").json()["runs"] == []
            ok = start(pb, "load", {}, [("data", "small.csv", b"1,2\n")])
            assert ok.status_code == 202 and pb.wait(ok.json()["run"]["id"])["state"] == "succeeded"
        finally:
            pb.stop()


def test_a_chunked_upload_is_cut_off_at_max_size_too(pb):
    """No Content-Length to judge by: the bytes are counted as they arrive."""
    body, ctype = multipart([("json", None, b'{"params": {}}'), ("data", "big.csv", b"z" * 400_000)])

    def chunks():
        for at in range(0, len(body), 8192):
            yield body[at:at + 8192]

    res = pb.client.post("/api/jobs/load/runs", content=chunks(), headers={"Content-Type": ctype})
    assert res.status_code == 413 and res.json()["fields"] == {"data": "larger than the 100KB allowed"}
    assert not any(p.is_file() for p in leftovers(pb))
    assert pb.client.get("/api/runs").json()["runs"] == []


def test_the_path_is_absolute_whatever_the_data_dir_is_given_as(pushbutton, write_jobs, tmp_path, monkeypatch):
    """`--data-dir data` from another folder than the job's workdir: the job must still find it."""
    monkeypatch.chdir(tmp_path)
    jobs = write_jobs(JOBS.replace("[job:load]", "[job:load]\nworkdir = /"))
    pb = pushbutton(jobs, data_dir=Path("data"))
    res = start(pb, "load", {}, [("data", "a.csv", b"1,2\n")])
    run = pb.wait(res.json()["run"]["id"])
    assert run["state"] == "succeeded", pb.output(run["id"])
    assert Path(report(pb, run["id"])["env"]["PB_DATA"]).is_absolute()


def test_the_sample_import_job_reads_an_uploaded_csv_and_keeps_a_summary(pushbutton):
    """The sample jobs.ini's file parameter, end to end, as an analyst first meets it."""
    from tests.conftest import ROOT

    pb = pushbutton(ROOT / "jobs.ini")
    res = pb.client.post("/api/jobs/import/runs", files={"data": ("sales.csv", b"region,total\nnorth,12\nsouth,7\n")},
                         data={"json": '{"params": {}}'})
    assert res.status_code == 202, res.text
    run_id = res.json()["run"]["id"]
    assert pb.output(run_id) == ["Importing sales.csv: 3 lines", "  region,total", "  north,12", "  south,7", "done"]
    assert pb.wait(run_id)["state"] == "succeeded"
    assert pb.client.get(f"/api/runs/{run_id}/artifacts/summary.txt").text == "file: sales.csv\nlines: 3\n"
    refused = pb.client.post("/api/jobs/import/runs", files={"data": ("sales.xlsx", b"x")}, data={"json": "{}"})
    assert refused.status_code == 400 and "data" in refused.json()["fields"]
