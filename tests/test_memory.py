"""A long-lived server gives back the memory a burst of load took (server/memory.py)."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections import Counter
from types import SimpleNamespace

import gevent
import httpx
import psutil

from server import memory
from server.catalog import load
from server.runtime import Server
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
    runs = SimpleNamespace(streams=Counter(), active={}, begun=0)  # the figures Runs keeps (runs.py)
    trimmer = gevent.spawn(memory.trim_after_load, runs, 0.02)
    try:
        runs.streams["run"] = 200
        runs.active = {1: None, 2: None}
        gevent.sleep(0.1)
        assert trims == []  # load rising or steady: nothing to give back
        runs.streams["run"] = 0
        runs.active = {}
        deadline = time.monotonic() + 10  # at zero load a full collection comes first: slow in a big process
        while not trims and time.monotonic() < deadline:
            gevent.sleep(0.02)
        gevent.sleep(0.1)
        assert trims == [0]  # once, when it fell
    finally:
        trimmer.kill()


def test_a_full_collection_waits_for_the_load_to_stay_at_zero_from_one_look_to_the_next():
    looks = memory.Looks(3)
    assert [looks.look(load) for load in (3, 4, 2)] == [None, None, memory.TRIM]
    assert [looks.look(load) for load in (0, 5)] == [None, memory.TRIM]  # zero between two bursts
    assert [looks.look(load) for load in (0, 0, 0, 0)] == [None, memory.COLLECT, None, None]
    assert [looks.look(load) for load in (1, 0, 0)] == [None, None, memory.COLLECT]


def test_a_burst_that_comes_and_goes_between_two_looks_puts_the_full_collection_off():
    """Rounds of work half a second apart: looks a second apart may each land in a gap, with the
    load at zero both times; what began in between says it was not quiet."""
    looks = memory.Looks(0, begun=0)
    assert looks.look(0, begun=0) is None  # idle
    assert looks.look(0, begun=20) == memory.TRIM  # 20 runs came and went: what they used, back
    assert looks.look(0, begun=40) == memory.TRIM  # and 20 more: still not quiet
    assert looks.look(0, begun=40) == memory.COLLECT  # a second with nothing begun
    assert looks.look(0, begun=40) is None


JOBS = """
[pushbutton]
retention_days = 0

[job:seq]
command = seq {n}
param.n.type = int

[job:talk]
command = python3 -c "import os, time; [(os.write(1, b'%d slow line\\n' % i), time.sleep(0.002)) for i in range(2000)]"
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


def test_garbage_in_reference_cycles_is_collected_once_nothing_is_open_or_running():
    """A closed connection's greenlet and socket can wait in a cycle for CPython's rare full
    collection, holding their buffers; once the load is gone, the trimmer collects them."""
    class Held:
        buffer = None

    runs = SimpleNamespace(streams=Counter(run=2), active={}, begun=0)
    cycle = Held()
    cycle.buffer, cycle.me = bytes(8 * MiB), cycle
    alive = weakref.ref(cycle)
    del cycle
    gc.disable()  # only the trimmer collects
    trimmer = gevent.spawn(memory.trim_after_load, runs, 0.02)
    try:
        gevent.sleep(0.1)
        assert alive() is not None  # load steady: left alone
        runs.streams["run"] = 1
        gevent.sleep(0.1)
        assert alive() is not None  # load fell, but a stream is open: no full collection under load
        runs.streams["run"] = 0
        gevent.sleep(0.1)
        assert alive() is None
    finally:
        trimmer.kill()
        gc.enable()


def _settled_server(pushbutton, tmp_path):
    """A server on JOBS, its process, and its RSS once settled after start-up."""
    jobs = tmp_path / "jobs.ini"
    jobs.write_text(JOBS)
    pb = pushbutton(jobs)
    server = psutil.Process(pb.proc.pid)
    time.sleep(1)
    return pb, server, server.memory_info().rss


def test_server_rss_returns_near_idle_after_a_200_client_fan_out(pushbutton, tmp_path):
    """Before server/memory.py: 45 MiB idle, 116-126 MiB after the clients had gone, for good; now 63-74."""
    pb, server, idle = _settled_server(pushbutton, tmp_path)
    run = pb.start_run("seq", n=100_000)
    pb.wait(run["id"])
    got = in_own_thread(asyncio.run, _fan_out(pb.url, run["id"]))
    assert len(got) == CLIENTS and min(got) == max(got)  # every client read the whole run
    bound = idle + 40 * MiB
    deadline = time.monotonic() + 10
    while (rss := server.memory_info().rss) > bound and time.monotonic() < deadline:
        time.sleep(0.5)
    assert rss <= bound, f"idle {idle // MiB} MiB, still {rss // MiB} MiB 10 s after the clients left"


def test_many_small_events_leave_no_memory_behind(pushbutton, tmp_path):
    """Ten runs printing a line every 2 ms at once (the events a team's day is made of): each event's
    JSON, as orjson returns it, is a buffer from C's malloc shrunk in place; kept in the runs' recent
    windows, thousands of them left the heaps in pieces glibc could not give back (bench/load.py
    --quick: 64 MiB after, 46 idle). Copied to an object of its own size, they come from Python's
    small-object allocator."""
    pb, server, idle = _settled_server(pushbutton, tmp_path)
    runs = [pb.start_run("talk") for _ in range(10)]
    for run in runs:
        assert pb.wait(run["id"], timeout=60)["state"] == "succeeded"
    time.sleep(2)  # server/memory.py looks at the load each second
    rss = server.memory_info().rss
    assert rss <= idle + 6 * MiB, f"idle {idle // MiB} MiB, {rss // MiB} MiB once the runs were done"


KINDS = ("Run", "EventLog", "Broadcast", "Reader", "LocalProcess", "OutputStream", "Popen")


def _held(kinds=KINDS) -> Counter:
    gc.collect()
    return Counter(name for o in gc.get_objects() if (name := type(o).__name__) in kinds)


def _follow(client: httpx.Client, run_id: int) -> bytes:
    with client.stream("GET", f"/api/runs/{run_id}/events") as res:
        got = b""
        for chunk in res.iter_raw():
            got += chunk
            if b"event: end\n" in got[-len(chunk) - 16:]:
                return got
    raise AssertionError("stream closed before its end")


def test_a_server_keeps_nothing_of_the_runs_it_is_done_with(tmp_path):
    """Runs followed by several readers, runs nobody reads, a failing run and a stopped one, with
    the page's list of runs open: once they have ended and are stored, none of their objects is
    left in the server. A run's broadcaster once kept every followed run's log (recent events up
    to 4 MiB) and process for good: 20 runs of 100,000 lines added ~16 MiB each time."""
    jobs = tmp_path / "jobs.ini"
    jobs.write_text(JOBS + '\n[job:fail]\ncommand = sh -c "echo no; exit 3"\n\n[job:sleepy]\ncommand = sleep 30\n')
    server = Server(load(jobs), tmp_path / "data", token=TOKEN)
    server.start()
    client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    before = _held()
    listing = client.stream("GET", "/api/events")  # the page's list of runs, open throughout
    listing.__enter__()
    try:
        def start(job: str, **params) -> int:
            res = client.post(f"/api/jobs/{job}/runs", json={"params": params})
            assert res.status_code == 202, res.text
            return res.json()["run"]["id"]

        for _ in range(3):
            followed = start("seq", n=20_000)
            readers = [threading.Thread(target=_follow, args=(client, followed)) for _ in range(3)]
            for reader in readers:
                reader.start()
            unread = [start("seq", n=1000) for _ in range(3)]
            failing = start("fail")
            stopped = start("sleepy")
            time.sleep(0.2)
            assert client.post(f"/api/runs/{stopped}/cancel").status_code == 202
            for reader in readers:
                reader.join(60)
            for run_id in (*unread, failing, stopped):
                assert b"event: end\n" in _follow(client, run_id)
        deadline = time.monotonic() + 10
        while (server.runs.logs or server.runs.ended or server.runs.active) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not server.runs.logs and not server.runs.ended and not server.runs.active
        while (left := _held() - before) and time.monotonic() < deadline + 5:  # the writer's last batch
            time.sleep(0.1)
        assert not left, f"still held: {dict(left)}"
    finally:
        listing.__exit__(None, None, None)
        client.close()
        server.stop()
