"""Spine benchmark: output delivery through the real server over loopback.

Starts `pushbutton --headless` on a bench catalog, then measures, from an SSE client in this
process: start request -> last line for `seq N`, and -> its `end` event (read over a plain
socket, as a flood's client must not be the bottleneck; best of 3); the delay of a line printed every 10 ms and the
server's CPU seconds per 1,000 such lines; start request -> first output of `echo hi`; 20
concurrent `seq 100000` (started at once, all read by one thread over plain sockets; median of
5 rounds, to the last run's `end`); idle RSS
and RSS after a 1M-line run. Every run's lines are checked: none lost, none repeated. Below the
table: what the machine gave the benchmark (bench/machine.py).

    .venv/bin/python bench/run.py          (or: make bench)
"""

from __future__ import annotations

import http.client
import json
import select
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
from machine import Machine

TOKEN = "bench"
TICKS = 1000  # lines of `job:tick` below, one every 10 ms
JOBS = """
[pushbutton]
max_concurrent_runs = 32
retention_days = 0

[job:seq]
command = seq {n}
param.n.type = int

[job:tick]
command = python3 -u -c "import time; [(print(repr(time.time())), time.sleep(0.01)) for _ in range(1000)]"

[job:hi]
command = echo hi
"""


class Server:
    def __init__(self, folder: Path, jobs: str = JOBS, env: dict | None = None):
        (folder / "jobs.ini").write_text(jobs)
        exe = Path(sys.executable).parent / "pushbutton"
        self.proc = subprocess.Popen(
            [str(exe), "--headless", "--jobs", str(folder / "jobs.ini"), "--port", "0", "--token", TOKEN,
             "--data-dir", str(folder / "data")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
            start_new_session=True)
        assert select.select([self.proc.stdout], [], [], 30)[0], "server did not start"
        self.url = self.proc.stdout.readline().split(" on ", 1)[1].split("?")[0].rstrip("/")
        self.ps = psutil.Process(self.proc.pid)

    def client(self) -> httpx.Client:
        # Browsers set TCP_NODELAY; without it a POST's body waits 40 ms for a delayed ACK.
        nodelay = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120,
                            transport=nodelay)

    def rss_mib(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def events_of(raw: bytes):
    """(type, data) of every SSE event in `raw`."""
    for block in raw.split(b"\n\n"):
        kind = data = None
        for field in block.split(b"\n"):
            if field.startswith(b"event: "):
                kind = field[7:]
            elif field.startswith(b"data: "):
                data = field[6:]
        if kind is not None:
            yield kind, data


def receive(client: httpx.Client, run_id: int) -> bytes:
    """One run's SSE stream to its `end`, as it arrived; parsing waits until the clock stops, as
    a browser's parsing happens off the network path."""
    chunks: list[bytes] = []
    with client.stream("GET", f"/api/runs/{run_id}/events") as res:
        for chunk in res.iter_raw():
            chunks.append(chunk)
            if b"event: end\n" in chunk or b"event: end\n" in b"".join(chunks[-2:]):
                return b"".join(chunks)
    raise AssertionError("stream closed before end")


def lines_in(raw: bytes) -> list[str]:
    return [line for kind, data in events_of(raw) if kind == b"output" for line in json.loads(data)["lines"]]


def follow(client: httpx.Client, run_id: int, on_lines) -> None:
    """Read one run's SSE stream to its `end`, handing each output event's lines over on arrival."""
    buf = b""
    with client.stream("GET", f"/api/runs/{run_id}/events") as res:
        for chunk in res.iter_raw():
            buf += chunk
            complete, _, buf = buf.rpartition(b"\n\n")
            for kind, data in events_of(complete):
                if kind == b"output":
                    on_lines(json.loads(data)["lines"])
                elif kind == b"end":
                    return
    raise AssertionError("stream closed before end")


def start(client: httpx.Client, job: str, **params) -> int:
    res = client.post(f"/api/jobs/{job}/runs", json={"params": params})
    res.raise_for_status()
    return res.json()["run"]["id"]


def seq_to_last_line(server: Server, n: int) -> tuple[float, float]:
    """Seconds from the start request to the arrival of the bytes ending the last output event,
    and to the `end` event (the run's exit, its leftover-process sweep and final state come
    between). Read over a plain socket (`raw_runs`), as the 20 concurrent runs are: httpx
    decoding a flood's chunks in Python took 2 to 5 times the CPU of this client, on a machine of
    two cores that the server and the job share with it."""
    arrivals: list[list[tuple[float, int]]] = []
    began = time.perf_counter()
    raw = raw_runs(server, 1, "/api/jobs/seq/runs", {"params": {"n": n}}, arrivals)[0]
    ended = time.perf_counter() - began
    assert lines_in(_dechunk(raw)) == [str(i) for i in range(1, n + 1)], "lost or repeated lines"
    last_output = raw.index(b"\n\n", raw.rindex(b"event: output\n")) + 2  # in the stream as received
    arrived = next(when for when, total in arrivals[0] if total >= last_output)
    return arrived - began, ended


def server_cpu(server: Server) -> float:
    """CPU seconds of the server process so far, all its threads (the SQLite writer included)."""
    times = server.ps.cpu_times()
    return times.user + times.system


def tick_delays(server: Server) -> tuple[list[float], float]:
    """A line every 10 ms for 10 s: each line's delay, and the server's CPU seconds per 1,000."""
    delays: list[float] = []
    printed: list[float] = []  # each line is the time it was printed: none lost, none twice, in order

    def arrived(lines):
        now = time.time()
        printed.extend(float(line) for line in lines)
        delays.extend(now - float(line) for line in lines)

    with server.client() as client:
        began = server_cpu(server)
        follow(client, start(client, "tick"), arrived)
        cpu = server_cpu(server) - began
    assert len(delays) == TICKS
    assert all(a < b for a, b in zip(printed, printed[1:], strict=False)), "a tick line came twice or out of order"
    return sorted(delays), cpu * 1000 / TICKS


def first_output(server: Server) -> float:
    got: list[float] = []
    with server.client() as client:
        began = time.perf_counter()
        follow(client, start(client, "hi"), lambda lines: got.append(time.perf_counter() - began))
    return got[0]


def concurrent_seq(server: Server, runs: int = 20, n: int = 100_000) -> tuple[float, float]:
    peak = [server.rss_mib()]
    done = threading.Event()

    def sample():
        while not done.wait(0.01):
            peak.append(server.rss_mib())

    threading.Thread(target=sample, daemon=True).start()
    began = time.perf_counter()
    results = raw_runs(server, runs, "/api/jobs/seq/runs", {"params": {"n": n}})
    took = time.perf_counter() - began
    done.set()
    expected = [str(i) for i in range(1, n + 1)]
    assert all(lines_in(r) == expected for r in results), "lost or repeated lines"
    return took, max(peak)


def raw_runs(server: Server, runs: int, path: str, body: dict,
             arrivals: list[list[tuple[float, int]]] | None = None) -> list[bytes]:
    """Start `runs` runs at once and read their SSE streams to their `end` in one thread over plain
    sockets: 20 httpx clients in 20 threads (and the starts one after another) made the client,
    not the server, the bottleneck. Returns each stream's body, de-chunked; with `arrivals`, the
    raw responses as received instead, and each stream's (time, bytes so far) per receive in it."""
    url = urlsplit(server.url)
    payload = json.dumps(body).encode()
    conns = [http.client.HTTPConnection(url.hostname, url.port, timeout=120) for _ in range(runs)]
    for conn in conns:
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.request("POST", path, payload, {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    selector, bufs = selectors.DefaultSelector(), []
    for i, conn in enumerate(conns):
        res = conn.getresponse()
        assert res.status < 300, res.status
        run_id = json.loads(res.read())["run"]["id"]
        conn.sock.sendall(f"GET /api/runs/{run_id}/events HTTP/1.1\r\nHost: {url.netloc}\r\n"
                          f"Authorization: Bearer {TOKEN}\r\n\r\n".encode())
        conn.sock.setblocking(False)
        selector.register(conn.sock, selectors.EVENT_READ, i)
        bufs.append(bytearray())
    seen: list[list[tuple[float, int]]] = [[] for _ in conns]
    left = runs
    while left:
        for key, _ in selector.select():
            data = key.fileobj.recv(1 << 20)
            buf = bufs[key.data]
            buf += data
            seen[key.data].append((time.perf_counter(), len(buf)))
            if not data or b"event: end\n" in buf[max(0, len(buf) - len(data) - 16):]:
                selector.unregister(key.fileobj)
                left -= 1
    for conn in conns:
        conn.close()
    if arrivals is not None:
        arrivals.extend(seen)
        return [bytes(buf) for buf in bufs]
    return [_dechunk(bytes(buf)) for buf in bufs]


def _dechunk(raw: bytes) -> bytes:
    """The body of an HTTP/1.1 chunked response."""
    body, pos, out = raw, raw.index(b"\r\n\r\n") + 4, []
    while pos < len(body):
        end = body.index(b"\r\n", pos)
        size = int(body[pos:end], 16)
        if size == 0:
            break
        out.append(body[end + 2:end + 2 + size])
        pos = end + 2 + size + 2
    return b"".join(out)


def best(fn, repeat: int = 3) -> float:
    return min(fn() for _ in range(repeat))


def main() -> None:
    with tempfile.TemporaryDirectory() as folder, Machine() as machine:
        server = Server(Path(folder))
        try:
            time.sleep(0.5)
            idle = server.rss_mib()
            figures = {}
            for n in (10_000, 100_000, 1_000_000):
                line, end = min(seq_to_last_line(server, n) for _ in range(3))
                figures[f"`seq {n}`: start request to last line at the client (to the `end` event)"] = \
                    f"{line * 1000:.0f} ms ({end * 1000:.0f} ms)"
            after_1m = server.rss_mib()
            delays, cpu = tick_delays(server)
            figures["line printed every 10 ms: delay until the client has it, p50 / p99"] = (
                f"{statistics.median(delays) * 1000:.1f} / {delays[int(len(delays) * 0.99) - 1] * 1000:.1f} ms")
            figures["the same job (10 s): server CPU per 1,000 lines"] = f"{cpu:.2f} s"
            figures["`echo hi`: start request to first output at the client"] = \
                f"{best(lambda: first_output(server), 5) * 1000:.1f} ms"
            rounds = [concurrent_seq(server) for _ in range(5)]  # one round alone swung by a third
            took = sorted(t for t, _ in rounds)
            figures["20 runs of `seq 100000` at once, median of 5 (slowest)"] = (
                f"{statistics.median(took) * 1000:.0f} ms ({took[-1] * 1000:.0f} ms), server RSS up to "
                f"{max(p for _, p in rounds):.0f} MiB")
            figures["idle RSS / after a 1M-line run"] = f"{idle:.0f} / {after_1m:.0f} MiB"
        finally:
            server.stop()
    print(f"Pushbutton spine benchmark ({psutil.cpu_count()} cores, loopback; every line checked, none lost "
          "or repeated)\n")
    print("| workload | Pushbutton |\n|---|---|")
    for name, value in figures.items():
        print(f"| {name} | {value} |")
    print(f"\n{machine.describe()}")


if __name__ == "__main__":
    main()
