"""Damaged data sets raise DataCorrupted naming the data set (and file); never wrong rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import KEY, RECORDS, ROWS_PER_CHUNK, make_chunks, save

from strax_storage import DataCorrupted, Store, open_store

NAME = "run_1/records-abc234def"


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Store, Path]:
    store = open_store(tmp_path, rows_per_chunk=ROWS_PER_CHUNK)
    save(store, make_chunks(RECORDS, [5, 0, 12, 3]))
    return store, tmp_path / KEY.path


def load_everything(store: Store) -> None:
    list(store.load(KEY))


def test_deleted_chunk_file(saved: tuple[Store, Path]) -> None:
    store, group = saved
    (group / "area" / "c" / "1").unlink()
    with pytest.raises(
        DataCorrupted,
        match=rf"data set {NAME} is corrupted: a chunk file is missing \(.*area/c/1\)",
    ):
        load_everything(store)
    with pytest.raises(DataCorrupted, match="area/c/1") as caught:
        store.load_array(KEY)
    assert caught.value.key == KEY  # for callers that act on it (mark failed, recompute)
    assert caught.value.where is not None and caught.value.where.endswith("area/c/1")
    # chunks before the damage still load; the damaged one does not
    chunks = store.load(KEY)
    assert len(next(chunks)) == 5


@pytest.mark.parametrize("field", ["time", "data", "area"])
def test_flipped_byte(saved: tuple[Store, Path], field: str) -> None:
    store, group = saved
    path = group / field / "c" / "2"
    if field == "data":
        path = path / "0"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(DataCorrupted, match=rf"{NAME} .*damaged: CRC32C mismatch"):
        store.load_array(KEY)
    with pytest.raises(DataCorrupted, match=str(path.relative_to(group.parent.parent))):
        load_everything(store)


def test_truncated_chunk_file(saved: tuple[Store, Path]) -> None:
    store, group = saved
    path = group / "time" / "c" / "0"
    path.write_bytes(path.read_bytes()[:3])
    with pytest.raises(DataCorrupted, match="truncated"):
        store.load_array(KEY)


def test_index_row_counts_that_lie(saved: tuple[Store, Path]) -> None:
    store, group = saved
    # edited with plain zarr, so the checksum is valid: only the numbers are wrong
    zarr.open_array(group / "_index" / "n_rows", mode="r+")[2] = 11
    with pytest.raises(
        DataCorrupted, match=rf"{NAME} is corrupted: the chunk index row counts sum to 19"
    ):
        store.load(KEY)


def test_index_rows_moved_between_chunks(saved: tuple[Store, Path]) -> None:
    store, group = saved
    # counts still sum up, but chunk 0 now claims a row that lies in chunk 2's time span
    index = zarr.open_group(group / "_index", mode="r+")
    index["n_rows"][:] = [6, 0, 11, 3]
    index["first_row"][:] = [0, 6, 6, 17]
    with pytest.raises(DataCorrupted, match="rows loaded for strax chunk 0"):
        load_everything(store)


def test_dtype_in_attributes_edited(saved: tuple[Store, Path]) -> None:
    store, group = saved
    meta_path = group / "zarr.json"
    doc = json.loads(meta_path.read_text())
    fields = doc["attributes"]["strax_decl"]["dtype"]["fields"]
    area = next(f for f in fields if f["name"] == "area")
    area["dtype"] = "<f8"
    doc["attributes"]["strax_decl"]["dtype"]["itemsize"] += 4
    meta_path.write_text(json.dumps(doc))
    with pytest.raises(DataCorrupted, match=rf"{NAME} is corrupted: array disagrees .* data_type"):
        store.load_array(KEY)


def test_row_count_in_attributes_edited(saved: tuple[Store, Path]) -> None:
    store, group = saved
    meta_path = group / "zarr.json"
    doc = json.loads(meta_path.read_text())
    doc["attributes"]["strax_decl"]["n_rows"] = 19
    meta_path.write_text(json.dumps(doc))
    with pytest.raises(DataCorrupted, match="shape is"):
        store.load(KEY)


def test_array_shape_edited(saved: tuple[Store, Path]) -> None:
    store, group = saved
    meta_path = group / "channel" / "zarr.json"
    doc = json.loads(meta_path.read_text())
    doc["shape"] = [19]
    meta_path.write_text(json.dumps(doc))
    with pytest.raises(DataCorrupted, match=r"channel/zarr.json"):
        store.load(KEY)


def test_array_metadata_deleted(saved: tuple[Store, Path]) -> None:
    store, group = saved
    (group / "dt" / "zarr.json").unlink()
    with pytest.raises(DataCorrupted, match=r"array metadata is missing \(.*dt/zarr.json\)"):
        store.load(KEY)


def test_unreadable_group_metadata_is_failed_not_complete(saved: tuple[Store, Path]) -> None:
    store, group = saved
    (group / "zarr.json").write_text("{not json")
    assert store.find(KEY) is None
    assert store.status(KEY) == "failed"
    assert "unreadable group metadata" in (store.info(KEY).exception or "")


def test_swapped_chunk_files(saved: tuple[Store, Path]) -> None:
    store, group = saved
    a, b = group / "time" / "c" / "0", group / "time" / "c" / "2"
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    with pytest.raises(DataCorrupted, match="outside it or unsorted"):
        store.load_array(KEY)


def test_corruption_in_memory_store_is_detected_too() -> None:
    store = open_store("memory://", rows_per_chunk=ROWS_PER_CHUNK)
    save(store, make_chunks(RECORDS, [10]))
    key = f"{KEY.path}/length/c/1"
    raw = bytearray(store.backend.read(key) or b"")
    raw[0] ^= 1
    store.backend.write(key, [bytes(raw)])
    with pytest.raises(DataCorrupted, match=rf"memory://.*/{KEY.path}/length/c/1"):
        store.load_array(KEY)


def test_intact_data_still_loads(saved: tuple[Store, Path]) -> None:
    store, _ = saved
    assert len(store.load_array(KEY)) == 20
    assert np.all(np.diff(store.load_array(KEY)["time"]) >= 0)
