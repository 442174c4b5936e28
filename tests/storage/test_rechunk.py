"""The rechunker: combine small chunks, split huge ones at gaps, never break a chunk law."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strax_storage import Chunk, ChunkLawViolation, check_chunk, endtimes
from strax_storage.rechunk import Rechunker, rechunk, split_times

DT = np.dtype([("time", "<i8"), ("endtime", "<i8"), ("value", "<f8")])  # 24 bytes a row
MB_PER_ROW = DT.itemsize / 1e6


def mb(n_rows: float) -> float:
    """A target of ``n_rows`` rows (half a row less, so float rounding cannot tip it over)."""
    return (n_rows - 0.5) * MB_PER_ROW


def rows(intervals: list[tuple[int, int]]) -> np.ndarray:
    out = np.zeros(len(intervals), DT)
    for i, (t, e) in enumerate(intervals):
        out[i] = (t, e, float(t))
    return out


def spaced_chunks(rows_per_chunk: list[int], spacing: int = 100, length: int = 10) -> list[Chunk]:
    """Touching chunks of evenly spaced rows, ``spacing`` ns apart, ``length`` ns long."""
    chunks, t = [], 0
    for n in rows_per_chunk:
        data = rows([(t + k * spacing, t + k * spacing + length) for k in range(n)])
        end = t + max(n, 1) * spacing
        chunks.append(Chunk(t, end, data))
        t = end
    return chunks


def assert_same_stream(out: list[Chunk], original: list[Chunk]) -> None:
    """Same rows, same span, touching chunks, every chunk lawful."""
    for i, c in enumerate(out):
        check_chunk(c, where=f"output chunk {i}", previous_end=out[i - 1].end if i else None)
    assert out[0].start == original[0].start and out[-1].end == original[-1].end
    np.testing.assert_array_equal(
        np.concatenate([c.data for c in out]), np.concatenate([c.data for c in original])
    )


def test_small_chunks_are_combined_up_to_the_target():
    original = spaced_chunks([10] * 20)  # 240 bytes each
    out = list(rechunk(original, target_mb=mb(30)))
    assert_same_stream(out, original)
    assert [len(c) for c in out] == [30] * 6 + [20]  # the rest comes out at the end


def test_a_chunk_big_enough_on_its_own_passes_through_without_a_copy():
    original = spaced_chunks([40, 50])
    out = list(rechunk(original, target_mb=mb(30)))
    assert len(out) == 2
    assert all(o is c for o, c in zip(out, original, strict=True))


def test_huge_chunks_are_split_into_pieces_of_about_the_target_without_copies():
    original = spaced_chunks([1000])
    out = list(rechunk(original, target_mb=mb(100)))
    assert_same_stream(out, original)
    assert [len(c) for c in out] == [100] * 10
    assert all(np.shares_memory(c.data, original[0].data) for c in out)
    # cuts fall in the middle of the gaps between rows: rows end at +10, next starts at +100
    assert [c.start for c in out[1:4]] == [10_000 - 45, 20_000 - 45, 30_000 - 45]


def test_splits_only_at_gaps_of_at_least_min_gap():
    # clusters of 5 touching rows (no gap inside), clusters 2000 ns apart
    intervals = [(c * 2000 + k * 10, c * 2000 + (k + 1) * 10) for c in range(40) for k in range(5)]
    original = [Chunk(0, 80_000, rows(intervals))]
    out = list(rechunk(original, target_mb=mb(12), min_gap=1000))
    assert_same_stream(out, original)
    assert len(out) > 5
    assert all(len(c) % 5 == 0 for c in out), "a cluster was cut"
    # with no gap wide enough, a huge chunk stays whole
    assert len(list(rechunk(original, target_mb=mb(12), min_gap=5000))) == 1


def test_overlapping_rows_are_never_cut():
    # a long row covering many short ones: no cut may fall under it
    intervals = sorted([(0, 5000)] + [(k * 100, k * 100 + 10) for k in range(1, 200)])
    original = [Chunk(0, 20_000, rows(intervals))]
    out = list(rechunk(original, target_mb=mb(20)))
    assert_same_stream(out, original)
    assert all(c.start >= 5000 for c in out[1:])


def test_empty_chunks_and_empty_streams():
    empty = [Chunk(0, 10, rows([])), Chunk(10, 10, rows([])), Chunk(10, 50, rows([]))]
    out = list(rechunk(empty, target_mb=1))
    assert [(c.start, c.end, len(c)) for c in out] == [(0, 50, 0)]
    assert list(rechunk([], target_mb=1)) == []


def test_split_only_mode_for_loaders_keeps_small_chunks_as_they_are():
    original = spaced_chunks([3, 1000, 2])
    out = list(rechunk(original, target_mb=mb(100), combine=False))
    assert_same_stream(out, original)
    assert [len(c) for c in out] == [3] + [100] * 10 + [2]


def test_chunks_that_do_not_touch_are_refused_naming_the_stream():
    a, b = spaced_chunks([2, 2])
    late = Chunk(b.start + 1, b.end + 1, b.data[:0])
    with pytest.raises(ChunkLawViolation, match=r"saving peaks: chunk .* does not touch"):
        list(rechunk([a, late], target_mb=1, where="saving peaks"))


def test_bad_targets_are_refused():
    with pytest.raises(ValueError, match="positive"):
        Rechunker(0)
    with pytest.raises(ValueError, match="min_gap"):
        Rechunker(1, min_gap=-1)


def test_split_times_cuts_only_chunks_of_twice_the_target_into_pieces_of_at_least_it():
    (chunk,) = spaced_chunks([100])
    assert split_times(chunk, target_bytes=chunk.nbytes / 2 + 1) == []
    assert split_times(chunk, target_bytes=chunk.nbytes / 4) == [2455, 4955, 7455]
    # 100 rows at a target of 34 rows: 34 + 66, never a piece below the target
    assert split_times(chunk, target_bytes=34 * DT.itemsize) == [3355]


def test_storage_stays_independent_of_strax_decl():
    code = (
        "import sys, strax_storage.rechunk, strax_storage.chunk; "
        "assert not [m for m in sys.modules if m.startswith('strax_decl')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@st.composite
def chunked_stream(draw: st.DrawFn) -> list[Chunk]:
    """Random (possibly overlapping) rows, cut into a random chunking at safe times."""
    n = draw(st.integers(0, 120))
    starts = sorted(draw(st.lists(st.integers(0, 20_000), min_size=n, max_size=n)))
    lengths = draw(st.lists(st.integers(1, 3000), min_size=n, max_size=n))
    data = rows([(s, s + d) for s, d in zip(starts, lengths, strict=True)])
    end = int(endtimes(data).max(initial=0)) + draw(st.integers(1, 500))
    wanted = sorted(set(draw(st.lists(st.integers(1, end - 1), max_size=12)))) if end > 1 else []
    ends = endtimes(data)
    safe = [t for t in wanted if not ((data["time"] < t) & (ends > t)).any()]
    bounds = [0, *safe, end]
    return [
        Chunk(lo, hi, data[(data["time"] >= lo) & (data["time"] < hi)])
        for lo, hi in itertools.pairwise(bounds)
    ]


@settings(max_examples=150, deadline=None)
@given(
    chunked_stream(),
    st.integers(1, 40),
    st.sampled_from([0, 1, 100, 1000]),
    st.booleans(),
)
def test_rechunked_stream_has_the_same_rows_and_keeps_the_laws(
    original: list[Chunk], target_rows: int, min_gap: int, combine: bool
):
    out = list(rechunk(original, mb(target_rows), combine=combine, min_gap=min_gap))
    assert_same_stream(out, original)
    target = mb(target_rows) * 1e6
    if combine:
        assert all(c.nbytes >= target for c in out[:-1])
    for c, after in itertools.pairwise(out):
        if c.end in {o.end for o in original}:
            continue  # an original boundary, kept
        # a new cut: it lies in a gap of at least min_gap between the rows on either side
        before = np.concatenate([x.data for x in out if x.end <= c.end])
        later = np.concatenate([x.data for x in out if x.start >= after.start])
        assert len(before) and len(later), "new cuts are made only between rows"
        assert int(later["time"].min()) - int(endtimes(before).max()) >= min_gap
