"""The load campaign's clients: asyncio + aiohttp in processes of their own, so that the client is
not the bottleneck (one Python thread per stream would be).

Each simulated browser holds the page's two streams: `/api/events` (every run's state) and one
run's `/api/runs/<id>/events` from its first event. A line printed by bench/load.py's printer is
`<index> <time.time()>`, so the client checks every line arrives once and in order and measures its
delay from print to arrival. Clients connect from 127.0.x.y source addresses, a few per address,
so that the server's cap on connections per client address (server/connections.py) is not hit.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import aiohttp
from run import events_of  # bench/run.py

BUCKET = 1e-4  # latency histogram: 0.1 ms buckets
BUCKETS = 200_000  # up to 20 s; anything later lands in the last bucket
PER_ADDRESS = 20  # clients (40 connections) per source address, under PER_CLIENT = 64
FINAL = {"succeeded", "failed", "cancelled", "timed_out", "interrupted", "rejected", "expired"}


def source_address(client: int) -> str:
    group = client // PER_ADDRESS
    return f"127.0.{1 + group // 250}.{1 + group % 250}"


@dataclass
class Tally:
    """What one worker process saw; summed over workers by bench/load.py."""
    clients: int = 0
    opened: int = 0  # streams whose headers arrived before the printers began
    finished: int = 0  # run streams read to their `end` event
    lines: int = 0
    lost: int = 0
    duplicated: int = 0
    clients_with_errors: int = 0  # lost, duplicated, out of order or failed
    changes_complete: int = 0  # `/api/events` streams that saw every run of theirs end
    errors: list[str] = field(default_factory=list)
    histogram: dict[int, int] = field(default_factory=dict)
    cpu: float = 0.0


def events(buffer: bytes):
    """(complete events as (kind, data), the rest of the buffer)."""
    complete, _, rest = buffer.rpartition(b"\n\n")
    return list(events_of(complete)), rest


class Client:
    def __init__(self, tally: Tally, run_id: int, lines: int, begins: float):
        self.tally, self.run_id, self.expected, self.begins = tally, run_id, lines, begins
        self.next = 0
        self.bad = False

    async def follow_run(self, session: aiohttp.ClientSession) -> None:
        tally, hist = self.tally, self.tally.histogram
        async with session.get(f"/api/runs/{self.run_id}/events") as res:
            res.raise_for_status()
            opened = time.time()
            if opened < self.begins:
                tally.opened += 1
            buffer = b""
            async for chunk in res.content.iter_any():
                now = time.time()
                buffer += chunk
                found, buffer = events(buffer)
                for kind, data in found:
                    if kind == b"output":
                        for line in json.loads(data)["lines"]:
                            index, printed = line.split(" ")
                            self.check(int(index))
                            printed = float(printed)
                            if printed >= opened:
                                bucket = min(int((now - printed) / BUCKET), BUCKETS - 1)
                                hist[bucket] = hist.get(bucket, 0) + 1
                    elif kind == b"end":
                        tally.finished += 1
                        if self.next != self.expected:
                            tally.lost += self.expected - self.next
                            self.bad = True
                        return
        raise RuntimeError(f"run {self.run_id}: stream closed before its end")

    def check(self, index: int) -> None:
        tally = self.tally
        tally.lines += 1
        if index == self.next:
            self.next += 1
        elif index < self.next:
            tally.duplicated += 1
            self.bad = True
        else:
            tally.lost += index - self.next
            self.next = index + 1
            self.bad = True

    async def follow_changes(self, session: aiohttp.ClientSession, runs: set[int], until: float) -> None:
        """The page's other stream: done once every run in `runs` was seen in a final state."""
        waiting = set(runs)
        async with session.get("/api/events") as res:
            res.raise_for_status()
            if time.time() < self.begins:
                self.tally.opened += 1
            buffer = b""
            async for chunk in res.content.iter_any():
                buffer += chunk
                found, buffer = events(buffer)
                for kind, data in found:
                    if kind == b"ready":
                        waiting -= {r["id"] for r in json.loads(data)["active"] if r["state"] in FINAL}
                    elif kind == b"state":
                        record = json.loads(data)
                        if record["state"] in FINAL:
                            waiting.discard(record["id"])
                if not waiting:
                    self.tally.changes_complete += 1
                    return
                if time.time() > until:
                    break
        raise RuntimeError(f"/api/events: runs {sorted(waiting)[:5]} never seen ending")


async def _work(url: str, token: str, clients: list[tuple[int, int]], lines: int, begins: float,
                until: float) -> Tally:
    tally = Tally(clients=len(clients))
    runs = {run_id for _, run_id in clients}
    sessions: dict[str, aiohttp.ClientSession] = {}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=60, sock_read=120)

    def session_for(client: int) -> aiohttp.ClientSession:
        address = source_address(client)
        if address not in sessions:
            connector = aiohttp.TCPConnector(limit=0, local_addr=(address, 0), force_close=True)
            sessions[address] = aiohttp.ClientSession(url, connector=connector, timeout=timeout,
                                                      headers={"Authorization": f"Bearer {token}"})
        return sessions[address]

    async def one(client: int, run_id: int) -> None:
        c = Client(tally, run_id, lines, begins)
        session = session_for(client)
        results = await asyncio.gather(c.follow_run(session), c.follow_changes(session, runs, until),
                                       return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            if len(tally.errors) < 10:
                tally.errors.append(f"client {client}: {type(failure).__name__}: {failure}")
        if failures or c.bad:
            tally.clients_with_errors += 1

    try:
        await asyncio.gather(*(one(client, run_id) for client, run_id in clients))
    finally:
        for session in sessions.values():
            await session.close()
    return tally


def work(url: str, token: str, clients: list[tuple[int, int]], lines: int, begins: float, until: float,
         results) -> None:
    """A worker process: hold `clients` [(client number, run id)], put its Tally on `results`."""
    started = time.process_time()
    tally = asyncio.run(_work(url, token, clients, lines, begins, until))
    tally.cpu = time.process_time() - started
    results.put(tally)
