"""jobs.ini's file parameters: `max_size` (a default and a hard cap), `accept`, and the keys that
make no sense for them, each reported with its line."""

from __future__ import annotations

import pytest

from server import catalog as C
from server.files.upload_params import DEFAULT_MAX_SIZE, HARD_MAX_SIZE, accepted, clean_name, parse_size
from tests.test_catalog import problems


def test_sizes_are_written_like_100KB_64MB_1GB(write_jobs):
    catalog = C.load(write_jobs("""
        [job:a]
        command = cat {a} {b} {c} {d}
        param.a.type = file
        param.a.max_size = 100KB
        param.b.type = file
        param.b.max_size = 64 mb
        param.c.type = file
        param.c.max_size = 2MiB
        param.d.type = file
        """))
    sizes = [p.max_size for p in catalog.jobs["a"].params]
    assert sizes == [100_000, 64_000_000, 2 * 1024 * 1024, DEFAULT_MAX_SIZE]
    assert catalog.jobs["a"].public()["params"][0]["max_size"] == 100_000


@pytest.mark.parametrize(("line", "message"), [
    ("param.f.max_size = 5GB", "must be more than 0 and at most 4GB"),
    ("param.f.max_size = 0", "must be more than 0 and at most 4GB"),
    ("param.f.max_size = lots", "'lots' is not a size like 100KB, 64MB or 1GB"),
    ("param.f.accept = csv", "'csv' is neither an extension like .csv nor a known media type"),
    ("param.f.accept = application/x-made-up", "is neither an extension"),
    ("param.f.default = /etc/passwd", "a file parameter cannot have a default: the user uploads it"),
])
def test_bad_file_keys_are_problems_on_their_line(write_jobs, line, message):
    found = problems(write_jobs, f"""
        [job:a]
        command = cat {{f}}
        param.f.type = file
        {line}
        """)
    assert len(found) == 1 and found[0].startswith("FILE:4: ") and message in found[0], found


@pytest.mark.parametrize("key", ["max_size = 1MB", "accept = .csv"])
def test_file_keys_on_other_types_are_problems(write_jobs, key):
    found = problems(write_jobs, f"""
        [job:a]
        command = echo {{t}}
        param.t.type = text
        param.t.{key}
        """)
    name = key.split()[0]
    assert found == [f"FILE:4: [job:a] param.t.{name}: {name} only applies to file, not text"]


def test_a_file_parameter_may_not_be_named_json(write_jobs):
    """A multipart start's body is its part `json`: a file of that name could never be sent."""
    found = problems(write_jobs, """
        [job:a]
        command = cat {json}
        param.json.type = file
        """)
    assert found == ["FILE:3: [job:a] param.json.type: a file parameter cannot be named 'json': a start's "
                     "multipart body has a part of that name for its values"]


def test_the_hard_cap_is_the_largest_size_allowed():
    assert parse_size("4GB") == HARD_MAX_SIZE
    with pytest.raises(ValueError):
        parse_size("4000000001")


def test_accept_judges_the_name_only():
    assert accepted([".csv"], "a.CSV") and not accepted([".csv"], ".csv") and not accepted([".csv"], "a.csv.exe")
    assert accepted(["image/*"], "p.png") and accepted(["application/json"], "x.json")
    assert not accepted(["text/plain"], "x.sh")


def test_clean_name_never_leaves_a_path():
    for raw in ("../..", "/", "..\\", "\x00\x01", " . "):
        assert clean_name(raw) == "upload"
    assert clean_name("a/b/../c.txt") == "c.txt"


def test_a_file_name_never_starts_like_an_option_or_a_hidden_file():
    for raw, clean in (("--help", "help"), ("-rf.csv", "rf.csv"), (" - .-x.csv", "x.csv"), ("---", "upload"),
                       ("a-b.csv", "a-b.csv"), ("dir/--output=x.csv", "output=x.csv")):
        assert clean_name(raw) == clean
