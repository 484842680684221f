"""Run folders made ahead (server/files/ready.py): a start renames one into place, the stock is
made again after a burst, and a server never removes another live server's folders."""

from __future__ import annotations

import os
import stat

import pytest

from server.files import ready as R
from server.store import Store


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "data")
    yield store
    store.close()


def test_a_run_takes_a_folder_made_ahead_and_more_are_made_once_half_are_gone(store, monkeypatch):
    monkeypatch.setattr(R, "REFILL_AFTER", 0.05)
    ready = R.ReadyFolders(store, lambda: 4)
    ready.start()
    ready.filling.join()
    assert len(ready.stock) == 4
    made = set(ready.stock)
    for run_id in (1, 2, 3):
        assert ready.take(run_id)
        folder = store.dir / "runs" / str(run_id)
        assert list(folder.iterdir()) == [folder / "artifacts"]
        assert list((folder / "artifacts").iterdir()) == []
        assert stat.S_IMODE(folder.stat().st_mode) == stat.S_IMODE((folder / "artifacts").stat().st_mode) == 0o700
    assert len(ready.stock) == 1 and ready.filling is not None  # under half: more, a moment later
    filling = ready.filling
    filling.join(timeout=10)  # REFILL_AFTER, then the threadpool's turn, which a busy machine may delay
    assert filling.dead and len(ready.stock) == 4 and ready.filling is None
    assert len(made & set(ready.stock)) == 1  # three new ones, none given twice


def test_without_a_start_none_are_made_ahead_and_a_close_removes_those_left(store):
    ready = R.ReadyFolders(store, lambda: 2)  # the command line's one run
    assert not ready.take(1) and ready.filling is None  # its folder is made the usual way
    assert not (store.dir / "runs" / "1").exists()
    ready.fill()
    assert ready.take(2) and len(ready.stock) == 1
    ready.close()
    assert not (store.dir / "runs" / R.READY / store.owner).exists()
    assert (store.dir / "runs" / "2" / "artifacts").is_dir()  # the run's own stays


def test_a_folder_removed_behind_its_back_is_skipped(store):
    ready = R.ReadyFolders(store, lambda: 2)
    ready.fill()
    os.rename(ready.stock[-1], store.dir / "elsewhere")
    assert ready.take(5) and (store.dir / "runs" / "5" / "artifacts").is_dir()
    assert ready.stock == []


def test_folders_of_a_server_that_is_gone_are_removed_and_a_live_ones_kept(store, tmp_path):
    other = Store(tmp_path / "data")  # another live server on the same data dir
    try:
        theirs = R.ReadyFolders(other, lambda: 2)
        theirs.fill()
        gone = store.dir / "runs" / R.READY / "0123456789ab" / "cafe"
        (gone / "artifacts").mkdir(parents=True)
        mine = R.ReadyFolders(store, lambda: 2)
        mine.fill()
        assert not gone.parent.exists()
        assert all(folder.is_dir() for folder in theirs.stock)
        assert theirs.take(1) and mine.take(2)
    finally:
        other.close()
