"""No part of a secret survives into output: masking that holds for secrets inside each other,
overlapping, split across reads, cut with an endless line, in progress messages and on stderr;
and secrets too short to be masked safely are refused."""

from __future__ import annotations

import json
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server import output as O
from server import params as P
from server.output import Masker, OutputStream

FRAGMENT = 4  # the rule: no piece of a secret this long or longer may reach a reader


def fragments(secret: str) -> set[str]:
    return {secret[i:i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1)}


def leaks(text: str, secrets: list[str]) -> list[str]:
    """Fragments of any secret found in `text`, as written or JSON-escaped (stored events)."""
    found = []
    for secret in secrets:
        for frag in fragments(secret):
            if frag in text or json.dumps(frag)[1:-1] in text:
                found.append(frag)
    return sorted(found)


def collect(secrets: list[str]):
    lines: list[str] = []
    progress: list[str] = []
    stream = OutputStream("stdout", lambda kind, data: lines.extend(data["lines"]), secrets,
                          on_progress=lambda pct, msg: progress.append(msg))
    return stream, lines, progress


def run_through(secrets: list[str], chunks: list[bytes]) -> tuple[list[str], list[str]]:
    stream, lines, progress = collect(secrets)
    for chunk in chunks:
        stream.feed(chunk)
    stream.close()
    return lines, progress


# -- examples of each way masking was bypassed -------------------------------------------------

def test_a_secret_inside_another_is_masked_whole_whatever_the_parameter_order():
    inner, outer = "hunter2-key", "hunter2-key-and-more"
    for order in ([inner, outer], [outer, inner]):
        lines, _ = run_through(order, [f"a {outer} b {inner} c\n".encode()])
        assert lines == ["a ******** b ******** c"]


def test_overlapping_secrets_are_masked_as_one_span():
    first, second = "abcdefgh1234", "1234ijklmnop"
    lines, _ = run_through([first, second], [b"<abcdefgh1234ijklmnop>\n"])
    assert lines == ["<********>"]
    lines, _ = run_through([first], [b"<abcdefgh1234abcdefgh1234abcdefgh>\n"])  # touching, then a near miss
    assert lines == ["<********abcdefgh>"]


def test_a_secret_split_across_reads_byte_by_byte_is_masked():
    secret = "pässwörd-😀-tail"
    data = f"start {secret} end\n".encode()
    lines, _ = run_through([secret], [data[i:i + 1] for i in range(len(data))])
    assert lines == ["start ******** end"]


def test_a_secret_straddling_the_cut_of_an_endless_line_is_masked(monkeypatch):
    monkeypatch.setattr(O, "MAX_LINE", 64)
    secret = "hunter2-key-and-more"
    lines, _ = run_through([secret], [b"x" * 60 + secret[:7].encode(), secret[7:].encode() + b" after\n"])
    assert leaks("".join(lines), [secret]) == []
    assert "".join(lines).replace(O.MASK, "") == "x" * 60 + " after"
    assert all(len(line) <= 64 + len(secret) for line in lines)


def test_an_endless_line_of_secrets_is_still_cut_and_masked(monkeypatch):
    monkeypatch.setattr(O, "MAX_LINE", 64)
    secret = "abcabcab"  # periodic: occurrences overlap themselves
    lines, _ = run_through([secret], [b"abc" * 10] * 100 + [b"x\n"])
    assert "".join(lines).replace(O.MASK, "") == "cx"  # the last `c` ends no occurrence
    assert len(lines) > 10  # cut, not held back whole


def test_output_that_repeats_a_secret_is_masked_without_stalling_the_hub():
    started = time.thread_time()  # CPU time: a busy machine's waits for a CPU are not the masker's
    assert Masker(["00000000"]).mask("0" * 1024 * 1024 + " 1") == "******** 1"
    assert Masker(["abcabcab"]).mask("abc" * 300_000) == "********c"
    assert time.thread_time() - started < 0.5  # one match per run of repeats, not one per character


def test_a_secret_in_a_progress_message_or_on_stderr_is_masked():
    secret = "hunter2-key-and-more"
    lines, progress = run_through([secret], [f"::progress 50 sending {secret}\n".encode()])
    assert (lines, progress) == ([], ["sending ********"])


def test_text_that_only_resembles_a_secret_is_left_alone():
    lines, _ = run_through(["hunter2-key"], [b"hunter2-ke hunter2_key unter2-key\n"])
    assert lines == ["hunter2-ke hunter2_key unter2-key"]


def test_masker_masks_one_string_and_an_empty_list_masks_nothing():
    assert Masker(["s3cret-token"]).mask("error: bad s3cret-token!") == "error: bad ********!"
    assert Masker([]).mask("anything") == "anything"


# -- the property: random secrets, random output, random cuts ----------------------------------

SECRET_CHARS = "ABCDEFGHIJKé😀"  # the output around secrets never uses these, so any left is a leak
OTHER_CHARS = "xyz 0123456789:.-p\t"


@st.composite
def secret_set(draw) -> list[str]:
    base = draw(st.text(SECRET_CHARS, min_size=P.SECRET_MIN_LENGTH, max_size=24))
    secrets = [base]
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["inside", "containing", "overlapping", "other"]))
        src = draw(st.sampled_from(secrets))
        extra = draw(st.text(SECRET_CHARS, min_size=P.SECRET_MIN_LENGTH, max_size=12))
        if kind == "inside" and len(src) > P.SECRET_MIN_LENGTH:
            start = draw(st.integers(0, len(src) - P.SECRET_MIN_LENGTH))
            end = draw(st.integers(start + P.SECRET_MIN_LENGTH, len(src)))
            secrets.append(src[start:end])
        elif kind == "containing":
            secrets.append(extra[:3] + src + extra[3:])
        elif kind == "overlapping":
            secrets.append(src[len(src) // 2:] + extra)
        else:
            secrets.append(extra)
    return secrets


@st.composite
def hostile_output(draw):
    secrets = draw(secret_set())
    pieces = draw(st.lists(st.one_of(
        st.text(OTHER_CHARS, max_size=40),
        st.sampled_from(secrets),
        st.just("\n"),
        st.just("\n::progress 42 "),
        st.just("\r\n"),
    ), max_size=40))
    data = "".join(pieces).encode()
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return secrets, data, chunks, draw(st.integers(8, 80))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_output())
def test_no_fragment_of_any_secret_survives_random_output_cut_anywhere(case):
    secrets, data, chunks, max_line = case
    O.MAX_LINE, saved = max_line, O.MAX_LINE
    try:
        lines, progress = run_through(secrets, chunks)
    finally:
        O.MAX_LINE = saved
    seen = "".join(lines) + "".join(progress)
    assert leaks(seen, secrets) == []
    assert not set(seen) & set(SECRET_CHARS)  # stronger: not one character of a secret
    longest = max(map(len, secrets))  # an endless line is still cut: one read and a held tail at most
    assert all(len(line) <= max_line + max(map(len, chunks), default=0) + longest for line in lines)
    if b"::progress" not in data and b"\r" not in data:  # and nothing else was lost or added
        masked = Masker(secrets).mask(data.decode())
        assert _one_mask("".join(lines)) == _one_mask(masked.replace("\n", ""))


def _one_mask(text: str) -> str:
    """A span cut in two shows the mask twice; count it once to compare with masking whole."""
    while O.MASK * 2 in text:
        text = text.replace(O.MASK * 2, O.MASK)
    return text


# -- input: too short to mask safely -----------------------------------------------------------

@pytest.mark.parametrize("value", ["a", "pin4", "hunter2"])
def test_a_secret_too_short_to_mask_safely_is_refused_with_a_field_error(value):
    p = P.Param(name="token", type="secret")
    with pytest.raises(P.ParamsError) as err:
        P.validate([p], {"token": value})
    assert err.value.fields == {"token": f"must be at least {P.SECRET_MIN_LENGTH} characters: "
                                         "a shorter secret cannot be masked safely in output"}
    assert P.validate([p], {"token": "hunter2-key"}) == {"token": "hunter2-key"}
    assert P.validate([p], {}) == {"token": None}  # optional and not given: nothing to mask


# -- end to end: a real server, a job that prints its secrets every hostile way ----------------

JOB = r"""
import os, sys, time
outer, inner, over = os.environ["PB_OUTER"], os.environ["PB_INNER"], os.environ["PB_OVER"]
out = sys.stdout
def say(text, stream=out):
    stream.write(text); stream.flush()
say(f"inner first: {inner} then outer: {outer}\n")
k = max(k for k in range(len(over)) if outer.endswith(over[:k]))  # over begins inside outer
say(f"overlapping: {outer}{over[k:]}\n")
for i in range(0, len(outer), 3):  # one secret in slow pieces
    say(outer[i:i + 3]); time.sleep(0.05)
say("\n")
say(f"::progress 50 using {outer}\n")
say(f"stderr: {over}\n", sys.stderr)
say("x" * (1024 * 1024 - 5) + outer[:7])  # the line cut falls inside the secret
time.sleep(0.3)
say(outer[7:] + " end of long line\n")
say(inner)  # a last line without newline
"""


SECRETS_E2E = {"inner": "Kx9-Qv7-W", "outer": "Kx9-Qv7-Wm3-Zt5-Ré😀", "over": "Zt5-Ré😀-Yp2-Rj8"}
PARAMS_E2E = "".join(f"param.{name}.type = secret\n" for name in SECRETS_E2E)


def assert_no_fragment_anywhere(pb, job: str) -> None:
    """Run `job` (JOB, on whatever machine) and read every place a reader can: the live event
    stream, the downloaded log, the API's run records, and the SQLite files byte for byte."""
    run_id = pb.start_run(job, **SECRETS_E2E)["id"]
    with pb.client.stream("GET", f"/api/runs/{run_id}/events", timeout=60) as res:  # live, as a page reads it
        sse = "".join(res.iter_text())  # the stream ends after the run's `end` event
    record = pb.wait(run_id)
    assert record["state"] == "succeeded", record
    log = pb.client.get(f"/api/runs/{run_id}/log").text
    api = pb.client.get(f"/api/runs/{run_id}").text + pb.client.get("/api/runs").text
    assert pb.stop() == 0
    stored = b"".join(p.read_bytes() for p in pb.data_dir.glob("history.sqlite3*")).decode("utf-8", "replace")
    assert "x" * 1000 in log and "end of long line" in log and "stderr: ********" in log  # it all ran
    assert any(set(line) == {"x"} for line in log.splitlines())  # the long line was cut
    assert record["message"] == "using ********"
    values = list(SECRETS_E2E.values())
    for where, text in {"sse": sse, "log": log, "api": api, "sqlite": stored}.items():
        assert leaks(text, values) == [], where


def test_no_fragment_of_a_secret_reaches_the_stream_the_log_the_api_or_sqlite(pushbutton, write_jobs, tmp_path):
    script = tmp_path / "leak.py"
    script.write_text(JOB)
    pb = pushbutton(write_jobs(f"[job:leak]\ncommand = {sys.executable} {script}\n" + PARAMS_E2E))
    assert_no_fragment_anywhere(pb, "leak")


def test_the_servers_own_credentials_never_reach_a_jobs_or_a_choices_commands_environment(
        pushbutton, write_jobs, monkeypatch):
    """Ops give the server its token and its directory and provider secrets in the environment; a
    job that prints its environment must not show them to everyone who may read its output."""
    from server.environment import CREDENTIALS

    for name in CREDENTIALS:
        monkeypatch.setenv(name, f"{name.lower()}-s3cret-value")
    monkeypatch.setenv("PB_TEST_INHERITED", "kept")  # the rest of the environment is inherited
    pb = pushbutton(write_jobs("""
        [job:env]
        command = env

        [job:pick]
        command = echo {name}
        param.name.type = choice
        param.name.choices_from = sh -c 'env | cut -d= -f1'
    """))
    lines = pb.output(pb.start_run("env")["id"])
    assert "PB_TEST_INHERITED=kept" in lines
    assert not [line for line in lines if "s3cret" in line or line.split("=")[0] in CREDENTIALS]
    names = pb.client.get("/api/jobs/pick/params/name/choices").json()["choices"]
    assert "PB_TEST_INHERITED" in names
    assert not set(names) & set(CREDENTIALS)
