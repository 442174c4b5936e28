"""Loading data sets of many small strax chunks (several per Zarr chunk): the very chunks the
producer made come back (views of one decoded Zarr chunk), explicitly combined chunks keep the
laws, and rows from the wrong place are still caught, naming the strax chunk and the data set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zstandard
from conftest import KEY, PEAKS, RECORDS, ROWS_PER_CHUNK, concat, make_chunks, save

from strax_storage import Chunk, DataCorrupted, Store, open_store
from strax_storage.chunk import check_chunk
from strax_storage.codec import Codec, decode, encode
from strax_storage.layout import ATTRS_KEY, read_field_codecs
from strax_storage.loader import DataSetReader
from strax_storage.read_plan import first_bad, plan_read

# small chunks (several inside one 7-row Zarr chunk), empty ones, and ones spanning Zarr chunks
SIZES = [1, 2, 0, 3, 1, 0, 0, 2, 9, 1, 1, 15, 0, 2, 3, 1, 1, 1, 6, 0]


def reader(store: Store) -> DataSetReader:
    return DataSetReader(store.backend, KEY)


@pytest.mark.parametrize("dtype", [RECORDS, PEAKS])
def test_small_chunks_come_back_as_the_producer_made_them(store: Store, dtype: np.dtype) -> None:
    chunks = make_chunks(dtype, SIZES, seed=3)
    save(store, chunks, dtype)
    loaded = list(store.load(KEY))
    assert [(c.start, c.end) for c in loaded] == [(c.start, c.end) for c in chunks]
    for got, want in zip(loaded, chunks, strict=True):
        assert got.data.dtype == dtype
        np.testing.assert_array_equal(got.data, want.data)
        check_chunk(got, where="loaded")
    np.testing.assert_array_equal(store.load_array(KEY), concat(chunks, dtype))
    # views of one decoded Zarr chunk, but of disjoint rows: writing one changes no other
    loaded[0].data["time"][:] = -1
    np.testing.assert_array_equal(loaded[1].data, chunks[1].data)


@pytest.mark.parametrize("combine_rows", [1, 3, ROWS_PER_CHUNK, 50])
def test_combined_chunks_are_runs_of_stored_chunks(store: Store, combine_rows: int) -> None:
    chunks = make_chunks(RECORDS, SIZES, seed=5)
    save(store, chunks)
    combined = list(reader(store).chunks(combine_rows=combine_rows))
    boundaries = {c.start for c in chunks} | {chunks[-1].end}
    assert combined[0].start == chunks[0].start and combined[-1].end == chunks[-1].end
    previous = None
    for c in combined:
        assert c.start in boundaries and c.end in boundaries  # the producer's, some of them
        check_chunk(c, where="combined", previous_end=previous)
        previous = c.end
    assert len(combined) <= len(chunks)
    np.testing.assert_array_equal(concat(combined, RECORDS), concat(chunks, RECORDS))


def test_combining_everything_gives_one_chunk(store: Store) -> None:
    chunks = make_chunks(RECORDS, SIZES, seed=6)
    save(store, chunks)
    (only,) = reader(store).chunks(combine_rows=10**9)
    assert (only.start, only.end) == (chunks[0].start, chunks[-1].end)
    np.testing.assert_array_equal(only.data, concat(chunks, RECORDS))
    with pytest.raises(ValueError, match="combine_rows"):
        list(reader(store).chunks(combine_rows=0))


def test_an_empty_data_set_and_one_of_empty_chunks(store: Store) -> None:
    chunks = make_chunks(RECORDS, [0, 0, 0])
    save(store, chunks)
    assert [(c.start, c.end, len(c)) for c in store.load(KEY)] == [
        (c.start, c.end, 0) for c in chunks
    ]
    assert [len(c) for c in reader(store).chunks(combine_rows=5)] == [0]


def _attrs(group: Path) -> tuple[dict, dict]:
    doc = json.loads((group / "zarr.json").read_text())
    return doc, doc["attributes"][ATTRS_KEY]


def _time_codec(ours: dict) -> Codec:
    codecs = read_field_codecs(ours["compressor"], ours["format_version"], ours["fields"])
    return codecs[ours["fields"].index("time")]


def _forge_times(group: Path, z: int, times: np.ndarray) -> None:
    """Rewrite the ``time`` Zarr chunk ``z`` with valid bytes and a recorded checksum that
    matches: damage no checksum can see (as a writer with a bug could leave)."""
    doc, ours = _attrs(group)
    frame, crc = encode(np.ascontiguousarray(times, "<i8"), _time_codec(ours))
    (group / "time" / "c" / str(z)).write_bytes(frame + crc)
    digests_file = group / "_index" / "digests" / "c" / "0"
    blob = digests_file.read_bytes()
    n_fields = len(ours["fields"])
    raw = decode(blob, len(zstandard.ZstdDecompressor().decompress(blob[:-4])))
    digests = np.frombuffer(raw, "<i8").reshape(-1, n_fields).copy()
    digests[z, ours["fields"].index("time")] = int.from_bytes(crc, "little")
    frame, crc = encode(digests.reshape(-1), ours["compressor"]["zstd_level"])
    digests_file.write_bytes(frame + crc)
    ours["digests"]["index_crc32c"]["digests"] = int.from_bytes(crc, "little")
    (group / "zarr.json").write_text(json.dumps(doc))


def _time_chunk(group: Path, z: int) -> np.ndarray:
    _, ours = _attrs(group)
    blob = (group / "time" / "c" / str(z)).read_bytes()
    raw = decode(blob, ours["rows_per_chunk"] * 8, _time_codec(ours))
    return np.frombuffer(raw, "<i8").copy()


@pytest.mark.parametrize("spanning", [False, True])
def test_rows_outside_their_small_chunk_are_caught(tmp_path: Path, spanning: bool) -> None:
    """Rows 7-13 (Zarr chunk 1) hold strax chunks 3 (rows 6-8, spanning Zarr chunks 0 and 1)
    and 4 (rows 9-10, inside Zarr chunk 1): a row moved out of one of them is caught when it
    is reached, the chunks before it are handed out, and the message names it."""
    store = open_store(tmp_path, rows_per_chunk=ROWS_PER_CHUNK)
    chunks = make_chunks(RECORDS, [2, 3, 1, 3, 2, 4], seed=8)
    save(store, chunks)
    group = tmp_path / KEY.path
    times = _time_chunk(group, 1)
    bad = 3 if spanning else 4
    row = 7 if spanning else 9  # a row of that chunk inside Zarr chunk 1
    times[row - 7] = chunks[bad].end + 5  # after its chunk's end (and out of order)
    _forge_times(group, 1, times)
    loaded = store.load(KEY)
    before = [next(loaded) for _ in range(bad)]
    assert [(c.start, c.end) for c in before] == [(c.start, c.end) for c in chunks[:bad]]
    message = rf"data set {KEY.run_id}/records-\w+ is corrupted: rows loaded for strax chunk {bad} "
    with pytest.raises(DataCorrupted, match=message):
        next(loaded)
    with pytest.raises(DataCorrupted, match=f"strax chunk {bad} "):
        store.load_array(KEY)
    with pytest.raises(DataCorrupted, match=f"strax chunk {bad} "):
        list(reader(store).chunks(combine_rows=100))


def test_first_bad_finds_each_kind_of_misplaced_row() -> None:
    # three chunks [0, 10) [10, 20) [20, 30), 2 + 0 + 3 rows
    starts, ends = np.array([0, 10, 20]), np.array([10, 20, 30])
    first_rows, counts = np.array([0, 2, 2]), np.array([2, 0, 3])

    def bad(time: list[int]) -> int:
        return first_bad(np.array(time), 0, first_rows, counts, starts, ends)

    assert bad([1, 5, 20, 21, 29]) == -1
    assert bad([5, 1, 20, 21, 29]) == 0  # unsorted inside chunk 0
    assert bad([1, 5, 22, 21, 29]) == 2  # unsorted inside chunk 2
    assert bad([1, 10, 20, 21, 29]) == 0  # chunk 0's last row at its end
    assert bad([1, 5, 19, 21, 29]) == 2  # chunk 2's first row before its start
    assert bad([1, 5, 20, 21, 30]) == 2  # chunk 2's last row at its end
    # a part of the rows (from data set row 2 on): chunk 2 alone
    assert (
        first_bad(np.array([20, 21, 29]), 2, first_rows[2:], counts[2:], starts[2:], ends[2:]) == -1
    )


def test_plan_read_marks_views_and_spanning_chunks() -> None:
    counts = np.array([2, 3, 0, 1, 9, 1])  # rows 0-1, 2-4, -, 5, 6-14, 15 (Zarr chunks of 7)
    first_rows = np.concatenate([[0], np.cumsum(counts)[:-1]])
    starts = np.arange(6) * 10
    plan = plan_read(starts, starts + 10, first_rows, counts, 7)
    assert plan.inside == [0, 0, -1, 0, -1, 2]
    assert plan.z_need == [1, 1, 0, 1, 3, 3]
    assert (plan.seg_first, plan.seg_stop) == ([0, 0, 15], [6, 0, 16])
    assert [k for k, _, _ in plan.spans(1)] == [4]
    combined = plan_read(starts, starts + 10, first_rows, counts, 7, combine_rows=7)
    assert combined.chunk_first.tolist() == [0, 5, 6]  # first rows 0-6 | 15
    assert (combined.starts, combined.ends, combined.counts) == ([0, 50], [50, 60], [15, 1])
    assert combined.inside == [-1, 2]  # the first spans Zarr chunks 0-2: assembled


def test_many_small_chunks_round_trip(tmp_path: Path) -> None:
    """Thousands of one-to-three-row chunks in a few big Zarr chunks (the live-data shape)."""
    store = open_store(tmp_path, rows_per_chunk=1000)
    rng = np.random.default_rng(1)
    chunks = make_chunks(PEAKS, rng.integers(0, 4, 3000).tolist(), width=20, seed=2)
    save(store, chunks, PEAKS)
    loaded = list(store.load(KEY))
    assert len(loaded) == len(chunks)
    assert all(
        a.start == b.start and a.end == b.end and np.array_equal(a.data, b.data)
        for a, b in zip(loaded, chunks, strict=True)
    )
    assert isinstance(loaded[0], Chunk)
