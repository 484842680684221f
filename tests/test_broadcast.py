"""A run's caught-up readers are written to by one broadcaster (server/broadcast.py): every
reader gets every event once, in order; a reader whose socket stops taking data, or whose client
is gone, is handed back to its own greenlet and nothing is lost; an idle one keeps its keepalives.
Real sockets (a socketpair per reader); the connection is the three methods the broadcaster uses
of server.connections.Handler, without HTTP chunking."""

from __future__ import annotations

import gc
import json
import socket
import threading
import time
import weakref
from collections import Counter

import gevent
import gevent.socket

from server import sse
from server.events import EventLog
from server.store import Store


class Runs:
    def __init__(self, log: EventLog, open_streams: int = 1):
        self.log = log
        self.streams = Counter(run=open_streams)
        self.begun = 0  # streams opened so far (server/memory.py)
        self.rights_changed = 0  # jobs.ini files applied (server/sse.py)
        self.credentials_changed = 0  # sessions or tokens ended (server/sse.py)

    def event_log(self, run_id: int) -> EventLog:
        return self.log


class Connection:
    """The server's end of one reader's socket, as sse/broadcast use a Handler."""

    def __init__(self, buffer: int | None = None):
        self.server, self.client = gevent.socket.socketpair()
        if buffer:
            self.server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
            self.client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
        self.direct = 0  # bytes written by another greenlet than the reader's
        self.handed_back = 0  # writes the socket did not take at once, finished by the reader

    def framed(self, data: bytes) -> bytes:
        return data

    def send_now(self, data: bytes) -> int:
        try:
            sent = self.server._sock.send(data)
        except BlockingIOError:
            return 0
        self.direct += sent
        return sent

    def send_rest(self, data: bytes) -> None:
        self.handed_back += 1
        self.server.sendall(data)

    def serve(self, runs: Runs, run_id: int) -> gevent.Greenlet:
        """The reader's greenlet: what pywsgi does with the stream's chunks."""
        def run():
            try:
                for chunk in sse.run_events(runs, run_id, 0, self):
                    self.server.sendall(chunk)
            finally:
                self.server.shutdown(socket.SHUT_WR)

        return gevent.spawn(run)

    def received(self) -> bytes:
        parts = []
        while data := self.client.recv(1 << 20):
            parts.append(data)
        return b"".join(parts)


def _lines(raw: bytes) -> list[int]:
    out = []
    for line in raw.decode().splitlines():
        if line.startswith("data: ") and '"lines"' in line:
            out += [int(x) for x in json.loads(line[6:])["lines"]]
    return out


def _store(tmp_path):
    store = Store(tmp_path / "data")
    run_id = store.call(Store.insert_run, {"job": "j", "state": "running", "params": {},
                                           "created": "2026-12-01T00:00:00Z", "owner": "test"})
    return store, run_id


def _followed_to_its_end(log: EventLog, run_id: int, readers: int, lines: int) -> tuple[list, list[bytes]]:
    """`readers` readers follow `log` while it gets `lines` one-line events and its `end`: their
    connections and what each received."""
    runs = Runs(log)
    conns = [Connection() for _ in range(readers)]
    greenlets = [c.serve(runs, run_id) for c in conns]
    gevent.sleep(0.02)
    for i in range(lines):
        log.emit("output", {"stream": "stdout", "lines": [str(i)]})
        gevent.sleep(0.001)
    log.emit("end", {"state": "succeeded"})
    results = [gevent.spawn(c.received) for c in conns]
    gevent.joinall(greenlets + results, timeout=10)
    return conns, [r.value for r in results]


def test_caught_up_readers_are_written_by_the_broadcaster_each_event_once_in_order(tmp_path):
    store, run_id = _store(tmp_path)
    try:
        conns, raws = _followed_to_its_end(EventLog(store, run_id), run_id, readers=5, lines=200)
    finally:
        store.close()
    assert all(_lines(raw) == list(range(200)) for raw in raws)
    assert all(raw.count(b"event: end") == 1 for raw in raws)
    assert all(c.direct > 0 for c in conns)  # the broadcaster wrote to every reader


def test_a_reader_whose_socket_is_full_is_handed_back_and_loses_nothing(tmp_path):
    store, run_id = _store(tmp_path)
    try:
        log = EventLog(store, run_id)
        runs = Runs(log)
        slow, fast = Connection(buffer=4096), Connection()
        readers = [slow.serve(runs, run_id), fast.serve(runs, run_id)]
        fast_got = gevent.spawn(fast.received)
        gevent.sleep(0.02)
        for i in range(3000):  # far more than the slow client's buffers hold: it is not reading
            log.emit("output", {"stream": "stdout", "lines": [f"{i} " + "x" * 100]})
            if i % 100 == 0:
                gevent.sleep(0.002)
        log.emit("end", {"state": "succeeded"})
        fast_got.join(5)
        assert fast_got.ready()  # all of it, while the slow one still does not read
        slow_got = gevent.spawn(slow.received)  # now it reads
        gevent.joinall(readers + [slow_got], timeout=20)
    finally:
        store.close()
    assert slow.handed_back > 0 and slow.direct > 0
    expected = list(range(3000))
    assert [int(x.split()[0]) for x in _raw_lines(fast_got.value)] == expected
    assert [int(x.split()[0]) for x in _raw_lines(slow_got.value)] == expected


def _raw_lines(raw: bytes) -> list[str]:
    out = []
    for line in raw.decode().splitlines():
        if line.startswith("data: ") and '"lines"' in line:
            out += json.loads(line[6:])["lines"]
    return out


def test_a_reader_whose_client_is_gone_ends_and_the_others_go_on(tmp_path):
    store, run_id = _store(tmp_path)
    try:
        log = EventLog(store, run_id)
        runs = Runs(log)
        gone, stays = Connection(), Connection()
        readers = [gone.serve(runs, run_id), stays.serve(runs, run_id)]
        got = gevent.spawn(stays.received)
        gevent.sleep(0.02)
        gone.client.close()
        for i in range(50):
            log.emit("output", {"stream": "stdout", "lines": [str(i)]})
            gevent.sleep(0.002)
        log.emit("end", {"state": "succeeded"})
        gevent.joinall(readers + [got], timeout=10)
        assert readers[0].dead
    finally:
        store.close()
    assert _lines(got.value) == list(range(50))


def test_an_idle_parked_reader_still_gets_its_keepalives(tmp_path, monkeypatch):
    monkeypatch.setattr(sse, "KEEPALIVE", 0.05)
    store, run_id = _store(tmp_path)
    try:
        log = EventLog(store, run_id)
        conn = Connection()
        reader = conn.serve(Runs(log), run_id)
        gevent.sleep(0.3)
        log.emit("end", {"state": "succeeded"})
        raw = gevent.spawn(conn.received)
        gevent.joinall([reader, raw], timeout=10)
    finally:
        store.close()
    assert raw.value.count(b": keepalive") >= 3
    assert log.broadcast is None  # its broadcaster ended with its last reader


def test_a_followed_log_is_freed_once_its_run_is_done_with_it(tmp_path):
    """A run's broadcaster must not keep its log (recent events up to RECENT_BYTES, and through it
    the run and its process) alive: 20 runs of 100,000 lines once left ~16 MiB behind, every time."""
    store, run_id = _store(tmp_path)
    try:
        log = EventLog(store, run_id)
        _, raws = _followed_to_its_end(log, run_id, readers=3, lines=20)
        assert all(_lines(raw) == list(range(20)) for raw in raws)
        gone = weakref.ref(log)
        del log
        gc.collect()  # the run is done with it: nothing may keep it
        assert gone() is None, [type(r).__name__ for r in gc.get_referrers(gone())]
    finally:
        store.close()


def test_readers_of_one_run_over_http_each_get_the_whole_stream(pushbutton, write_jobs, tmp_path):
    """Through the real server (chunked HTTP/1.1, `Handler.send_now`): readers that connect
    before the output, and one that connects in the middle, get all of it, once, in order."""
    script = tmp_path / "talk.py"
    script.write_text("import time\ntime.sleep(0.5)\nfor i in range(3000):\n    print(i, flush=True)\n"
                      "    time.sleep(0.0004)\n")
    jobs = write_jobs(f"""
        [job:talk]
        command = python3 {script}
        """)
    pb = pushbutton(jobs)
    run_id = pb.start_run("talk")["id"]
    got: dict[int, list[str]] = {}

    def read(n: int, delay: float) -> None:
        time.sleep(delay)
        got[n] = [line for e in pb.events(run_id) if e.type == "output" for line in e.data["lines"]]

    threads = [threading.Thread(target=read, args=(n, 0.0 if n < 5 else 1.0)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(got) == list(range(6))
    assert all(lines == [str(i) for i in range(3000)] for lines in got.values())
