"""jobs.ini scalar values: durations, booleans, counts, sizes, ports, and words ssh cannot take for options."""

from __future__ import annotations

import configparser
import re

NAME_RULE = "starts with a letter or digit, then letters, digits, '.', '_' and '-'"  # names of sections, in words
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


SIZE_RE = re.compile(r"(\d{1,16})\s*(b|kb|mb|gb|tb|kib|mib|gib|tib)?", re.IGNORECASE)
SIZE_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
              "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def parse_size(raw: str) -> int:
    """`512`, `100KB`, `64MB`, `1GB` -> bytes: KB, MB, GB, TB are powers of 1000, KiB, MiB, GiB, TiB
    of 1024 (as for file parameters' `max_size`, server/files/upload_params.py)."""
    match = SIZE_RE.fullmatch(raw.strip())
    if not match:
        raise ValueError(f"{raw!r} is not a size like 100KB, 64MB or 1GB")
    return int(match[1]) * SIZE_UNITS[(match[2] or "b").lower()]


def port(raw: str) -> int:
    value = positive_int(raw)
    if value > 65535:
        raise ValueError("must be at most 65535")
    return value


# What OpenSSH itself refuses in a host name and a remote user name (ssh.c, valid_hostname and
# valid_ruser): refused here, so that `check` says it, not a run with "ssh failed without saying why".
NOT_IN_ADDRESS = frozenset("'`\"$\\;&<>|(){}@/")  # `@` and `/`: user@host and ssh:// belong in `user` and `port`
NOT_IN_USER = frozenset("'`\"$;&<>|(){}")  # a backslash stays allowed: DOMAIN\user on Windows hosts


def ssh_word(raw: str, refused: frozenset[str] = frozenset(), what: str = "") -> str:
    """An address or user name that ssh cannot mistake for an option, nor refuse (`refused`)."""
    if not raw or raw.startswith("-") or any(c.isspace() or ord(c) < 32 for c in raw):
        raise ValueError(f"{raw!r} must be one word, not starting with '-'")
    bad = sorted(set(raw) & refused)
    if bad:
        hint = " (a user goes in `user =`, a port in `port =`)" if {"@", "/"} & set(bad) else ""
        raise ValueError(f"{raw!r}: {what} cannot hold {' '.join(bad)}{hint}")
    return raw


def ssh_address(raw: str) -> str:
    return ssh_word(raw, NOT_IN_ADDRESS, "a host name or IP address")


def ssh_user(raw: str) -> str:
    return ssh_word(raw, NOT_IN_USER, "a user name")


def positive_duration(raw: str) -> float:
    value = parse_duration(raw)
    if value <= 0:
        raise ValueError("must be longer than 0s")
    return value


def unechoed(text: str) -> str:
    """A line's text, as a problem may quote it: not if it may hold a URL's password (a notifier's
    URL on a line of its own reads as a key), since problems reach the log, the audit and admins."""
    return "(a line holding a URL, not shown)" if "://" in text or "@" in text else text
