"""jobs.ini scalar values: durations, booleans, counts, ports, and words ssh cannot take for options."""

from __future__ import annotations

import configparser
import re

DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)?")


def parse_duration(text: str) -> float:
    """`90`, `90s`, `30m`, `1h30m`, `7d` -> seconds."""
    text = text.strip().lower()
    parts = DURATION_RE.findall(text)
    if not text or DURATION_RE.sub("", text).strip():
        raise ValueError(f"{text!r} is not a duration like 90s, 30m or 1h")
    return sum(float(n) * {"d": 86400, "h": 3600, "m": 60, "s": 1, "": 1}[u] for n, u in parts)


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in configparser.ConfigParser.BOOLEAN_STATES:
        return configparser.ConfigParser.BOOLEAN_STATES[word]
    raise ValueError(f"{text!r} is not yes or no")


def _int_at_least(low: int):
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a whole number") from None
        if value < low:
            raise ValueError(f"must be at least {low}")
        return value

    return parse


positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


def port(raw: str) -> int:
    value = positive_int(raw)
    if value > 65535:
        raise ValueError("must be at most 65535")
    return value


def ssh_word(raw: str) -> str:
    """An address or user name that ssh cannot mistake for an option."""
    if not raw or raw.startswith("-") or any(c.isspace() or ord(c) < 32 for c in raw):
        raise ValueError(f"{raw!r} must be one word, not starting with '-'")
    return raw


def positive_duration(raw: str) -> float:
    value = parse_duration(raw)
    if value <= 0:
        raise ValueError("must be longer than 0s")
    return value
