"""A file parameter's value and its jobs.ini limits: sizes, `accept`, the user's file name.

Kept free of the upload machinery (server/files/uploads.py) so that server/params.py and the
catalog can type and check file parameters without importing the multipart parser.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

KB, MB, GB = 1000, 1000**2, 1000**3
DEFAULT_MAX_SIZE = 10 * MB  # `max_size` when jobs.ini names none
HARD_MAX_SIZE = 4 * GB  # no `max_size` may exceed it: the data dir is not a file store
JSON_PART = "json"  # a multipart start's body part: no file parameter may have this name
MAX_NAME = 200  # characters of the user's file name kept (the extension survives the cut)
SIZE_RE = re.compile(r"\s*(\d{1,13})\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*\Z", re.IGNORECASE)
UNITS = {"b": 1, "kb": KB, "mb": MB, "gb": GB, "kib": 1024, "mib": 1024**2, "gib": 1024**3}
# What the server can judge from a name alone: a media type in `accept` stands for these extensions.
MEDIA_TYPES = {
    "text/csv": (".csv",), "text/plain": (".txt", ".log", ".text"), "application/json": (".json",),
    "application/xml": (".xml",), "text/xml": (".xml",), "application/yaml": (".yaml", ".yml"),
    "application/zip": (".zip",), "application/gzip": (".gz", ".tgz"), "application/pdf": (".pdf",),
    "application/x-tar": (".tar",), "image/png": (".png",), "image/jpeg": (".jpg", ".jpeg"),
}
MEDIA_FAMILIES = {  # `image/*` and friends
    "image/*": (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg"), "text/*": (".txt", ".csv", ".log", ".text"),
}


@dataclass
class Upload:
    """One uploaded file: the user's (sanitized) name, what was received, where it is now.
    History and the API see `public()` only; the job sees `path` (as_text in server/params.py)."""

    name: str
    size: int
    sha256: str
    path: Path

    def public(self) -> dict:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}


def parse_size(text: str) -> int:
    """`100KB`, `64MB`, `1GB` (powers of 1000; KiB/MiB/GiB are powers of 1024; plain bytes too)."""
    m = SIZE_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a size like 100KB, 64MB or 1GB")
    size = int(m.group(1)) * UNITS[(m.group(2) or "b").lower()]
    if not 0 < size <= HARD_MAX_SIZE:
        raise ValueError(f"must be more than 0 and at most {show_size(HARD_MAX_SIZE)}")
    return size


def show_size(size: int) -> str:
    for unit, factor in (("GB", GB), ("MB", MB), ("KB", KB)):
        if size >= factor:
            return f"{size / factor:.3g}{unit}"
    return f"{size} bytes"


def parse_accept(text: str) -> list[str]:
    """`.csv, text/plain, image/*`: extensions (with the dot) and media types the server knows."""
    items = [item.strip().lower() for item in text.split(",") if item.strip()]
    for item in items:
        if not (re.fullmatch(r"\.[a-z0-9][a-z0-9._+-]{0,30}", item) or item in MEDIA_TYPES
                or item in MEDIA_FAMILIES):
            known = ", ".join(sorted(MEDIA_TYPES) + sorted(MEDIA_FAMILIES))
            raise ValueError(f"{item!r} is neither an extension like .csv nor a known media type ({known})")
    if not items:
        raise ValueError("expected extensions like .csv or media types like text/csv")
    return items


def accepted(accept: list[str], name: str) -> bool:
    """Does the file's name end in an extension `accept` allows? A media type counts as its
    extensions: the server never trusts a client's Content-Type, and does not sniff content."""
    if not accept:
        return True
    lower = name.lower()
    endings = [e for item in accept for e in (MEDIA_TYPES.get(item) or MEDIA_FAMILIES.get(item) or (item,))]
    return any(lower.endswith(ending) and len(lower) > len(ending) for ending in endings)


def clean_name(raw: str) -> str:
    """The user's file name as shown and given to the job in PB_<NAME>_FILENAME: the last path
    component (`/` and `\\` both), NFC, no control characters, no leading dots (`..`, hidden
    files) or dashes (a script's `ls $PB_F_FILENAME` would take `--help` as an option), at most
    MAX_NAME characters with the extension kept; `upload` if nothing is left."""
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip().lstrip(".- ")
    if len(name) > MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        ext = ext[:20] if dot and stem else ""
        name = name[:MAX_NAME - len(ext) - 1].rstrip() + "." + ext if ext else name[:MAX_NAME]
    return name or "upload"
