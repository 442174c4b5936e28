"""Time-range loads equal the numpy selection and read only the Zarr chunks that overlap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import KEY, PEAKS, RECORDS, ROWS_PER_CHUNK, concat, make_chunks, save

from strax_storage import Chunk, DataCorrupted, Store, endtimes, open_store


def numpy_selection(rows: np.ndarray, t0: int, t1: int) -> np.ndarray:
    return rows[(rows["time"] >= t0) & (endtimes(rows) <= t1)]


@pytest.mark.parametrize("dtype", [RECORDS, PEAKS])
@pytest.mark.parametrize(
    ("t0", "t1"),
    [
        (1000, 1600),  # everything
        (1150, 1420),  # inside several chunks
        (1200, 1300),  # exactly one chunk
        (1210, 1211),  # tiny
        (1300, 1300),  # empty range
        (0, 1000),  # before the data
        (1600, 5000),  # after the data
        (1450, 1550),
    ],
)
def test_time_range_equals_numpy_selection(store: Store, dtype: np.dtype, t0: int, t1: int) -> None:
    chunks = make_chunks(dtype, [10, 0, 30, 3, 25, 12], width=100, t0=1000)
    save(store, chunks, dtype=dtype)
    expected = numpy_selection(concat(chunks, dtype), t0, t1)

    np.testing.assert_array_equal(store.load_array(KEY, time_range=(t0, t1)), expected)

    loaded = list(store.load(KEY, time_range=(t0, t1)))
    got = np.concatenate([c.data for c in loaded]) if loaded else np.zeros(0, dtype)
    np.testing.assert_array_equal(got, expected)
    # chunks overlapping the range, trimmed to it, still touching
    overlapping = [c for c in chunks if c.start < t1 and c.end > t0]
    assert [(c.start, c.end) for c in loaded] == [
        (max(c.start, t0), min(c.end, t1)) for c in overlapping
    ]
    for c in loaded:
        assert np.all(c.data["time"] >= c.start) and np.all(endtimes(c.data) <= c.end)


def test_rows_straddling_the_range_edge_are_excluded(store: Store) -> None:
    rows = np.zeros(3, RECORDS)
    rows["time"] = [10, 20, 30]
    rows["dt"] = 1
    rows["length"] = [5, 20, 3]  # row 1 ends at 40, after row 2 (ends at 33)
    save(store, [Chunk(0, 100, rows)])
    got = store.load_array(KEY, time_range=(10, 34))
    np.testing.assert_array_equal(got["time"], [10, 30])  # non-contiguous selection


def test_only_overlapping_zarr_chunks_are_read(tmp_path: Path) -> None:
    """Delete every chunk file outside the range: the range still loads, a full load fails."""
    store = open_store(tmp_path, rows_per_chunk=ROWS_PER_CHUNK)
    chunks = make_chunks(RECORDS, [14, 14, 14, 14], width=100, t0=0)  # 8 Zarr chunks of 7 rows
    save(store, chunks)
    group = tmp_path / KEY.path
    # rows 14..27 (strax chunk 1) are Zarr chunks 2 and 3; drop all others
    for field in RECORDS.names or ():
        for z in (0, 1, 4, 5, 6, 7):
            target = group / field / "c" / str(z)
            if target.is_dir():
                for p in target.rglob("*"):
                    p.unlink()
                target.rmdir()
            else:
                target.unlink()

    got = store.load_array(KEY, time_range=(100, 200))
    np.testing.assert_array_equal(got, numpy_selection(concat(chunks, RECORDS), 100, 200))
    with pytest.raises(DataCorrupted, match="missing"):
        store.load_array(KEY)


def test_time_range_reads_other_fields_only_for_selected_rows(tmp_path: Path) -> None:
    """Only the time fields of candidate rows are read before the selection is known."""
    store = open_store(tmp_path, rows_per_chunk=ROWS_PER_CHUNK)
    chunks = make_chunks(RECORDS, [28], width=1000, t0=0)  # Zarr chunks 0..3 in one strax chunk
    save(store, chunks)
    rows = chunks[0].data
    # select rows 21.. (last Zarr chunk): t0 at row 21's time
    t0 = int(rows["time"][21])
    for field in ("channel", "area", "data"):
        for z in (0, 1, 2):
            target = tmp_path / KEY.path / field / "c" / str(z)
            if target.is_dir():
                (target / "0").unlink()
            else:
                target.unlink()
    got = store.load_array(KEY, time_range=(t0, 1000))
    np.testing.assert_array_equal(got, numpy_selection(rows, t0, 1000))
    assert len(got) == 7
