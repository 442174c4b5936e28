"""Chunks in the store: a saver keeps the chunks it is sent, ``Store.load(max_chunk_mb=)``
splits big ones for a reader that asks.

Also what one load costs: given the ``info`` the caller already has, a load reads no group
metadata again; ``find`` and ``list`` list a run folder at most once.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from strax_storage import (
    Chunk,
    DataKey,
    DataNotFound,
    Saver,
    Store,
    check_chunk,
    open_store,
)
from strax_storage.backend import LocalBackend

DT = np.dtype([("time", "<i8"), ("endtime", "<i8"), ("value", "<f8")])  # 24 bytes a row
KEY = DataKey("run_1", "pulses", "abc234def")
ROW_MB = DT.itemsize / 1e6
TARGET_MB = 29.5 * ROW_MB  # at least 30 rows a stored chunk (half a row less, for rounding)


def pulses(n_chunks: int, rows_per_chunk: int, cluster: int = 1) -> list[Chunk]:
    """Chunks of 10 ns pulses; ``cluster`` pulses touch, clusters are 2000 ns apart."""
    chunk_ns = 2000 * rows_per_chunk
    out = []
    for i in range(n_chunks):
        rows = np.zeros(rows_per_chunk, DT)
        k = np.arange(rows_per_chunk)
        rows["time"] = i * chunk_ns + (k // cluster) * 2000 * cluster + (k % cluster) * 10
        rows["endtime"] = rows["time"] + 10
        rows["value"] = i * rows_per_chunk + k
        out.append(Chunk(i * chunk_ns, (i + 1) * chunk_ns, rows))
    return out


def save(store: Store, chunks: Sequence[Chunk]) -> None:
    store.saver(KEY, DT, {"plugin": "Test"}).save_from(chunks)


def lengths(chunks: Sequence[Chunk]) -> list[int]:
    return [len(c) for c in chunks]


def assert_lawful(chunks: Sequence[Chunk], original: Sequence[Chunk]) -> None:
    for i, c in enumerate(chunks):
        check_chunk(c, where=f"chunk {i}", previous_end=chunks[i - 1].end if i else None)
    assert chunks[0].start == original[0].start and chunks[-1].end == original[-1].end
    np.testing.assert_array_equal(
        np.concatenate([c.data for c in chunks]), np.concatenate([c.data for c in original])
    )


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return open_store(tmp_path / "data", rows_per_chunk=7)
    return open_store("memory://", rows_per_chunk=7)


# --------------------------------------------------------------------------- saver


def test_the_saver_stores_every_chunk_as_sent_however_small(store):
    original = pulses(20, 5)
    save(store, original)
    assert store.info(KEY).n_chunks == 20
    loaded = list(store.load(KEY))
    assert [(c.start, c.end) for c in loaded] == [(c.start, c.end) for c in original]
    assert_lawful(loaded, original)


def test_a_huge_chunk_is_stored_whole_and_loads_whole(store):
    save(store, pulses(1, 100))
    assert lengths(list(store.load(KEY))) == [100]  # rows span 15 Zarr chunks of 7 rows


def test_send_close_mode_keeps_the_chunks_too(store):
    original = pulses(7, 10)
    with store.saver(KEY, DT, {}) as saver:
        for chunk in original:
            saver.send(chunk)
        assert saver.n_rows == 70 and saver.n_chunks == 7
    assert lengths(list(store.load(KEY))) == [10] * 7


def test_empty_chunks_keep_their_place(store):
    a, b, c = pulses(3, 5)
    empty = Chunk(b.start, b.end, b.data[:0])
    save(store, [a, empty, c])
    loaded = list(store.load(KEY))
    assert lengths(loaded) == [5, 0, 5] and (loaded[1].start, loaded[1].end) == (b.start, b.end)


def test_a_chunk_that_does_not_touch_fails_the_saver(store):
    a, _, c = pulses(3, 5)
    saver = store.saver(KEY, DT, {})
    saver.send(a)
    with pytest.raises(ValueError, match="does not touch"):
        saver.send(c)
    assert saver.closed and store.status(KEY) == "failed"


def test_the_saver_takes_no_rechunking_target():
    assert "target_mb" not in inspect.signature(Store.saver).parameters
    assert list(inspect.signature(Saver.send).parameters) == ["self", "chunk"]


# --------------------------------------------------------------------------- loading


def test_load_splits_big_stored_chunks_but_never_combines(store):
    original = pulses(1, 100)
    save(store, original)
    assert lengths(list(store.load(KEY))) == [100]
    loaded = list(store.load(KEY, max_chunk_mb=TARGET_MB))
    assert lengths(loaded) == [30, 30, 40]
    assert_lawful(loaded, original)
    small = open_store("memory://")
    small.saver(KEY, DT, {}).save_from(pulses(20, 5))
    assert lengths(list(small.load(KEY, max_chunk_mb=TARGET_MB))) == [5] * 20


def test_load_splits_with_a_time_range(store):
    save(store, pulses(1, 100))
    loaded = list(store.load(KEY, time_range=(0, 80 * 2000), max_chunk_mb=TARGET_MB))
    assert lengths(loaded) == [30, 50]
    assert loaded[-1].end == 80 * 2000


def test_a_bad_max_chunk_size_is_refused_at_once(store):
    save(store, pulses(2, 5))
    with pytest.raises(ValueError, match="target size must be positive"):
        store.load(KEY, max_chunk_mb=0)


def test_load_with_the_info_of_find_or_list(store):
    original = pulses(20, 5)
    save(store, original)
    found = store.find(KEY)
    assert found is not None
    listed = store.list(run_id="run_1")
    assert [i.key for i in listed] == [KEY]
    for info in (found, listed[0]):
        assert_lawful(list(store.load(KEY, info=info)), original)
        np.testing.assert_array_equal(
            store.load_array(KEY, info=info), np.concatenate([c.data for c in original])
        )


def test_load_refuses_an_info_of_another_key_or_not_complete(store):
    save(store, pulses(2, 5))
    info = store.find(KEY)
    assert info is not None
    with pytest.raises(ValueError, match="not of"):
        store.load(DataKey("run_1", "pulses", "xyz234abc"), info=info)
    store.mark_failed(KEY, "broken")
    failed = store.info(KEY)
    with pytest.raises(DataNotFound):
        store.load(KEY, info=failed)


# --------------------------------------------------------------------------- backend calls


class CountingBackend(LocalBackend):
    """A local backend that counts what it is asked (real files underneath)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: Counter[str] = Counter()
        self.listed: Counter[str] = Counter()

    def read(self, key: str, limit: int | None = None) -> bytes | None:
        self.reads[key] += 1
        return super().read(key, limit)

    def children(self, prefix: str) -> list[str]:
        self.listed[prefix] += 1
        return super().children(prefix)

    def reset(self) -> None:
        self.reads.clear()
        self.listed.clear()


@pytest.fixture
def counted(tmp_path: Path) -> tuple[Store, CountingBackend]:
    backend = CountingBackend(tmp_path / "data")
    store = Store(backend, rows_per_chunk=7)
    save(store, pulses(20, 5))
    other = DataKey("run_1", "peaks", "abc234def")
    store.saver(other, DT, {}).save_from(pulses(2, 5))
    backend.reset()
    return store, backend


def test_find_reads_the_group_metadata_once_and_lists_nothing(counted):
    store, backend = counted
    assert store.find(KEY) is not None
    assert backend.reads[f"{KEY.path}/zarr.json"] == 1
    assert not backend.listed


def test_list_of_a_run_lists_its_folder_once(counted):
    store, backend = counted
    assert len(store.list(run_id="run_1")) == 2
    assert backend.listed == Counter({"run_1": 1})
    assert backend.reads[f"{KEY.path}/zarr.json"] == 1


def test_load_with_info_reads_no_group_metadata_and_the_index_once(counted):
    store, backend = counted
    info = store.find(KEY)
    backend.reset()
    assert lengths(list(store.load(KEY, info=info))) == [5] * 20
    assert backend.reads[f"{KEY.path}/zarr.json"] == 0
    index = {k: n for k, n in backend.reads.items() if "/_index/" in k}
    assert index and set(index.values()) == {1}
    assert not backend.listed
    backend.reset()
    store.load_array(KEY, info=info)
    assert backend.reads[f"{KEY.path}/zarr.json"] == 0


def test_load_without_info_reads_the_group_metadata_once(counted):
    store, backend = counted
    list(store.load(KEY))
    assert backend.reads[f"{KEY.path}/zarr.json"] == 1
