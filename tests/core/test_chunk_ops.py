"""Splitting, concatenating, merging and time-aligning chunks."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strax_decl.chunk import (
    CannotSplit,
    Chunk,
    concatenate,
    merge,
    safe_split_point,
    split,
)
from strax_decl.sync import aligned

DT = np.dtype([("time", "<i8"), ("endtime", "<i8"), ("value", "<f8")])


def rows(intervals, dtype=DT):
    out = np.zeros(len(intervals), dtype=dtype)
    for i, (t, e) in enumerate(intervals):
        out[i]["time"], out[i]["endtime"] = t, e
        if "value" in (dtype.names or ()):
            out[i]["value"] = t
    return out


def test_split_at_safe_point_and_refuse_to_cut_a_row():
    c = Chunk(0, 100, rows([(0, 10), (5, 30), (40, 50)]))
    assert safe_split_point(c, 35) == 35
    assert safe_split_point(c, 20) == 0  # rows 0 and 1 overlap up to 30
    a, b = split(c, 35)
    assert (a.start, a.end, len(a), b.start, b.end, len(b)) == (0, 35, 2, 35, 100, 1)
    with pytest.raises(CannotSplit):
        split(c, 20)


def test_concatenate_requires_touching_chunks():
    a = Chunk(0, 10, rows([(0, 5)]))
    b = Chunk(10, 20, rows([(12, 15)]))
    assert len(concatenate([a, b])) == 2
    with pytest.raises(ValueError, match=r"do not touch"):
        concatenate([a, Chunk(11, 20, rows([]))])


def test_merge_unions_fields_of_same_kind():
    a = Chunk(0, 10, rows([(0, 5), (5, 7)]))
    other = np.dtype([("time", "<i8"), ("endtime", "<i8"), ("width", "<i8")])
    b_rows = rows([(0, 5), (5, 7)], other)
    b_rows["width"] = [5, 2]
    m = merge([a, Chunk(0, 10, b_rows)])
    assert m.data.dtype.names == ("time", "endtime", "value", "width")
    assert list(m.data["width"]) == [5, 2]
    with pytest.raises(ValueError, match=r"same interval"):
        merge([a, Chunk(0, 11, b_rows)])


@st.composite
def chunked_intervals(draw):
    """Random non-overlapping-in-chunk intervals with a random chunking of [0, end)."""
    n = draw(st.integers(0, 30))
    starts = sorted(draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n)))
    data = [(s, s + draw(st.integers(1, 20))) for s in starts]
    end = max([e for _, e in data], default=0) + draw(st.integers(0, 50))
    # boundaries: only where no row straddles
    cuts = sorted(set(draw(st.lists(st.integers(0, end), max_size=6))))
    safe = [c for c in cuts if all(not (s < c < e) for s, e in data) and 0 < c < end]
    bounds = [0, *safe, end]
    arr = rows(data)
    chunks = []
    for lo, hi in itertools.pairwise(bounds):
        sel = arr[(arr["time"] >= lo) & (arr["time"] < hi)] if hi > lo else arr[:0]
        chunks.append(Chunk(lo, hi, sel))
    return arr, chunks


@settings(max_examples=60, deadline=None)
@given(chunked_intervals(), chunked_intervals())
def test_aligned_steps_cover_everything_once(a, b):
    (arr_a, chunks_a), (arr_b, chunks_b) = a, b
    steps = list(aligned({"a": iter(chunks_a), "b": iter(chunks_b)}, {"a": DT, "b": DT}))
    for step in steps:
        assert step["a"].start == step["b"].start and step["a"].end == step["b"].end
    for name, arr in (("a", arr_a), ("b", arr_b)):
        got = np.concatenate([s[name].data for s in steps]) if steps else arr[:0]
        np.testing.assert_array_equal(got, arr)
    for before, after in itertools.pairwise(steps):
        assert before["a"].end == after["a"].start


@pytest.mark.parametrize("bounds", [(0, 2**63), (-(2**63) - 1, 0), (2**64, 2**64 + 1)])
def test_chunk_bounds_outside_int64_are_refused_naming_the_bound(bounds):
    from strax_decl.chunk import ChunkLawViolation

    with pytest.raises(ChunkLawViolation, match=r"outside the int64 range"):
        Chunk(*bounds, rows([]))
    assert Chunk(-(2**63), 2**63 - 1, rows([])).end == 2**63 - 1


def test_a_source_yielding_such_a_chunk_fails_naming_plugin_run_and_chunk():
    import strax_decl as sd

    class Pulse(sd.Schema):
        time: sd.i64
        endtime: sd.i64

    class FarFuture(sd.Plugin):
        version = "1"

        class Outputs(sd.Outputs):
            pulses: Pulse

        def source(self, run_id):
            yield sd.Chunk(0, 10, Pulse.zeros(0))
            yield sd.Chunk(10, 2**63 + 5, Pulse.zeros(0))

    for processor in ("serial", "threaded"):
        ctx = sd.Context(storage=None, plugins=[FarFuture], processor=processor)
        with pytest.raises(sd.ChunkLawViolation, match=r"chunk end 9223372036854775813") as e:
            ctx.get_array("r1", "pulses")
        assert "plugin FarFuture failed on run r1, after chunk [0, 10)" in e.value.__notes__
