"""Bytes -> line events: splitting, decoding, batching, progress and secret redaction."""

from __future__ import annotations

import timeit

import gevent
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from server import output as O
from server.events import RECENT_EVENTS, EventLog
from server.output import OutputStream
from server.store import Store


def collect(**kw):
    events: list[tuple[str, dict]] = []
    progress: list[tuple[float, str]] = []
    stream = OutputStream("stdout", lambda kind, data: events.append((kind, data)),
                          on_progress=lambda pct, msg: progress.append((pct, msg)), **kw)
    return stream, events, progress


def lines(events) -> list[str]:
    return [line for kind, data in events if kind == "output" for line in data["lines"]]


def test_lines_split_across_reads_and_multibyte_characters_survive():
    stream, events, _ = collect()
    for byte in "héllo wörld 😀\nsecond\n".encode():
        stream.feed(bytes([byte]))
    stream.close()
    assert lines(events) == ["héllo wörld 😀", "second"]


def test_invalid_utf8_is_replaced_not_fatal():
    stream, events, _ = collect()
    stream.feed(b"ok \xff\xfe bad \xc3\x28\n\x80\n")
    stream.close()
    assert lines(events) == ["ok \ufffd\ufffd bad \ufffd(", "\ufffd"]


def test_last_line_without_newline_is_kept_and_crlf_trimmed():
    stream, events, _ = collect()
    stream.feed(b"windows\r\nno newline at end")
    stream.close()
    assert lines(events) == ["windows", "no newline at end"]


def test_progress_lines_become_progress_not_output():
    stream, events, progress = collect()
    stream.feed(b"before\n::progress 45 Copying files\n  ::progress 100%\n::progress soon\nafter\n")
    stream.close()
    assert progress == [(45.0, "Copying files"), (100.0, "")]
    assert lines(events) == ["before", "::progress soon", "after"]


def test_secrets_are_masked_in_output():
    stream, events, _ = collect(secrets=["hunter2"])
    stream.feed(b"token=hunter2 and again hunter2\n")
    stream.close()
    assert lines(events) == ["token=******** and again ********"]


def test_a_flood_becomes_few_large_events():
    stream, events, _ = collect()
    data = "".join(f"{i}\n" for i in range(200_000)).encode()
    for start in range(0, len(data), 65536):
        stream.feed(data[start:start + 65536])
    stream.close()
    assert lines(events) == [str(i) for i in range(200_000)]
    assert len(events) <= len(data) // O.BATCH_BYTES + 25


def encoded(text: str) -> bytes:
    """What an event log that takes JSON made already (`takes_fragments`) gets for `text`'s lines."""
    got: list[dict] = []

    def emit(kind, data):
        got.append(data)

    emit.takes_fragments = True
    stream = OutputStream("stdout", emit)
    stream.feed(text.encode() + b"\n")
    stream.close()
    return orjson.dumps([data["lines"] for data in got])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.text(), st.text(st.characters(max_codepoint=0x7F)),
                          st.sampled_from(["", '"', "\\", "\t", "\x7f", "\x00", "é", "a/b", "\\n"])), max_size=8))
def test_output_made_into_json_at_once_is_what_the_lines_encode_to(parts):
    text = "\n".join(parts).replace("\r", "")  # a CR before a newline is trimmed: not this test's subject
    text = text.encode("utf-8", "replace").decode("utf-8", "replace")
    assert encoded(text) == orjson.dumps([text.split("\n")])


def test_a_quiet_line_is_sent_at_once_and_a_burst_soon_after():
    stream, events, _ = collect()
    stream.feed(b"first\n")
    assert lines(events) == ["first"]  # nothing was sent recently: no waiting
    stream.feed(b"second\n")
    assert lines(events) == ["first"]  # batched for at most BATCH_INTERVAL
    gevent.sleep(O.BATCH_INTERVAL * 3)
    assert lines(events) == ["first", "second"]


def test_an_endless_line_is_sent_once_it_reaches_max_line():
    stream, events, _ = collect()
    stream.feed(b"x" * (O.MAX_LINE + 10))
    stream.feed(b"y\n")
    stream.close()
    assert [len(line) for line in lines(events)] == [O.MAX_LINE + 10, 1]


def _stored_log(store: Store, run_id: int, events: int) -> EventLog:
    log = EventLog(store, run_id)
    for i in range(events):
        log.emit("output", {"stream": "stdout", "lines": [str(i)]})
    while log.committed < log.seq:
        gevent.sleep(0.005)
    return log


def test_a_live_reader_costs_the_events_it_gets_not_the_memory_window(tmp_path):
    """Each SSE client reads twice per event; a read that scanned the whole in-memory window
    (256 events) was most of the server's CPU for a job printing a line every 10 ms."""
    store = Store(tmp_path / "data")
    try:
        full = _stored_log(store, 1, RECENT_EVENTS)
        assert len(full.recent) == RECENT_EVENTS
        for after in (0, 1, 57, RECENT_EVENTS - 1, RECENT_EVENTS):  # what a read returns is unchanged
            assert [row[0] for row in full.read(after)] == list(range(after + 1, min(after + 200, RECENT_EVENTS) + 1))
        assert [row[0] for row in full.read(10, limit=3)] == [11, 12, 13]
        slid = _stored_log(store, 3, RECENT_EVENTS + 44)  # the window has moved on: 45..300 in memory
        assert slid.recent[0][0] == 45
        assert [row[0] for row in slid.read(100)] == list(range(101, 301))
        assert [row[0] for row in slid.read(10, limit=50)] == list(range(11, 61))  # from SQLite
        short = _stored_log(store, 2, 1)

        def cost(log: EventLog) -> float:  # a reader that is up to date, and one with one new event
            return min(timeit.repeat(lambda: (log.read(log.seq), log.read(log.seq - 1)), number=300, repeat=7))

        assert cost(full) < 3 * cost(short)
    finally:
        store.close()
