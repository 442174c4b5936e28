"""Shared helpers for the storage tests: stores on disk and in memory, and valid chunks.

Stores use a tiny ``rows_per_chunk`` so that strax chunks straddle Zarr chunks and every
boundary case (partial first/last Zarr chunk, strax chunk inside one Zarr chunk, empty strax
chunk) happens with a handful of rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from strax_storage import Chunk, DataKey, Store, open_store

ROWS_PER_CHUNK = 7

# time/length/dt rows with a waveform sub-array, like strax records
RECORDS = np.dtype(
    [
        ("time", "<i8"),
        ("length", "<i4"),
        ("dt", "<i2"),
        ("channel", "<i2"),
        ("area", "<f4"),
        ("data", "<i2", (5,)),
    ]
)
# time/endtime rows, like strax peaks
PEAKS = np.dtype([("time", "<i8"), ("endtime", "<i8"), ("area", "<f4"), ("data", "<f4", (3,))])

KEY = DataKey("run_1", "records", "abc234def")


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """The same tests on a local directory (rename into place) and in memory (in place)."""
    if request.param == "local":
        return open_store(tmp_path / "strax_data", rows_per_chunk=ROWS_PER_CHUNK)
    return open_store("memory://", rows_per_chunk=ROWS_PER_CHUNK)


@pytest.fixture
def local_store(tmp_path: Path) -> Store:
    return open_store(tmp_path / "strax_data", rows_per_chunk=ROWS_PER_CHUNK)


def make_rows(dtype: np.dtype, n: int, start: int, end: int, seed: int = 0) -> np.ndarray:
    """``n`` valid rows (sorted, positive duration, inside ``[start, end)``) of ``dtype``."""
    rng = np.random.default_rng(seed)
    rows = np.zeros(n, dtype)
    if n == 0:
        return rows
    assert end - start >= 2 * n, "need room for n rows of duration >= 1"
    times = np.sort(rng.choice(np.arange(start, end - 1, 2), size=n, replace=False))
    room = np.minimum(np.append(times[1:], end), end) - times  # up to the next row (or end)
    duration = np.maximum(1, rng.integers(1, 10, n) % room)
    duration = np.minimum(duration, end - times)
    rows["time"] = times
    names = dtype.names or ()
    if "endtime" in names:
        rows["endtime"] = times + duration
    else:
        rows["dt"] = 1
        rows["length"] = duration
    for name in names:
        if name not in ("time", "endtime", "dt", "length"):
            rows[name] = rng.integers(-100, 100, size=rows[name].shape)
    return rows


def make_chunks(
    dtype: np.dtype, sizes: Sequence[int], width: int = 100, t0: int = 1000, seed: int = 0
) -> list[Chunk]:
    """Touching chunks of ``width`` ns with the given row counts (0 allowed)."""
    chunks = []
    for i, n in enumerate(sizes):
        start = t0 + i * width
        chunks.append(
            Chunk(start, start + width, make_rows(dtype, n, start, start + width, seed + i))
        )
    return chunks


def concat(chunks: Sequence[Chunk], dtype: np.dtype) -> np.ndarray:
    return np.concatenate([c.data for c in chunks]) if chunks else np.zeros(0, dtype)


def save(
    store: Store, chunks: Sequence[Chunk], dtype: np.dtype = RECORDS, key: DataKey = KEY
) -> None:
    store.saver(key, dtype, {"plugin": "Test", "version": "0.1"}).save_from(chunks)


def iter_chunks(chunks: Sequence[Chunk]) -> Iterator[Chunk]:
    yield from chunks
