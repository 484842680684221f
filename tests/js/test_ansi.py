"""The output converter (assets/js/ansi.js over the patched, vendored ansi_up) under Node, on a
corpus of broken and hostile escape sequences: every line keeps its text, nothing but http(s)
becomes a link, nothing becomes markup or an inline style, and the time stays linear."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("convert.mjs")
ESC, BEL, ST = "\x1b", "\x07", "\x1b\\"
ALLOWED_TAGS = {"div", "span", "a"}
ALLOWED_ATTRS = {"class", "href", "rel", "target", "data-fg", "data-bg"}

# (line, text that must survive in its row)
CORPUS = [
    (f"{ESC}]8;;http://unterminated.example", ""),
    (f"before {ESC}]8;;", "before"),
    (f"title {ESC}]0;window title", "title"),
    (f"csi {ESC}[", "csi"),
    (f"csi {ESC}[12;", "csi"),
    (f"{ESC}[1 2 3 spaced params", "spaced params"),
    (f"{ESC}P1$r dcs unterminated", "dcs unterminated"),
    (f"{ESC}Pq#0;2;0;0;0{ST} after dcs", "after dcs"),
    (f"{ESC}]8;;javascript:alert(1){BEL}js link{ESC}]8;;{BEL}", "js link"),
    (f"{ESC}]8;;JavaScript:alert(1){ST}js caps{ESC}]8;;{ST}", "js caps"),
    (f"{ESC}]8;;data:text/html,<script>alert(1)</script>{BEL}data link{ESC}]8;;{BEL}", "data link"),
    (f"{ESC}]8;;file:///etc/passwd{BEL}file link{ESC}]8;;{BEL}", "file link"),
    (f"{ESC}]8;;constructor:x{BEL}proto link{ESC}]8;;{BEL}", "proto link"),
    (f'{ESC}]8;;https://example.com/?q="><img/src=x/onerror=alert(1)>{BEL}quoted{ESC}]8;;{BEL}', "quoted"),
    (f"{ESC}]8;;http://a.example{ESC}]8;;http://b.example{BEL}nested{ESC}]8;;{BEL}", "nested"),
    (f"{ESC}[{ESC}[31mred after broken csi", "red after broken csi"),
    (f"{ESC}]8;;{ESC}]8;;{ESC}]8;;tail", "tail"),
    (f"{ESC}[" + "1;" * 50_000 + "mhuge params", "huge params"),
    (f"{ESC}[" + "9" * 100_000 + "mhuge number", "huge number"),
    (f"{ESC}]8;;http://x.example/" + "a" * 100_000 + f"{BEL}huge url{ESC}]8;;{BEL}", "huge url"),
    (f"{ESC}[38;2;300;0;0mbad truecolor", "bad truecolor"),
    (f"{ESC}[38;2;1;2;3;48;5;200mtruecolor", "truecolor"),
    (f"lone {ESC}", "lone"),
    (f"a{ESC}b", "b"),
    (ESC, ""),
    (f"{ESC}({ESC}(B charset", "charset"),
    ("\x9b31mc1 csi", "c1 csi"),
    ("\x9d8;;http://x.example\x9cc1 osc", "c1 osc"),
    ("\x90c1 dcs", "c1 dcs"),
    ("<script>window.__pwned = 1</script>", "<script>window.__pwned = 1</script>"),
    ('<img src=x onerror="window.__pwned=1">', '<img src=x onerror="window.__pwned=1">'),
    (f"{ESC}[1;3;4;2mstyled{ESC}[0m & plain", "styled & plain"),
    (f"{ESC}]8;;" * 20_000 + "end of a hostile line", "end of a hostile line"),
    ("plain after the corpus", "plain after the corpus"),
]


class Row(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text, self.tags = "", []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text += data


def parse(html: str) -> Row:
    row = Row()
    row.feed(html)
    row.close()
    return row


def convert(lines: list[tuple[str, str | None, str]]) -> tuple[list[Row], list[str], float]:
    node = shutil.which("node")
    assert node, "node is needed to run the page's converter"
    out = subprocess.run([node, str(HARNESS)], input=json.dumps({"lines": lines}), capture_output=True,
                         text=True, check=True, timeout=120)
    result = json.loads(out.stdout)
    return [parse(r) for r in result["rows"]], result["rows"], result["ms"]


def test_every_line_of_a_hostile_corpus_keeps_its_text_and_becomes_no_markup():
    rows, html, ms = convert([("stdout", None, line) for line, _ in CORPUS])
    assert len(rows) == len(CORPUS)
    for (line, kept), row, raw in zip(CORPUS, rows, html, strict=True):
        assert kept in row.text, f"{line[:60]!r} lost its text: {raw[:300]!r}"
        for tag, attrs in row.tags:
            assert tag in ALLOWED_TAGS, raw
            assert set(attrs) <= ALLOWED_ATTRS, f"{line[:60]!r}: {raw[:300]!r}"  # no style=, no on*=
            if tag == "a":
                assert attrs["href"].startswith(("http://", "https://")), raw
                assert attrs["rel"] == "noopener noreferrer" and attrs["target"] == "_blank"
            for name in ("data-fg", "data-bg"):
                if name in attrs:
                    assert [0 <= int(c) <= 255 for c in attrs[name].split(",")] == [True] * 3
    assert ms < 1000


def test_only_http_and_https_links_become_links():
    rows, _, _ = convert([("stdout", None, line) for line, _ in CORPUS])
    links = [attrs["href"] for row in rows for tag, attrs in row.tags if tag == "a"]
    assert links == ["https://example.com/?q=\"><img/src=x/onerror=alert(1)>", "http://b.example"]
    hostile = [row for (line, _), row in zip(CORPUS, rows, strict=True) if "js link" in line or "data link" in line]
    assert [r.text for r in hostile] == ["js link", "data link"]  # shown, as text


@pytest.mark.parametrize("opener", [f"{ESC}]8;;http://x.example", f"{ESC}]8;;", f"{ESC}]0;title", f"{ESC}[",
                                    f"{ESC}P", ESC, f"{ESC}[38;2;"])
def test_output_after_an_unterminated_sequence_is_shown_and_fast(opener):
    lines = [("stdout", None, f"first {opener}")] + [("stdout", None, f"line {i}") for i in range(20_000)]
    rows, _, ms = convert(lines)
    assert rows[0].text.startswith("first")
    assert [r.text for r in rows[1:]] == [f"line {i}" for i in range(20_000)]
    assert ms < 1000, f"20,000 lines after {opener!r} took {ms:.0f} ms of CPU"


def test_colours_are_kept_per_stream_and_host():
    rows, _, _ = convert([("stdout", "web1", f"{ESC}[31mred on web1"), ("stdout", "web2", "plain on web2"),
                          ("stderr", "web1", "plain on web1 stderr"), ("stdout", None, "plain local"),
                          ("stdout", "web1", "still red on web1")])
    red = [any("ansi-red-fg" in attrs.get("class", "") for _, attrs in r.tags) for r in rows]
    assert red == [True, False, False, False, True]
    assert [r.text for r in rows] == ["web1red on web1", "web2plain on web2", "web1plain on web1 stderr",
                                      "plain local", "web1still red on web1"]


def test_a_progress_bar_redrawn_with_carriage_returns_shows_its_last_drawing_in_its_colours():
    rows, html, _ = convert([("stdout", None, "Downloading  10%\rDownloading  50%\rDownloading 100%"),
                             ("stdout", None, f"{ESC}[32mok 1/3\rok 3/3"), ("stdout", None, "plain")])
    assert [r.text for r in rows] == ["Downloading 100%", "ok 3/3", "plain"]
    assert "ansi-green-fg" in html[1] and "\r" not in "".join(html)


def test_the_patched_converter_is_the_one_the_vendor_notes_describe():
    vendor = Path(__file__).resolve().parents[2] / "assets" / "vendor"
    digest = hashlib.sha256((vendor / "ansi_up.js").read_bytes()).hexdigest()
    notes = (vendor / "README.md").read_text()
    assert f"6.0.6, patched | MIT, `ansi_up.LICENSE.txt` | `{digest}`" in notes
    assert [n for n in range(1, 5) if f"PUSHBUTTON PATCH {n}/4" in (vendor / "ansi_up.js").read_text()] == [1, 2, 3, 4]
