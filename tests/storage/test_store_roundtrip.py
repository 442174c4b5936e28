"""What goes in comes out: rows, chunk boundaries, dtype, metadata; both saver modes agree."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import KEY, PEAKS, RECORDS, ROWS_PER_CHUNK, concat, make_chunks, save

from strax_storage import Chunk, DataKey, Store, open_store


def test_round_trip_with_subarray_field_and_empty_chunks(store: Store) -> None:
    chunks = make_chunks(RECORDS, [3, 0, 10, 0, 0, 16, 1, 0])
    info = store.saver(KEY, RECORDS, {"plugin": "RecordSource"}).save_from(chunks)

    assert info.status == "complete"
    assert (info.n_rows, info.n_chunks) == (30, 8)
    assert (info.start, info.end) == (chunks[0].start, chunks[-1].end)
    assert info.dtype == RECORDS
    assert info.nbytes == 30 * RECORDS.itemsize
    assert info.stored_bytes is not None and info.stored_bytes > 0
    assert info.metadata == {"plugin": "RecordSource"}

    loaded = list(store.load(KEY))
    assert [(c.start, c.end, len(c)) for c in loaded] == [(c.start, c.end, len(c)) for c in chunks]
    for got, sent in zip(loaded, chunks, strict=True):
        assert got.data.dtype == RECORDS
        np.testing.assert_array_equal(got.data, sent.data)
    np.testing.assert_array_equal(store.load_array(KEY), concat(chunks, RECORDS))


def test_iterate_and_send_close_modes_write_identical_stores(tmp_path) -> None:  # type: ignore[no-untyped-def]
    chunks = make_chunks(RECORDS, [5, 9, 0, 14, 2])
    a = open_store(tmp_path / "a", rows_per_chunk=ROWS_PER_CHUNK)
    b = open_store(tmp_path / "b", rows_per_chunk=ROWS_PER_CHUNK)

    a.saver(KEY, RECORDS, {"x": 1}).save_from(iter(chunks))
    with b.saver(KEY, RECORDS, {"x": 1}) as saver:
        for chunk in chunks:
            saver.send(chunk)

    ga, gb = a.zarr_group(KEY), b.zarr_group(KEY)
    assert sorted(ga.array_keys()) == sorted(gb.array_keys()) == sorted(RECORDS.names or ())
    for name in RECORDS.names or ():
        np.testing.assert_array_equal(ga[name][:], gb[name][:])
    for name in ("start", "end", "first_row", "n_rows"):
        np.testing.assert_array_equal(ga["_index"][name][:], gb["_index"][name][:])
    # identical bytes on disk, except for the timestamps in the group attributes (and the
    # completion records, whose names hold an inode: status_records)
    files_a = sorted(
        p.relative_to(tmp_path / "a")
        for p in (tmp_path / "a").rglob("*")
        if p.is_file() and p.parent.name != ".complete"
    )
    files_b = sorted(
        p.relative_to(tmp_path / "b")
        for p in (tmp_path / "b").rglob("*")
        if p.is_file() and p.parent.name != ".complete"
    )
    assert files_a == files_b
    for rel in files_a:
        if rel.parts[-1] == "zarr.json" and len(rel.parts) == 3:
            continue  # the data set group: created/finished timestamps differ
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_close_returns_info_and_is_idempotent(store: Store) -> None:
    saver = store.saver(KEY, RECORDS, {})
    saver.send(make_chunks(RECORDS, [4])[0])
    assert (saver.n_rows, saver.n_chunks) == (4, 1)
    first = saver.close()
    assert saver.close() == first
    assert store.find(KEY) == first


def test_empty_data_set(store: Store) -> None:
    info = store.saver(KEY, RECORDS, {}).save_from([])
    assert (info.status, info.n_rows, info.n_chunks, info.start, info.end) == (
        "complete",
        0,
        0,
        None,
        None,
    )
    assert list(store.load(KEY)) == []
    arr = store.load_array(KEY)
    assert len(arr) == 0 and arr.dtype == RECORDS


def test_only_empty_chunks(store: Store) -> None:
    chunks = [Chunk(0, 10, np.zeros(0, RECORDS)), Chunk(10, 10, np.zeros(0, RECORDS))]
    save(store, chunks)
    assert [(c.start, c.end, len(c)) for c in store.load(KEY)] == [(0, 10, 0), (10, 10, 0)]


def test_endtime_dtype_and_rows_per_chunk_multiple(store: Store) -> None:
    # 21 rows = exactly three Zarr chunks of 7: no padded chunk at the end
    chunks = make_chunks(PEAKS, [7, 7, 7])
    save(store, chunks, dtype=PEAKS)
    np.testing.assert_array_equal(store.load_array(KEY), concat(chunks, PEAKS))


@pytest.mark.parametrize(
    "dtype",
    [
        # strax-style titles hold field descriptions
        np.dtype([(("start time [ns]", "time"), "<i8"), (("end", "endtime"), "<i8"), ("x", "<f8")]),
        # big-endian fields come back big-endian
        np.dtype([("time", ">i8"), ("endtime", ">i8"), ("x", ">f4", (2, 3)), ("flag", "?")]),
        # padding and explicit offsets
        np.dtype(
            {
                "names": ["time", "endtime", "q"],
                "formats": ["<i8", "<i8", "u1"],
                "offsets": [0, 8, 20],
                "itemsize": 24,
            }
        ),
        np.dtype(
            [("time", "<i8"), ("endtime", "<i8"), ("c", "<c16"), ("u", "<u8"), ("h", "<f2")],
            align=True,
        ),
    ],
)
def test_exotic_dtypes_round_trip_exactly(store: Store, dtype: np.dtype) -> None:
    chunks = make_chunks(dtype, [4, 11])
    save(store, chunks, dtype=dtype)
    info = store.find(KEY)
    assert info is not None and info.dtype == dtype
    arr = store.load_array(KEY)
    assert arr.dtype == dtype
    np.testing.assert_array_equal(arr, concat(chunks, dtype))
    for name in dtype.names or ():
        np.testing.assert_array_equal(arr[name], concat(chunks, dtype)[name])


def test_metadata_and_field_docs_are_stored(store: Store) -> None:
    metadata = {
        "plugin": "PeakFinder",
        "version": "0.1.0",
        "lineage": {"peaks": ["PeakFinder", "0.1.0", {"gap": 300}]},
        "fields": {"area": {"description": "integral", "unit": "PE"}},
    }
    store.saver(KEY, RECORDS, metadata).save_from(make_chunks(RECORDS, [3]))
    info = store.info(KEY)
    assert info.metadata == metadata
    ours = info.attrs["strax_decl"]
    assert ours["complete"] is True and ours["status"] == "complete"
    assert (
        ours["n_rows"] == 3 and ours["package"] == "strax_storage" and ours["format_version"] == 3
    )
    assert ours["compressor"]["zstd_level"] == 1
    group = store.zarr_group(KEY)
    assert group["area"].attrs["unit"] == "PE"
    assert group["area"].attrs["description"] == "integral"
    assert dict(group["time"].attrs) == {}


def test_overwrite_replaces_complete_data(store: Store) -> None:
    save(store, make_chunks(RECORDS, [3]))
    new = make_chunks(RECORDS, [5, 5], seed=9)
    store.saver(KEY, RECORDS, {"v": 2}, overwrite=True).save_from(new)
    np.testing.assert_array_equal(store.load_array(KEY), concat(new, RECORDS))
    assert store.info(KEY).metadata == {"v": 2}


def test_many_data_sets_and_runs_coexist(store: Store) -> None:
    keys = [DataKey(run, dt, "abc") for run in ("r1", "r2") for dt in ("records", "other")]
    for i, key in enumerate(keys):
        save(store, make_chunks(RECORDS, [i + 1], seed=i), key=key)
    for i, key in enumerate(keys):
        assert len(store.load_array(key)) == i + 1


def test_default_rows_per_chunk_is_chosen_from_row_size(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = open_store(tmp_path)
    save(store, make_chunks(RECORDS, [3]))
    rows = store.info(KEY).attrs["strax_decl"]["rows_per_chunk"]
    assert rows >= 1024 and rows & (rows - 1) == 0
    np.testing.assert_array_equal(store.load_array(KEY), concat(make_chunks(RECORDS, [3]), RECORDS))


def test_large_chunks_straddling_zarr_chunks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Many Zarr chunks per strax chunk and strax chunks that start mid Zarr chunk."""
    store = open_store(tmp_path, rows_per_chunk=1000)
    chunks = make_chunks(RECORDS, [2500, 1, 0, 3999, 1000, 777], width=20_000)
    save(store, chunks)
    for got, sent in zip(store.load(KEY), chunks, strict=True):
        np.testing.assert_array_equal(got.data, sent.data)
    np.testing.assert_array_equal(store.load_array(KEY), concat(chunks, RECORDS))
