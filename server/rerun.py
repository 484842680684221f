"""Run again: the values a new run takes from a stored one (`Runs.rerun`, server/runs.py).

Secrets were never stored, only masked, so they must be given again; every other value is reused
unless overridden. Which values were masked is the record's to say (`preview.masked`, from
server/preview.py), never the value's: a text value may read exactly like the mask.
"""

from __future__ import annotations

from typing import Any

from server import params as P
from server.catalog import Job


def masked_names(record: dict) -> set[str]:
    """The parameters whose values `record` stores masked. Runs recorded before `masked` was
    cannot say: there a value reading as the mask is taken as masked, never sent as a value."""
    masked = (record.get("preview") or {}).get("masked")
    if masked is None:
        return {name for name, value in record["params"].items() if value == P.MASK}
    return set(masked)


def values_again(record: dict, job: Job, raw: dict[str, Any]) -> dict[str, Any]:
    """The stored run's values for a new run of `job`, overridden by `raw`. Raises
    params.ParamsError naming each secret not given again."""
    known = {p.name: p for p in job.params}
    masked = masked_names(record)
    # A secret then (masked) or now (jobs.ini may have changed since): never a stored value.
    values = {k: v for k, v in record["params"].items() if k in known and not known[k].secret and k not in masked}
    values.update(raw)
    missing = {p.name: "enter the secret again" for p in job.params
               if p.secret and record["params"].get(p.name) and not raw.get(p.name)}
    if missing:
        raise P.ParamsError(missing)
    return values
