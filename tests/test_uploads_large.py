"""A file of a few hundred MiB through a real server: streamed to disk as it arrives, so the
server's peak memory (VmHWM of its process) stays flat; neither does this test hold the file."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from tests.test_uploads import SCRIPT, multipart, report

SIZE = 300 * 1024 * 1024
BLOCK = 1024 * 1024


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_a_300_mib_upload_keeps_the_servers_memory_flat(pushbutton, write_jobs):
    pb = pushbutton(write_jobs(f"""
        [job:big]
        command = {sys.executable} {SCRIPT} {{data}}
        param.data.type = file
        param.data.max_size = 1GB
        """))
    head, ctype = multipart([("json", None, b'{"params": {}}'), ("data", "big.bin", b"")])
    head, tail = head.split(b"\r\n--pbtestboundary42--")  # the file's bytes go between
    tail = b"\r\n--pbtestboundary42--" + tail
    digest = hashlib.sha256()

    def body():
        yield head
        for i in range(SIZE // BLOCK):
            block = i.to_bytes(8, "big") * (BLOCK // 8)  # made as sent, never all at once
            digest.update(block)
            yield block
        yield tail

    pb.client.get("/api/jobs")  # the server's own working set, once warm
    before = vm_kib(pb.proc.pid, "VmHWM")
    length = len(head) + SIZE + len(tail)
    res = pb.client.post("/api/jobs/big/runs", content=body(), timeout=300,
                         headers={"Content-Type": ctype, "Content-Length": str(length)})
    assert res.status_code == 202, res.text
    grew = vm_kib(pb.proc.pid, "VmHWM") - before
    assert grew < 40 * 1024, f"the server's peak memory grew by {grew} KiB for a {SIZE >> 20} MiB upload"
    run = pb.wait(res.json()["run"]["id"], timeout=120)
    assert run["state"] == "succeeded"
    assert run["params"]["data"] == {"name": "big.bin", "size": SIZE, "sha256": digest.hexdigest()}
    assert report(pb, run["id"])["sha256"] == digest.hexdigest()  # what the job read is what was sent
