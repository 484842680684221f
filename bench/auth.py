"""Sign-in benchmark: what argon2id costs a sign-in, and that hashing never stalls the server.

Starts `pushbutton --headless` with `auth = local` and one user, then measures from this process:
one sign-in at a time (POST /api/session to its answer), a request with a session and with a
personal API token, and /healthz while 20 sign-ins hash at once (each from its own client address,
so the failed sign-in limiter stays out of it) against /healthz on an idle server.

    .venv/bin/python bench/auth.py          (or: make bench)
"""

from __future__ import annotations

import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from server.auth.passwords import HASH_SLOTS, HASHER  # noqa: E402

PASSWORD = "bench-password-1"
JOBS = """
[pushbutton]
auth = local
admins = alice

[job:hi]
command = echo hi
"""
EXE = Path(sys.executable).parent / "pushbutton"


class Server:
    def __init__(self, folder: Path):
        jobs, data = folder / "jobs.ini", folder / "data"
        jobs.write_text(JOBS)
        common = ["--jobs", str(jobs), "--data-dir", str(data)]
        subprocess.run([str(EXE), "users", "add", "alice", *common], input=PASSWORD + "\n", text=True, check=True,
                       capture_output=True)
        self.token = subprocess.run([str(EXE), "users", "token", "alice", *common], text=True, check=True,
                                    capture_output=True).stdout.splitlines()[-1]
        self.proc = subprocess.Popen([str(EXE), "--headless", "--port", "0", *common], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        assert select.select([self.proc.stdout], [], [], 30)[0], "server did not start"
        self.url = self.proc.stdout.readline().split(" on ", 1)[1].strip().split("?")[0].rstrip("/")

    def client(self, source: str = "127.0.0.1", **kwargs) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=source,
                                        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        return httpx.Client(base_url=self.url, timeout=120, transport=transport, **kwargs)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def sign_in(client: httpx.Client) -> None:
    res = client.post("/api/session", json={"user": "alice", "password": PASSWORD})
    assert res.status_code == 200, res.text


def p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def healthz_during(server: Server, work) -> list[float]:
    """/healthz latencies, one every 10 ms, while `work` runs in threads."""
    threads = [threading.Thread(target=w) for w in work]
    probe, lags = server.client(), []
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads) or not lags:
        lags.append(timed(lambda: probe.get("/healthz")))
        time.sleep(0.01)
    for t in threads:
        t.join()
    return lags


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        server = Server(Path(folder))
        try:
            one = server.client()
            for _ in range(2):
                sign_in(one)  # warm up
            alone = [timed(lambda: sign_in(one)) for _ in range(30)]
            with_session = [timed(lambda: one.get("/api/me")) for _ in range(200)]
            by_token = server.client(headers={"Authorization": f"Bearer {server.token}"})
            with_token = [timed(lambda: by_token.get("/api/me")) for _ in range(200)]
            idle = healthz_during(server, [lambda: time.sleep(1)])
            burst_times: list[float] = []

            def burst_one(i: int) -> None:
                burst_times.append(timed(lambda: sign_in(server.client(f"127.0.2.{i + 1}"))))

            busy = healthz_during(server, [lambda i=i: burst_one(i) for i in range(20)])
        finally:
            server.stop()
    print(f"Pushbutton sign-in benchmark ({psutil.cpu_count()} cores, loopback; argon2id "
          f"{HASHER.memory_cost // 1024} MiB, {HASHER.time_cost} passes, {HASHER.parallelism} lanes; "
          f"at most {HASH_SLOTS} hashes at once)\n")
    print("| workload | Pushbutton |\n|---|---|")
    rows = {
        "one sign-in (POST /api/session), median / p99": f"{ms(statistics.median(alone))} / {ms(p(alone, .99))}",
        "20 sign-ins at once: the last one answered after": ms(max(burst_times)),
        "/healthz, idle server: median / p99": f"{ms(statistics.median(idle))} / {ms(p(idle, .99))}",
        "/healthz while 20 sign-ins hash: median / p99 / max":
            f"{ms(statistics.median(busy))} / {ms(p(busy, .99))} / {ms(max(busy))}",
        "GET /api/me with a session cookie, median": ms(statistics.median(with_session)),
        "GET /api/me with a personal API token, median": ms(statistics.median(with_token)),
    }
    for name, value in rows.items():
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
