"""Completion records (``status_records``): availability from listings alone, kept true
through publish, mark_failed, remove and replacement; copies, moves and stale records are
not trusted; stores of the earlier layout (no records) and in-memory stores still read."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from strax_storage import Chunk, DataKey, StorageError, open_store
from strax_storage.catalog import final_info
from strax_storage.run_scan import complete_many, scan
from strax_storage.status_records import RECORDS, mark_complete, record_name, vouched

DTYPE = np.dtype([("time", np.int64), ("length", np.int32), ("dt", np.int16)])
KEY = DataKey("r1", "peaks", "abcdef")


def _rows() -> np.ndarray:
    rows = np.zeros(2, DTYPE)
    rows["time"] = [0, 10]
    rows["length"], rows["dt"] = 1, 1
    return rows


def _save(store, key: DataKey = KEY, *, fail: bool = False) -> None:  # type: ignore[no-untyped-def]
    if fail:
        with pytest.raises(RuntimeError), store.saver(key, DTYPE, {"plugin": "X"}) as saver:
            saver.send(Chunk(0, 20, _rows()))
            raise RuntimeError("on purpose")
        return
    with store.saver(key, DTYPE, {"plugin": "X"}) as saver:
        saver.send(Chunk(0, 20, _rows()))


def _listed(store, keys: list[DataKey]) -> list[bool]:  # type: ignore[no-untyped-def]
    """What the catalog says (``complete_many`` after one scan), for each key."""
    entries = {e.run_id: e for e in scan(store.backend)}
    items = [
        (k.run_id, k.data_type, k.lineage_hash)
        for k in keys
        if k.run_id in entries and k.dirname in entries[k.run_id].dirnames
    ]
    oks = dict(zip(items, complete_many(store.backend, items, entries), strict=True))
    return [oks.get((k.run_id, k.data_type, k.lineage_hash), False) for k in keys]


def _truth(store, key: DataKey) -> bool:  # type: ignore[no-untyped-def]
    try:
        info = final_info(store.backend, key)
    except StorageError:
        return False
    return info is not None and info.status == "complete"


def _records(root: Path) -> list[str]:
    folder = root / RECORDS
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_published_data_set_is_complete_from_the_listings_alone(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    _save(store)
    inode = os.lstat(tmp_path / KEY.path).st_ino
    assert _records(tmp_path) == [record_name("r1", KEY.dirname, inode)]
    (tmp_path / KEY.path / "zarr.json").write_text("{")  # never read: the record vouches
    assert _listed(store, [KEY]) == [True]
    # the run folder holds what it held before records existed
    assert sorted(p.name for p in (tmp_path / "r1").iterdir()) == [KEY.dirname, "zarr.json"]


def test_a_failed_write_gets_no_record(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    _save(store, fail=True)
    assert _truth(store, KEY) is False
    assert _records(tmp_path) == []
    assert _listed(store, [KEY]) == [False]


def test_marking_failed_removes_the_record(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    _save(store)
    assert store.mark_failed(KEY, "corrupted, on purpose") is True
    assert _records(tmp_path) == []
    assert _listed(store, [KEY]) == [False]


def test_removal_then_a_failed_write_is_not_available(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    _save(store)
    store.remove(KEY)
    assert _records(tmp_path) == []
    _save(store, fail=True)
    assert _listed(store, [KEY]) == [False]
    _save(store)  # a new complete write replaces the failed one, with a record of its own
    assert _listed(store, [KEY]) == [True] and len(_records(tmp_path)) == 1


def test_a_stale_record_of_a_reused_inode_is_cleared_by_the_next_publish(tmp_path: Path) -> None:
    """A record left by a directory removed by hand, whose inode a later write's temporary
    directory gets: publishing that write (failed) deletes the record first."""
    store = open_store(tmp_path)
    saver = store.saver(KEY, DTYPE, {"plugin": "X"})
    saver.send(Chunk(0, 20, _rows()))
    tmp = next(p for p in (tmp_path / "r1").iterdir() if p.name.startswith(".tmp-"))
    (tmp_path / RECORDS).mkdir()
    stale = tmp_path / RECORDS / record_name("r1", KEY.dirname, os.lstat(tmp).st_ino)
    stale.touch()  # as if an earlier data set with this inode had been removed by hand
    saver.fail(RuntimeError("on purpose"))
    assert not stale.exists()
    assert _listed(store, [KEY]) == [False]


def test_copies_moves_and_hand_made_records_are_not_trusted(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    _save(store)
    copied = DataKey("r2", "peaks", "abcdef")
    shutil.copytree(tmp_path / "r1", tmp_path / "r2")  # a copy names r1 inside
    moved = DataKey("r3", "peaks", "abcdef")
    (tmp_path / "r3").mkdir()
    _save(store, DataKey("r4", "peaks", "abcdef"))
    os.rename(tmp_path / "r4" / KEY.dirname, tmp_path / moved.path)  # same inode, other run
    renamed = DataKey("r1", "peaks", "bcdefg")
    shutil.copytree(tmp_path / KEY.path, tmp_path / renamed.path)
    keys = [KEY, copied, moved, renamed]
    assert _listed(store, keys) == [_truth(store, k) for k in keys] == [True, False, False, False]


def test_mark_complete_refuses_what_is_not_complete(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    _save(store, fail=True)
    assert mark_complete(store.backend, KEY) is False
    assert _records(tmp_path) == []
    assert mark_complete(store.backend, DataKey("r9", "peaks", "abcdef")) is False


def test_stores_of_the_earlier_layout_are_read_by_their_attributes(tmp_path: Path) -> None:
    """No record folder (a store written before records existed): every data set listed is
    judged by its zarr.json, as the catalog's trust rules say."""
    store = open_store(tmp_path)
    good, failed = KEY, DataKey("r2", "peaks", "abcdef")
    _save(store, good)
    _save(store, failed)
    shutil.rmtree(tmp_path / RECORDS)
    (tmp_path / failed.path / "zarr.json").write_text(
        json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}})
    )
    assert vouched(store.backend) == frozenset()
    assert _listed(store, [good, failed]) == [True, False]


def test_a_read_only_store_is_judged_without_records(tmp_path: Path) -> None:
    _save(open_store(tmp_path))
    shutil.rmtree(tmp_path / RECORDS)
    ro = open_store(tmp_path, readonly=True)
    assert mark_complete(ro.backend, KEY) is False and not (tmp_path / RECORDS).exists()
    assert _listed(ro, [KEY]) == [True]


def test_in_memory_stores_take_the_slow_path() -> None:
    store = open_store("memory://records")
    _save(store)
    _save(store, DataKey("r2", "peaks", "abcdef"), fail=True)
    assert _listed(store, [KEY, DataKey("r2", "peaks", "abcdef")]) == [True, False]
    assert vouched(store.backend) == frozenset()
