"""A long-lived server gives back the memory a burst of load took (server/memory.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from types import SimpleNamespace

import gevent
import httpx
import psutil

from server import memory
from tests.helpers import TOKEN, in_own_thread

MiB = 2**20


def _rss() -> int:
    return psutil.Process().memory_info().rss


def _fragment_a_thread_arena(keep: list) -> None:
    """What a burst of streams leaves in the hub thread's malloc arena: 64 MiB of buffers
    freed, one in 64 still alive, so glibc cannot shrink the heap from its top by itself."""
    chunks = [bytes(1024) + bytes([i % 256]) for i in range(64 * 1024)]
    keep.extend(chunks[::64])
    del chunks


def test_give_back_returns_freed_malloc_pages_to_the_os():
    keep: list = []
    thread = threading.Thread(target=_fragment_a_thread_arena, args=(keep,))
    thread.start()
    thread.join()
    held = _rss()
    memory.give_back()
    assert _rss() < held - 32 * MiB, f"{held // MiB} MiB before, {_rss() // MiB} MiB after"


def test_memory_is_given_back_once_the_load_drops_and_not_while_it_holds(monkeypatch):
    trims: list[int] = []
    monkeypatch.setattr(memory, "give_back", lambda: trims.append(len(runs.active)))
    runs = SimpleNamespace(streams=Counter(), active={})  # the two figures Runs keeps (runs.py)
    trimmer = gevent.spawn(memory.trim_after_load, runs, 0.02)
    try:
        runs.streams["run"] = 200
        runs.active = {1: None, 2: None}
        gevent.sleep(0.1)
        assert trims == []  # load rising or steady: nothing to give back
        runs.streams["run"] = 0
        runs.active = {}
        gevent.sleep(0.1)
        assert trims == [0]  # once, when it fell
    finally:
        trimmer.kill()


JOBS = """
[pushbutton]
retention_days = 0

[job:seq]
command = seq {n}
param.n.type = int
"""
CLIENTS = 200


async def _fan_out(url: str, run_id: int) -> list[int]:
    """CLIENTS streams of one run's history, each read to its `end`, from 127.0.0.x addresses
    (the server allows 64 connections per address); the bytes each one got."""

    async def one(client: httpx.AsyncClient) -> int:
        got, tail = 0, b""
        async with client.stream("GET", f"/api/runs/{run_id}/events") as res:
            assert res.status_code == 200, res.status_code
            async for chunk in res.aiter_raw():
                got += len(chunk)
                if b"event: end\n" in tail + chunk:
                    return got
                tail = chunk[-16:]
        raise AssertionError("stream closed before its end")

    clients = [httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120,
                                 transport=httpx.AsyncHTTPTransport(local_address=f"127.0.0.{10 + i}"))
               for i in range(CLIENTS // 40)]
    try:
        return await asyncio.gather(*(one(clients[i % len(clients)]) for i in range(CLIENTS)))
    finally:
        for client in clients:
            await client.aclose()


def test_server_rss_returns_near_idle_after_a_200_client_fan_out(pushbutton, tmp_path):
    """Before server/memory.py: 45 MiB idle, 116-126 MiB after the clients had gone, for good; now 63-74."""
    jobs = tmp_path / "jobs.ini"
    jobs.write_text(JOBS)
    pb = pushbutton(jobs)
    server = psutil.Process(pb.proc.pid)
    time.sleep(1)
    idle = server.memory_info().rss
    run = pb.start_run("seq", n=100_000)
    pb.wait(run["id"])
    got = in_own_thread(asyncio.run, _fan_out(pb.url, run["id"]))
    assert len(got) == CLIENTS and min(got) == max(got)  # every client read the whole run
    bound = idle + 40 * MiB
    deadline = time.monotonic() + 10
    while (rss := server.memory_info().rss) > bound and time.monotonic() < deadline:
        time.sleep(0.5)
    assert rss <= bound, f"idle {idle // MiB} MiB, still {rss // MiB} MiB 10 s after the clients left"
