"""Opening stores, listing, status, info and removal; crash leftovers are never "complete"."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import KEY, RECORDS, ROWS_PER_CHUNK, concat, make_chunks, save

from strax_storage import DataKey, DataNotFound, StorageError, Store, open_store


def test_open_store_accepts_paths_urls_and_stores(tmp_path: Path) -> None:
    by_str = open_store(str(tmp_path / "a"))
    by_path = open_store(tmp_path / "a")
    assert by_str.url == by_path.url == str(tmp_path / "a")
    assert open_store(by_str) is by_str
    assert not by_str.readonly
    assert open_store("memory://").url.startswith("memory://")
    with pytest.raises(ValueError, match="invalid store location"):
        open_store("")


def test_named_memory_stores_are_shared_and_anonymous_ones_are_not() -> None:
    a = open_store("memory://test_named_shared", rows_per_chunk=ROWS_PER_CHUNK)
    save(a, make_chunks(RECORDS, [3]))
    assert open_store("memory://test_named_shared").find(KEY) is not None
    assert open_store("memory://").find(KEY) is None
    a.remove(KEY)


def test_fsspec_url_store_round_trips(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/fs", rows_per_chunk=ROWS_PER_CHUNK)
    chunks = make_chunks(RECORDS, [4, 0, 9])
    save(store, chunks)
    assert store.status(KEY) == "complete"
    assert [i.key for i in store.list()] == [KEY]
    np.testing.assert_array_equal(store.load_array(KEY), concat(chunks, RECORDS))
    # the same directory opened as a local path reads identically
    np.testing.assert_array_equal(
        open_store(tmp_path / "fs").load_array(KEY), concat(chunks, RECORDS)
    )
    store.remove(KEY)
    assert store.status(KEY) == "absent"


def test_list_filters_and_sorts(store: Store) -> None:
    keys = [
        DataKey("run_2", "records", "abc"),
        DataKey("run_1", "records", "abc"),
        DataKey("run_1", "peaks", "abc"),
        DataKey("run_1", "records", "xyz"),
    ]
    for key in keys:
        save(store, make_chunks(RECORDS, [2]), key=key)
    assert [i.key for i in store.list()] == sorted(keys)
    assert [i.key for i in store.list(run_id="run_1")] == sorted(keys[1:])
    assert [i.key for i in store.list(data_type="records")] == sorted([keys[0], keys[1], keys[3]])
    assert store.list(run_id="run_3") == []
    with pytest.raises(ValueError, match="invalid run_id"):
        store.list(run_id="../etc")


def test_remove_deletes_only_that_data_set(store: Store) -> None:
    other = DataKey("run_1", "records", "zzz")
    save(store, make_chunks(RECORDS, [2]))
    save(store, make_chunks(RECORDS, [2]), key=other)
    store.remove(KEY)
    assert store.status(KEY) == "absent"
    assert store.status(other) == "complete"
    with pytest.raises(DataNotFound):
        store.remove(KEY)


def test_status_while_writing(store: Store) -> None:
    saver = store.saver(KEY, RECORDS, {})
    saver.send(make_chunks(RECORDS, [3])[0])
    assert store.status(KEY) == "writing"
    assert store.find(KEY) is None
    [info] = store.list()
    assert info.status == "writing"
    assert store.info(KEY).status == "writing"
    saver.close()
    assert store.status(KEY) == "complete"
    assert [i.status for i in store.list()] == ["complete"]


def test_local_writes_happen_under_a_temporary_name(local_store: Store, tmp_path: Path) -> None:
    saver = local_store.saver(KEY, RECORDS, {})
    saver.send(make_chunks(RECORDS, [9])[0])
    run_dir = tmp_path / "strax_data" / "run_1"
    names = os.listdir(run_dir)
    assert KEY.dirname not in names
    assert any(n.startswith(f".tmp-{KEY.dirname}-") for n in names)
    saver.close()
    assert sorted(n for n in os.listdir(run_dir) if n != "zarr.json") == [KEY.dirname]


def test_a_killed_writer_leaves_nothing_that_looks_complete(
    local_store: Store, tmp_path: Path
) -> None:
    """Simulate SIGKILL: copy a half-written temporary directory, then drop the saver."""
    saver = local_store.saver(KEY, RECORDS, {})
    saver.send(make_chunks(RECORDS, [9])[0])
    run_dir = tmp_path / "strax_data" / "run_1"
    [tmp] = [n for n in os.listdir(run_dir) if n.startswith(".tmp-")]
    shutil.copytree(run_dir / tmp, run_dir / f".tmp-{KEY.dirname}-0123456789ab")
    saver.fail(RuntimeError("simulated"))
    local_store.remove(KEY)  # the failed one that was renamed into place

    assert local_store.find(KEY) is None
    assert local_store.status(KEY) == "writing"
    [leftover] = local_store.list()
    assert leftover.status == "writing" and ".tmp-" in leftover.location
    # a new save is not blocked by the leftover and becomes the complete one
    save(local_store, make_chunks(RECORDS, [2]))
    assert local_store.status(KEY) == "complete"


def test_unrelated_entries_are_ignored_by_list(local_store: Store, tmp_path: Path) -> None:
    save(local_store, make_chunks(RECORDS, [2]))
    root = tmp_path / "strax_data"
    (root / "notes.txt").write_text("hi")
    (root / "run_1" / "no-dash-here-x").mkdir()
    (root / "run_1" / "README").write_text("x")
    (root / "bad name").mkdir()
    assert [i.key for i in local_store.list()] == [KEY]


def test_info_reports_everything(store: Store) -> None:
    save(store, make_chunks(RECORDS, [3, 4]))
    info = store.info(KEY)
    assert info.complete
    assert info.created is not None and info.created.endswith("+00:00")
    assert info.exception is None
    assert KEY.path in info.location
    assert "strax_decl" in info.attrs


def test_readonly_store_on_missing_directory_finds_nothing(tmp_path: Path) -> None:
    store = open_store(tmp_path / "nothing", readonly=True)
    assert store.list() == []
    assert store.find(KEY) is None


def test_unreachable_fsspec_protocol_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="cannot open store"):
        open_store("nosuchprotocol://bucket/x")


def test_two_local_writers_of_one_key_leave_one_complete_data_set(
    local_store: Store, tmp_path: Path
) -> None:
    """Same lineage written twice at once: the first to finish wins, the other adopts it."""
    first = local_store.saver(KEY, RECORDS, {"writer": 1})
    second = local_store.saver(KEY, RECORDS, {"writer": 2})
    chunks = make_chunks(RECORDS, [5, 9])
    for chunk in chunks:
        first.send(chunk)
        second.send(chunk)
    assert local_store.status(KEY) == "writing"
    info_first = first.close()
    info_second = second.close()
    assert info_first.metadata == info_second.metadata == {"writer": 1}
    np.testing.assert_array_equal(local_store.load_array(KEY), concat(chunks, RECORDS))
    run_dir = tmp_path / "strax_data" / "run_1"
    assert sorted(os.listdir(run_dir)) == [KEY.dirname, "zarr.json"]
