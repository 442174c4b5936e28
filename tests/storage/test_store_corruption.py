"""Damaged data sets raise DataCorrupted naming the data set (and file); never wrong rows."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import KEY, RECORDS, ROWS_PER_CHUNK, make_chunks, save

from strax_storage import Chunk, DataCorrupted, DataKey, Store, open_store

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


def forget_index_checksums(group: Path) -> None:
    """Drop the index arrays' recorded CRC32Cs from the attributes, as a careful editor
    would: what is left to catch an edit is the index's consistency."""
    doc = json.loads((group / "zarr.json").read_text())
    del doc["attributes"]["strax_decl"]["digests"]["index_crc32c"]
    (group / "zarr.json").write_text(json.dumps(doc))


def test_an_index_edited_with_plain_zarr_does_not_belong(saved: tuple[Store, Path]) -> None:
    store, group = saved
    zarr.open_array(group / "_index" / "n_rows", mode="r+")[2] = 11
    with pytest.raises(DataCorrupted, match=r"does not belong here.*_index/n_rows/c/0"):
        store.load(KEY)


def test_index_row_counts_that_lie(saved: tuple[Store, Path]) -> None:
    store, group = saved
    # edited with plain zarr, so the checksum is valid: only the numbers are wrong
    zarr.open_array(group / "_index" / "n_rows", mode="r+")[2] = 11
    forget_index_checksums(group)
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
    forget_index_checksums(group)
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


@pytest.mark.parametrize("damage", ["unreadable", "missing"])
def test_damaged_group_metadata_of_a_published_data_set_is_corruption(
    saved: tuple[Store, Path], damage: str
) -> None:
    """Only finished writes are published: damaged metadata there is not a failed write."""
    store, group = saved
    doc = group / "zarr.json"
    if damage == "missing":
        doc.unlink()
    else:
        doc.write_text("{not json")
    with pytest.raises(DataCorrupted, match=rf"{damage}.*{re.escape(str(doc))}") as caught:
        store.find(KEY)
    assert caught.value.key == KEY
    with pytest.raises(DataCorrupted, match=re.escape(str(doc))):
        list(store.load(KEY))
    assert store.status(KEY) == "failed"
    info = store.info(KEY)
    assert (info.exception or "").startswith("DataCorrupted") and info.corrupted is not None
    [listed] = store.list()
    assert listed.corrupted is not None and listed.status == "failed"


def test_swapped_chunk_files(saved: tuple[Store, Path]) -> None:
    store, group = saved
    a, b = group / "time" / "c" / "0", group / "time" / "c" / "2"
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    with pytest.raises(DataCorrupted, match=rf"does not belong here.*{re.escape(str(a))}"):
        store.load_array(KEY)


BELONG = "a chunk file does not belong here"


def test_swapped_chunk_files_of_a_non_time_field_are_detected(saved: tuple[Store, Path]) -> None:
    """The time field looks right, so only the digests in the index can tell."""
    store, group = saved
    a, b = group / "area" / "c" / "0", group / "area" / "c" / "1"
    data_a, data_b = a.read_bytes(), b.read_bytes()
    assert data_a != data_b
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    with pytest.raises(DataCorrupted, match=rf"{BELONG}.*{re.escape(str(a))}"):
        store.load_array(KEY)
    with pytest.raises(DataCorrupted, match=BELONG):
        list(store.load(KEY))
    with pytest.raises(DataCorrupted, match=BELONG):
        list(store.load(KEY, time_range=(0, 10**6)))


def test_a_chunk_file_from_another_data_set_of_the_same_dtype_is_detected(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path, rows_per_chunk=ROWS_PER_CHUNK)
    other = DataKey(KEY.run_id, KEY.data_type, "otherhash2")
    chunks = make_chunks(RECORDS, [5, 0, 12, 3])
    save(store, chunks)
    changed = [Chunk(c.start, c.end, c.data.copy()) for c in chunks]
    for c in changed:
        c.data["channel"] += 1
    store.saver(other, RECORDS, {}).save_from(changed)
    mine = tmp_path / KEY.path / "channel" / "c" / "1"
    mine.write_bytes((tmp_path / other.path / "channel" / "c" / "1").read_bytes())
    np.testing.assert_array_equal(store.load_array(other)["channel"], concat_channel(changed))
    with pytest.raises(DataCorrupted, match=rf"{BELONG}.*{re.escape(str(mine))}") as caught:
        store.load_array(KEY)
    assert caught.value.key == KEY


def concat_channel(chunks: list[Chunk]) -> np.ndarray:
    return np.concatenate([c.data["channel"] for c in chunks])


def test_a_format_version_1_data_set_without_digests_still_loads(tmp_path: Path) -> None:
    # version 1 wrote every field with zstd and no digests: made here from a zstd write
    store, group = open_store(tmp_path, rows_per_chunk=ROWS_PER_CHUNK), tmp_path / KEY.path
    store.saver(KEY, RECORDS, {}, codec="zstd").save_from(make_chunks(RECORDS, [5, 0, 12, 3]))
    expected = store.load_array(KEY)
    shutil.rmtree(group / "_index" / "digests")
    doc = json.loads((group / "zarr.json").read_text())
    ours = doc["attributes"]["strax_decl"]
    ours["format_version"] = 1
    del ours["digests"]
    del ours["compressor"]["fields"]
    (group / "zarr.json").write_text(json.dumps(doc))
    np.testing.assert_array_equal(store.load_array(KEY), expected)


def test_a_swapped_digest_array_is_detected(tmp_path: Path) -> None:
    store = open_store(tmp_path, rows_per_chunk=ROWS_PER_CHUNK)
    other = DataKey(KEY.run_id, KEY.data_type, "otherhash2")
    save(store, make_chunks(RECORDS, [5, 12]))
    store.saver(other, RECORDS, {}).save_from(make_chunks(RECORDS, [5, 12], seed=3))
    mine = tmp_path / KEY.path / "_index" / "digests" / "c" / "0"
    mine.write_bytes((tmp_path / other.path / "_index" / "digests" / "c" / "0").read_bytes())
    with pytest.raises(DataCorrupted, match=rf"{BELONG}.*{re.escape(str(mine))}"):
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
