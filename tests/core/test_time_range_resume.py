"""Partly stored data sets: an early stop keeps a resumable ``partial``, and ``time_range``
requests on it read what is final and compute only the missing intervals.

Real stores in tmp_path, the real threaded pipeline, row by row against a clean run.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.cli import main
from strax_decl.testing import RecordSums, ToyRecords
from strax_storage import DataNotFound, open_store

N_CHUNKS = 30


def context(root: Path, rows: int, zarr_rows: int) -> sd.Context:
    return sd.Context(
        open_store(root, rows_per_chunk=zarr_rows),
        plugins=[ToyRecords, RecordSums],
        config={"n_chunks": N_CHUNKS, "rows_per_chunk": rows},
    )


def in_range(rows: np.ndarray, tr: tuple[int, int]) -> np.ndarray:
    """The rows of a clean run a ``time_range`` request gets: those fully inside it."""
    return rows[(rows["time"] >= tr[0]) & (rows["endtime"] <= tr[1])]


def stop_early(ctx: sd.Context, after: int) -> None:
    """Read ``after + 1`` chunks of record_sums, then ``break`` (an early stop)."""
    for i, _ in enumerate(ctx.iter_chunks("r1", "record_sums", progress=False)):
        if i == after:
            break


def dot_entries(root: Path) -> list[str]:
    return sorted(n for n in os.listdir(root / "r1") if n.startswith("."))


@pytest.mark.parametrize(("rows", "zarr_rows", "after"), [(50, 64, 4), (37, 7, 9), (120, 1000, 2)])
def test_time_ranges_on_a_partial_compute_only_what_is_missing(
    tmp_path: Path, rows: int, zarr_rows: int, after: int
) -> None:
    clean = context(tmp_path / "clean", rows, zarr_rows)
    full = clean.get_array("r1", "record_sums", progress=False)
    clean_bounds = [(c.start, c.end) for c in clean.iter_chunks("r1", "record_sums")]
    run_end = clean_bounds[-1][1]
    root = tmp_path / "s"
    ctx = context(root, rows, zarr_rows)
    ctx.make("r1", "records", progress=False)
    n_records = len(ctx.get_array("r1", "records"))
    store, key = ctx.stores[0], ctx.key_for("r1", "record_sums")

    stop_early(ctx, after)  # an early stop of a resumable data set keeps its prefix
    assert store.status(key) == "partial"
    first = store.progress(key)
    assert first is not None and first.resumable and first.watermark is not None
    assert first.n_chunks >= after  # what the saver had received
    assert store.claims.holder(key) is None
    assert ctx.plan("r1", "record_sums").to_resume == ["record_sums"]

    # 1. inside the final prefix: read from it, nothing computed, nothing claimed or written
    wm = first.watermark
    inside = (wm // 3 + 17, wm - 1)
    got = ctx.get_array("r1", "record_sums", time_range=inside, progress=False)
    assert got.tobytes() == in_range(full, inside).tobytes() and len(got)
    assert ctx.last_stats is not None and ctx.last_stats.components == {}
    again = store.progress(key)
    assert again is not None and again.location == first.location
    assert again.prefix.n_records == first.prefix.n_records and store.status(key) == "partial"

    # 2. beyond it: resumed from the watermark (inputs read from there), stopped once the
    # range is covered; the longer prefix stays partial, for the next request
    beyond = (wm - 2500, wm + run_end // 5)
    got = ctx.get_array("r1", "record_sums", time_range=beyond, progress=False)
    assert got.tobytes() == in_range(full, beyond).tobytes() and len(got)
    loaded = ctx.last_stats.components["load records"].rows
    assert 0 < loaded < n_records  # only from the watermark on
    second = store.progress(key)
    assert store.status(key) == "partial" and second is not None and second.resumable
    assert second.watermark is not None and second.watermark >= beyond[1]

    # 3. a range starting after the watermark: the gap is computed too (the prefix stays one
    # contiguous run of chunks), rows outside the range are not returned
    assert second.watermark < run_end * 3 // 4
    gap = (second.watermark + run_end // 10, run_end * 3 // 4)
    got = ctx.get_array("r1", "record_sums", time_range=gap, progress=False)
    assert got.tobytes() == in_range(full, gap).tobytes() and len(got)
    third = store.progress(key)
    assert third is not None and third.watermark is not None and third.watermark >= gap[1]
    prefix = list(store.load(key, allow_incomplete=True))
    assert [(c.start, c.end) for c in prefix] == clean_bounds[: len(prefix)]

    # 4. to the end of the run: the stream ends, so the data set is complete
    tail = (run_end // 2, run_end + 1000)
    got = ctx.get_array("r1", "record_sums", time_range=tail, progress=False)
    assert got.tobytes() == in_range(full, tail).tobytes()
    assert store.status(key) == "complete"
    assert ctx.get_array("r1", "record_sums").tobytes() == full.tobytes()
    assert [(c.start, c.end) for c in ctx.iter_chunks("r1", "record_sums")] == clean_bounds
    assert dot_entries(root) == []


def test_a_range_on_a_non_resumable_partial_follows_todays_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the plugin cannot resume (here it declares ``resumable = False``), a range is
    computed from the start of the run and what did not finish is discarded, as before."""
    ctx = context(tmp_path / "s", 50, 64)
    ctx.make("r1", "records", progress=False)
    clean = context(tmp_path / "clean", 50, 64).get_array("r1", "record_sums")
    monkeypatch.setattr(RecordSums, "resumable", False)
    key = ctx.key_for("r1", "record_sums")
    stop_early(ctx, 5)
    assert ctx.stores[0].status(key) == "absent"  # discarded: it could not be resumed
    tr = (20_000, 70_000)
    got = ctx.get_array("r1", "record_sums", time_range=tr, progress=False)
    assert got.tobytes() == in_range(clean, tr).tobytes()
    assert ctx.last_stats is not None
    assert ctx.last_stats.components["load records"].chunks > 0
    assert ctx.stores[0].status(key) == "absent"
    assert dot_entries(tmp_path / "s") == []


def test_a_partial_in_ls_info_and_rm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``ls`` and ``info`` show a partial as partial and resumable, never failed; ``rm``
    removes it (e.g. once its lineage is no longer asked for)."""
    root = tmp_path / "s"
    ctx = context(root, 50, 64)
    ctx.make("r1", "records", progress=False)
    stop_early(ctx, 6)
    assert main(["ls", "-s", str(root)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "record_sums" in x)
    assert "partial" in line and "stopped, resumable" in line and "failed" not in out
    assert main(["ls", "-s", str(root), "--status", "partial"]) == 0
    assert "record_sums" in capsys.readouterr().out
    assert main(["info", "-s", str(root), "r1", "record_sums"]) == 0
    out = capsys.readouterr().out
    assert "status     partial" in out and "stopped, resumable" in out
    assert main(["rm", "-s", str(root), "r1", "record_sums"]) == 0
    capsys.readouterr()
    assert ctx.stores[0].status(ctx.key_for("r1", "record_sums")) == "absent"
    assert dot_entries(root) == []


def test_to_dask_allow_incomplete_reads_the_final_prefix(tmp_path: Path) -> None:
    """``to_dask(..., allow_incomplete=True)`` over a partial: the rows of its final prefix
    when called (sub-array fields too), the same after the data set was completed meanwhile;
    without it, DataNotFound as before."""
    pytest.importorskip("dask.array")
    root = tmp_path / "s"
    ctx = context(root, 37, 7)
    ctx.make("r1", "records", progress=False)
    stop_early(ctx, 11)
    prefix = ctx.get_array("r1", "record_sums", allow_incomplete=True)
    assert 0 < len(prefix) < N_CHUNKS * 37
    with pytest.raises(DataNotFound):
        ctx.to_dask("r1", "record_sums")
    arrays = ctx.to_dask("r1", "record_sums", allow_incomplete=True)
    assert set(arrays) == set(prefix.dtype.names or ())
    assert arrays["time"].numblocks[0] > 1  # one block per ~Zarr chunk of rows
    ctx.make("r1", "record_sums", progress=False)  # completed (resumed) meanwhile
    for name, array in arrays.items():
        assert np.array_equal(array.compute(scheduler="threads"), prefix[name]), name

    # a sub-array field, from a prefix written through the store's own saver
    records = ctx.get_array("r1", "records")
    other = context(tmp_path / "t", 37, 7)
    rkey = other.key_for("r1", "records")
    saver = other.stores[0].saver(rkey, records.dtype, {})
    for chunk in list(ctx.iter_chunks("r1", "records"))[:5]:
        saver.send(chunk)
    assert saver.suspend()
    got = other.to_dask("r1", "records", fields=["data", "time"], allow_incomplete=True)
    assert np.array_equal(got["data"].compute(), records["data"][: 5 * 37])
    assert got["data"].shape[1:] == records["data"].shape[1:]
