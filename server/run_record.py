"""A run as the rest of the server sees it: its states and its public record (the API's, the
audit's and the page's form of a stored run), without the machinery that runs it (runs.py)."""

from __future__ import annotations

import datetime as dt
import functools

from server.store import AWAITING

STATES = (AWAITING, "queued", "running", "succeeded", "failed", "cancelled", "timed_out", "interrupted",
          "rejected", "expired")
FINAL = frozenset(STATES[3:])


@functools.lru_cache(maxsize=4096)
def iso(t: float | None) -> str | None:
    """A time as the API gives it. Cached: a run's three times are formatted again for every
    state change, event stream and answer that shows the run (~2% of a short run's cost)."""
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def public(record: dict) -> dict:
    """A run as the API shows it (secrets were masked before it was ever stored)."""
    out = {k: record.get(k) for k in ("id", "job", "state", "params", "exit_code", "progress", "message",
                                      "user", "stopped_by", "preview", "approval")}
    out["hosts"] = record.get("hosts") or []  # remote runs: [{"name", "state", "exit_code", "error"}]
    for key in ("created", "started", "finished"):
        out[key] = iso(record.get(key))
    return out
