"""A run stream's writes under load (server/sse.py `pace`): with few readers every event goes out
at once; with a thousand streams open, a busy run's events are grouped into fewer, larger writes,
and nothing is lost or reordered."""

from __future__ import annotations

import json
from collections import Counter

import gevent

from server import sse
from server.events import EventLog
from server.store import Store


class Runs:
    """What sse.run_events asks of Runs: the live log, and the counts of open and opened streams."""

    def __init__(self, log: EventLog, open_streams: int):
        self.log = log
        self.streams = Counter(run=open_streams)
        self.begun = 0  # streams opened so far (server/memory.py)
        self.rights_changed = 0  # jobs.ini files applied (server/sse.py)
        self.credentials_changed = 0  # sessions or tokens ended (server/sse.py)

    def event_log(self, run_id: int) -> EventLog:
        return self.log


def follow(tmp_path, open_streams: int, events: int = 100, every: float = 0.002) -> tuple[int, list[int]]:
    """A stream read while a run emits `events` output events `every` seconds: (writes, indices)."""
    store = Store(tmp_path / f"data{open_streams}")
    try:
        run_id = store.call(Store.insert_run, {"job": "j", "state": "running", "params": {},
                                               "created": "2026-12-01T00:00:00Z", "owner": "test"})
        log = EventLog(store, run_id)
        runs = Runs(log, open_streams)
        writes: list[bytes] = []

        def read():
            for chunk in sse.run_events(runs, run_id, 0):
                writes.append(chunk)

        reader = gevent.spawn(read)
        for i in range(events):
            log.emit("output", {"stream": "stdout", "lines": [str(i)]})
            gevent.sleep(every)
        log.emit("end", {"state": "succeeded"})
        reader.join(timeout=10)
        assert reader.dead
    finally:
        store.close()
    data = [json.loads(line[6:]) for chunk in writes[1:] for line in chunk.decode().splitlines()
            if line.startswith("data: ")]
    return len(writes) - 1, [int(d["lines"][0]) for d in data if "lines" in d]


def test_with_few_readers_each_event_is_written_at_once(tmp_path):
    writes, seen = follow(tmp_path, open_streams=1)
    assert seen == list(range(100))
    assert writes >= 50  # about one write per event (a few may share one)


def test_with_a_thousand_streams_a_busy_runs_events_share_writes(tmp_path):
    assert sse.pace(Runs(None, 1000)) == 0.02
    writes, seen = follow(tmp_path, open_streams=1000)  # ~0.2 s of events, a write per 20 ms at most
    assert seen == list(range(100))  # none lost, none repeated, in order
    assert writes <= 20, writes


def test_a_runs_readers_at_the_same_place_share_one_write_made_once(tmp_path, monkeypatch):
    """A run's readers wake together on each commit: its frames are made once, not per reader
    (with 20 readers a run, making each reader's write was a tenth of the server's time)."""
    made = Counter()
    real = sse.frame
    monkeypatch.setattr(sse, "frame", lambda seq, kind, data: made.update([seq]) or real(seq, kind, data))
    store = Store(tmp_path / "data")
    try:
        run_id = store.call(Store.insert_run, {"job": "j", "state": "running", "params": {},
                                               "created": "2026-12-01T00:00:00Z", "owner": "test"})
        log = EventLog(store, run_id)
        runs = Runs(log, 3)
        got: list[list[bytes]] = [[], [], []]
        readers = [gevent.spawn(lambda out=out: out.extend(sse.run_events(runs, run_id, 0))) for out in got]
        gevent.sleep(0.01)
        for i in range(20):
            log.emit("output", {"stream": "stdout", "lines": [str(i)]})
            gevent.sleep(0.005)
        log.emit("end", {"state": "succeeded"})
        gevent.joinall(readers, timeout=10)
        assert all(r.dead for r in readers)
    finally:
        store.close()
    assert got[0] == got[1] == got[2] and b"".join(got[0]).count(b"event: output") == 20
    assert set(made.values()) == {1}  # each event framed once for the three readers
