"""The storage pool: 2 threads by default; ``STORAGE_THREADS=0`` works inline, one core only."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import KEY, RECORDS, ROWS_PER_CHUNK, concat, make_chunks

import strax_storage.pool
from strax_storage import open_store


@pytest.fixture
def fresh_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The pool is process-wide and sized on first use: start from none, restore after."""
    monkeypatch.setattr(strax_storage.pool, "_pool", None)
    monkeypatch.setattr(strax_storage.pool, "_pool_threads", None)
    monkeypatch.setattr(strax_storage.pool, "_default_threads", strax_storage.pool.DEFAULT_THREADS)
    yield monkeypatch
    created = strax_storage.pool._pool
    if created is not None:
        created.shutdown(wait=True)


def _storage_threads() -> set[int]:
    return {t.ident or 0 for t in threading.enumerate() if t.name.startswith("storage")}


def test_zero_threads_writes_and_reads_inline_with_identical_bytes(
    fresh_pool: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    chunks = make_chunks(RECORDS, [5, 9, 0, 14, 2])
    threaded = open_store(tmp_path / "threaded", rows_per_chunk=ROWS_PER_CHUNK)
    threaded.saver(KEY, RECORDS, {}).save_from(iter(chunks))

    fresh_pool.setenv("STORAGE_THREADS", "0")
    fresh_pool.setattr(strax_storage.pool, "_pool", None)
    before = _storage_threads()
    inline = open_store(tmp_path / "inline", rows_per_chunk=ROWS_PER_CHUNK)
    inline.saver(KEY, RECORDS, {}).save_from(iter(chunks))
    loaded = inline.load_array(KEY)

    assert isinstance(strax_storage.pool.pool(), strax_storage.pool.InlineExecutor)
    assert _storage_threads() == before, "no storage thread was started"
    np.testing.assert_array_equal(loaded, concat(chunks, RECORDS))
    for name in RECORDS.names or ():
        a, b = _chunk_files(tmp_path / "threaded", name), _chunk_files(tmp_path / "inline", name)
        assert len(a) == len(b) > 0
        assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def _chunk_files(root: Path, field: str) -> list[Path]:
    (group,) = root.rglob(f"records-*/{field}")
    return sorted(p for p in (group / "c").rglob("*") if p.is_file())


def test_inline_executor_delivers_errors_through_the_future() -> None:
    def fails() -> None:
        raise OSError(28, "No space left on device")

    future = strax_storage.pool.InlineExecutor().submit(fails)
    assert future.done()
    with pytest.raises(OSError, match="No space left"):
        future.result()
    assert strax_storage.pool.InlineExecutor().submit(int, "7").result() == 7


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("3", 3), ("-1", 2), ("two", 2)])
def test_thread_count_from_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: int
) -> None:
    monkeypatch.setenv("STORAGE_THREADS", value)
    assert strax_storage.pool.n_threads() == expected


def test_a_lower_default_applies_unless_the_environment_says_otherwise(
    fresh_pool: pytest.MonkeyPatch,
) -> None:
    fresh_pool.delenv("STORAGE_THREADS", raising=False)
    threaded = strax_storage.pool.pool()
    assert isinstance(threaded, ThreadPoolExecutor) and threaded._max_workers == 2
    running = threaded.submit(threading.Event().wait, 0.2)

    strax_storage.pool.set_default_threads(0)  # what a one-thread Dask worker does
    assert isinstance(strax_storage.pool.pool(), strax_storage.pool.InlineExecutor)
    assert running.result() is False, "the replaced pool finished the task it was given"
    assert threaded.submit(int, "3").result() == 3, "and still serves whoever holds it"

    fresh_pool.setenv("STORAGE_THREADS", "1")  # the environment wins
    again = strax_storage.pool.pool()
    assert isinstance(again, ThreadPoolExecutor) and again._max_workers == 1
    assert strax_storage.pool.pool() is again  # kept while the size stays the same
    with pytest.raises(ValueError, match="must be >= 0"):
        strax_storage.pool.set_default_threads(-1)
