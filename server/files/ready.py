"""Run folders made ahead: a run's start renames one into place instead of making it.

Every local run gets an empty private folder for its artifacts (server/files/artifacts.py).
Making it took two `mkdir`s (ext4 here: 60-500 us of the kernel each time) on the threadpool, and
under load the round trip waited for the GIL: 20 runs started at once took 224 ms to their last
line, against 193 ms with no folder made at all (and `echo hi` 7.5 against 6.3 ms). A folder made
ahead costs the start one `rename` on the hub (~25 us).

`DATA/runs/ready/<owner>/<random>/artifacts/`, all 0700, where <owner> is the store's owner (one
per process: two servers on one data dir never take or remove each other's). `take` renames one
to `DATA/runs/<id>/`; once fewer than half of `size()` are left, more are made on the threadpool a
moment later, not in the middle of the burst that used them. A run that has a folder already (its
uploads), or that comes when none is ready, gets its folder made the usual way. Only a server
makes folders ahead (`start`), and removes its own when it stops (`close`); the command line's
one run does not. Folders of an owner that is gone (a server that was killed) are removed at the
first fill.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

import gevent

from server.events import in_pool
from server.files import RUNS_DIR, make_private, run_path

log = logging.getLogger("pushbutton")
READY = "ready"  # DATA/runs/ready/: not a run id, so no run's folder
PART = "artifacts"
MOST = 64  # folders kept ready at most, whatever `size()` says
REFILL_AFTER = 0.25  # seconds: after the burst that emptied the stock


class ReadyFolders:
    """One process's run folders made ahead. `take` and `fill` from greenlets of the server's hub."""

    def __init__(self, store, size: Callable[[], int]):
        self.store = store  # its `dir`, its `owner`, and whether another owner is alive
        self.size = size  # how many to keep ready: the runs that may start at once
        self.root = Path(store.dir) / RUNS_DIR / READY
        self.stock: list[Path] = []
        self.filling: gevent.Greenlet | None = None
        self.started = False  # made again as they are taken
        self.closed = False
        self.swept = False  # other owners' leftovers removed

    def start(self) -> None:
        """Make folders ahead from now on, the first ones at once."""
        self.started = True
        self.filling = gevent.spawn(self.fill)

    def close(self) -> None:
        """No more folders ahead; those not taken are removed (blocking: call through the threadpool)."""
        self.started, self.closed = False, True
        self.stock = []
        shutil.rmtree(self.root / self.store.owner, ignore_errors=True)

    def take(self, run_id: int) -> bool:
        """Rename a ready folder to the run's own; False if none is ready or the run has a folder."""
        taken = self._rename(run_path(self.store.dir, run_id))
        if self.started and self.filling is None and len(self.stock) * 2 < self.wanted():
            self.filling = gevent.spawn_later(REFILL_AFTER, self.fill)
        return taken

    def _rename(self, target: str) -> bool:
        while self.stock:
            folder = self.stock.pop()
            try:
                os.rename(folder, target)
            except FileNotFoundError:
                continue  # removed behind our back: the next one
            except OSError:  # the run has a folder already: its uploads, or a data dir reused
                self.stock.append(folder)
                return False
            return True
        return False

    def wanted(self) -> int:
        return max(0, min(MOST, self.size()))

    def fill(self) -> None:
        """Make folders until `size()` are ready (on the threadpool, in one call)."""
        try:
            made = in_pool(self._make, self.wanted() - len(self.stock))
            if not self.closed:
                self.stock += made
        except OSError as exc:  # a full disk, say: runs then get their folders the usual way
            log.warning("could not make run folders ahead: %s", exc)
        finally:
            self.filling = None

    def _make(self, count: int) -> list[Path]:
        if not self.swept:
            self._sweep()
        mine = self.root / self.store.owner
        make_private(mine)
        made = []
        for _ in range(count):
            folder = mine / secrets.token_hex(8)
            make_private(folder)
            make_private(folder / PART)
            made.append(folder)
        return made

    def _sweep(self) -> None:
        """Remove the folders of owners that are gone: nobody has been given them."""
        make_private(self.root.parent)
        make_private(self.root)
        for owner in os.listdir(self.root):
            if owner != self.store.owner and not self.store.owner_alive(owner):
                shutil.rmtree(self.root / owner, ignore_errors=True)
        self.swept = True
