"""Uploaded files on remote hosts (server/executors/remote_files.py) against real sshd: each host
gets its own private copy before the command, the job's argv and environment name it, and it is
removed after, whatever the end. The lab's hosts are this machine, so their temp dirs can be read."""

from __future__ import annotations

import hashlib
import json
import textwrap
import time
from pathlib import Path

from tests.helpers import wait_for
from tests.ssh import sshd
from tests.test_uploads import multipart

REPORT = ("""sh -c 'printf "%s\\n" "$1" "$PB_DATA" "$PB_DATA_FILENAME" "$(sha256sum < "$1")" """
          """"$(stat -c %a "$1" "${1%/*}" | tr "\\n" " ")"; sleep "$2"' sh {data} {wait}""")


def start(pb, job: str, data: bytes, wait: int = 0) -> dict:
    body, ctype = multipart([("json", None, json.dumps({"params": {"wait": wait}}).encode()),
                             ("data", "../hosts.csv", data)])
    res = pb.client.post(f"/api/jobs/{job}/runs", content=body, headers={"Content-Type": ctype})
    assert res.status_code == 202, res.text
    return res.json()["run"]


def by_host(pb, run_id: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in pb.events(run_id):
        if e.type == "output":
            out.setdefault(e.data["host"], []).extend(e.data["lines"])
    return out


def test_each_host_gets_a_private_copy_removed_after(pushbutton, write_jobs, hosts_ini):
    pb = pushbutton(write_jobs(hosts_ini + textwrap.dedent(f"""
        [job:two]
        command = {REPORT}
        targets = host:h1, host:h2
        param.data.type = file
        param.wait.type = int
        """)))
    data = b"host,role\nh1,db\n" * 1000
    run = start(pb, "two", data)
    assert pb.wait(run["id"])["state"] == "succeeded", by_host(pb, run["id"])
    seen = by_host(pb, run["id"])
    assert set(seen) == {"h1", "h2"}
    folders = set()
    for lines in seen.values():
        arg, env_path, filename, digest, modes = lines
        assert arg == env_path and filename == "hosts.csv"
        assert digest.split()[0] == hashlib.sha256(data).hexdigest()
        assert modes.split() == ["600", "700"]
        assert Path(arg).parent.name.startswith("pb-upload.") and str(pb.data_dir) not in arg
        folders.add(Path(arg).parent)
    assert len(folders) == 2  # one folder per host
    wait_for(lambda: not any(f.exists() for f in folders), timeout=10)


def test_a_cancelled_remote_run_removes_its_copy(pushbutton, write_jobs, hosts_ini):
    pb = pushbutton(write_jobs(hosts_ini + textwrap.dedent(f"""
        [job:slow]
        command = {REPORT}
        targets = host:h3
        param.data.type = file
        param.wait.type = int
        """)))
    before = set(Path("/tmp").glob("pb-upload.*"))
    run = start(pb, "slow", b"1", wait=60)
    folder = wait_for(lambda: set(Path("/tmp").glob("pb-upload.*")) - before, timeout=20).pop()
    wait_for(lambda: pb.run(run["id"])["hosts"][0]["state"] == "running", timeout=20)
    assert folder.exists()
    assert pb.client.post(f"/api/runs/{run['id']}/cancel").status_code == 202
    assert pb.wait(run["id"])["state"] == "cancelled"
    wait_for(lambda: not folder.exists(), timeout=15)


def test_a_host_whose_key_is_wrong_gets_no_file(pushbutton, write_jobs, lab, servers):
    """The copy uses the run's own ssh options: a host key that is not the pinned one fails the
    host before any byte of the file leaves."""
    wrong = lab.known_hosts("wrong", [servers["h4"].known_hosts_line(servers["h2"].host_key)])
    pb = pushbutton(write_jobs(sshd.host_section(lab, servers["h4"], known_hosts=wrong) + textwrap.dedent(f"""
        [job:bad]
        command = {REPORT}
        targets = host:h4
        param.data.type = file
        param.wait.type = int
        """)))
    before = set(Path("/tmp").glob("pb-upload.*"))
    run = pb.wait(start(pb, "bad", b"secret data")["id"])
    assert run["state"] == "failed" and run["hosts"][0]["error"].startswith("host key"), run["hosts"]
    assert set(Path("/tmp").glob("pb-upload.*")) == before


def test_a_stop_while_files_are_copied_runs_nothing_and_every_host_counts_as_done(pushbutton, write_jobs, lab,
                                                                                  servers):
    slow = sshd.SlowProxy(servers["h1"].port, delay=3)  # the copy's connection is still being made
    mark = lab.scratch / "copy-stopped-ran"
    hosts_ini = (sshd.host_section(lab, servers["h1"], "far", port=slow.port, host_key=servers["h1"].host_key)
                 + sshd.host_section(lab, servers["h2"], "next"))
    pb = pushbutton(write_jobs(hosts_ini + textwrap.dedent(f"""
        [group:in_turn]
        hosts = far, next
        parallel = 1
        [job:touch]
        command = sh -c 'touch {mark}-$TESTHOST; echo ran' sh {{data}}
        targets = group:in_turn
        param.data.type = file
        param.wait.type = int
        """)))
    try:
        run = start(pb, "touch", b"a,b\n")
        wait_for(lambda: pb.run(run["id"])["hosts"][0]["state"] == "connecting", timeout=20)
        time.sleep(1)  # within the copy's 3 s
        assert pb.client.post(f"/api/runs/{run['id']}/cancel").status_code == 202
        ended = pb.wait(run["id"])
        events = pb.events(run["id"])
    finally:
        slow.close()
    assert ended["state"] == "cancelled"
    assert [(h["name"], h["state"]) for h in ended["hosts"]] == [("far", "cancelled"), ("next", "cancelled")]
    assert not list(lab.scratch.glob("copy-stopped-ran*"))  # the command never ran anywhere
    assert "ran" not in [line for e in events if e.type == "output" for line in e.data["lines"]]
    assert [e.data["message"] for e in events if e.type == "progress"][-1] == "2/2 hosts done"
