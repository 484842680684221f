"""What a remote host (or its login scripts) prints before the wrapper's start marker is the
server's own chatter: however much of it comes, without a newline or with a fake marker, it is
kept to a bounded tail and never crashes or stalls the host's reader. No sshd needed: the
`ssh` process is stood in for by one that prints what such a host would."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import gevent

from server import catalog as C
from server.executors.ssh import CHATTER_MAX, SshProcess


class Recorder:
    def __init__(self):
        self.data = b""

    def feed(self, chunk: bytes) -> None:
        self.data += chunk

    def close(self) -> None:
        pass


def pump(tmp_path, program: str) -> tuple[SshProcess, Recorder, int]:
    """Run `program` (Python) as the host's ssh and read its stdout as a session would; the peak
    of memory allocated meanwhile."""
    proc = SshProcess(C.Host(name="h", address="10.0.0.5"), ["true"], {}, 1.0, tmp_path, 0)
    proc.proc = subprocess.Popen([sys.executable, "-c", program.replace("NONCE", proc.nonce)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    proc._send_env = lambda: None  # nothing on the other end reads it
    out = Recorder()
    tracemalloc.start()
    try:
        gevent.spawn(proc._pump_stdout, out).join(timeout=60)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        proc.proc.kill()
        proc.proc.wait()
    return proc, out, peak


def test_a_flood_without_a_newline_before_the_marker_is_kept_bounded(tmp_path):
    program = ("import sys\nfor _ in range(48): sys.stdout.buffer.write(b'x' * (1 << 20))\n"
               "sys.stdout.buffer.write(b'NONCE 4242\\nafter\\n')")
    proc, out, peak = pump(tmp_path, program)
    assert (proc.pgid, out.data) == (4242, b"after\n")
    assert proc.chatter == b"x" * CHATTER_MAX
    assert peak < 8 << 20, f"{peak / (1 << 20):.0f} MiB held for the host's login noise"


def test_a_fake_marker_before_the_real_one_is_chatter(tmp_path):
    proc, out, _ = pump(tmp_path, "print('NONCE not-a-pid'); print('NONCE 77'); print('out')")
    assert (proc.pgid, out.data) == (77, b"out\n")
    assert b"NONCE not-a-pid".replace(b"NONCE", proc.nonce.encode()) in proc.chatter
