"""Property: any sequence of valid chunks round-trips exactly, whole and by time range."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strax_storage import Chunk, DataKey, endtimes, open_store

DTYPE = np.dtype([("time", "<i8"), ("length", "<i4"), ("dt", "<i2"), ("v", "<f4", (2,))])
KEY = DataKey("run_p", "things", "abc")


@st.composite
def chunk_sequences(draw: st.DrawFn) -> list[Chunk]:
    """Touching chunks; rows sorted, positive duration, wholly inside their chunk."""
    t = draw(st.integers(-(10**12), 10**12))
    chunks = []
    for _ in range(draw(st.integers(0, 6))):
        width = draw(st.integers(0, 60))
        n = draw(st.integers(0, width // 2)) if width else 0
        rows = np.zeros(n, DTYPE)
        if n:
            times = sorted(draw(st.lists(st.integers(t, t + width - 1), min_size=n, max_size=n)))
            rows["time"] = times
            rows["dt"] = draw(st.sampled_from([1, 2]))
            max_len = [(t + width - x) // int(rows["dt"][0]) for x in times]
            rows["length"] = [draw(st.integers(1, m)) if m >= 1 else 1 for m in max_len]
            values = st.lists(st.floats(-1e6, 1e6, width=32), min_size=2 * n, max_size=2 * n)
            rows["v"] = np.asarray(draw(values), dtype="<f4").reshape(n, 2)
            ok = endtimes(rows) <= t + width
            rows = rows[ok]
        chunks.append(Chunk(t, t + width, rows))
        t += width
    return chunks


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=chunk_sequences(),
    rows_per_chunk=st.integers(1, 9),
    where=st.sampled_from(["memory", "local"]),
    data=st.data(),
)
def test_any_valid_chunk_sequence_round_trips(
    tmp_path_factory,  # type: ignore[no-untyped-def]
    chunks: list[Chunk],
    rows_per_chunk: int,
    where: str,
    data: st.DataObject,
) -> None:
    location = "memory://" if where == "memory" else tmp_path_factory.mktemp("prop")
    store = open_store(location, rows_per_chunk=rows_per_chunk)
    store.saver(KEY, DTYPE, {"n": len(chunks)}).save_from(chunks)

    loaded = list(store.load(KEY))
    assert [(c.start, c.end) for c in loaded] == [(c.start, c.end) for c in chunks]
    for got, sent in zip(loaded, chunks, strict=True):
        assert got.data.dtype == DTYPE
        assert got.data.tobytes() == sent.data.tobytes()

    everything = np.concatenate([c.data for c in chunks]) if chunks else np.zeros(0, DTYPE)
    assert store.load_array(KEY).tobytes() == everything.tobytes()

    if chunks:
        lo, hi = chunks[0].start, chunks[-1].end
        t0 = data.draw(st.integers(lo - 5, hi + 5))
        t1 = data.draw(st.integers(t0, hi + 5))
        expected = everything[(everything["time"] >= t0) & (endtimes(everything) <= t1)]
        assert store.load_array(KEY, time_range=(t0, t1)).tobytes() == expected.tobytes()
