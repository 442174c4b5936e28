"""``get_array`` of a stored target that no plugin reads gets it in runs of stored chunks (one
hand-off per run instead of per tiny chunk: ``Request.concatenated``); everyone else (the
chunks of ``iter_chunks``, a plugin reading a loaded input) still gets the producer's chunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.testing import CHUNK_DEPENDENT_PLUGINS

N_CHUNKS = 300
CONFIG = {"n_chunks": N_CHUNKS, "rows_per_chunk": 2}


@pytest.fixture
def ctx(tmp_path: Path) -> sd.Context:
    ctx = sd.Context(tmp_path / "store", plugins=CHUNK_DEPENDENT_PLUGINS, config=CONFIG)
    ctx.make("run_1", ["records", "peaks"])
    return ctx


def test_get_array_of_a_stored_target_comes_in_few_chunks(ctx: sd.Context) -> None:
    chunks = list(ctx.iter_chunks("run_1", "records"))
    assert len(chunks) == N_CHUNKS  # iter_chunks: the producer's chunks
    assert ctx.last_stats.components["load records"].chunks == N_CHUNKS
    rows = ctx.get_array("run_1", "records")
    np.testing.assert_array_equal(rows, np.concatenate([c.data for c in chunks]))
    assert ctx.last_stats.components["load records"].chunks < N_CHUNKS // 10
    assert ctx.last_stats.components["load records"].rows == len(rows)


def test_a_plugin_reading_a_loaded_input_sees_the_producers_chunks(ctx: sd.Context) -> None:
    # one row per records chunk: only right if the loader hands over the source's chunks
    assert ctx.plan("run_1", "chunk_peaks").steps["records"].action == "load"
    rows = ctx.get_array("run_1", "chunk_peaks")
    assert len(rows) == N_CHUNKS
    assert ctx.last_stats.components["load records"].chunks == N_CHUNKS
    starts = [c.start for c in ctx.iter_chunks("run_1", "records")]
    np.testing.assert_array_equal(rows["time"], starts)


def test_selections_time_ranges_and_merged_targets_give_the_same_rows(ctx: sd.Context) -> None:
    chunks = list(ctx.iter_chunks("run_1", "records"))
    everything = np.concatenate([c.data for c in chunks])
    t0, t1 = chunks[10].start + 150, chunks[200].end - 50
    ranged = ctx.get_array("run_1", "records", time_range=(t0, t1))
    inside = (everything["time"] >= t0) & (everything["time"] + 10 * everything["length"] <= t1)
    np.testing.assert_array_equal(ranged, everything[inside])
    selected = ctx.get_array("run_1", "records", selection="channel == 1", keep_columns=["time"])
    np.testing.assert_array_equal(selected["time"], everything["time"][everything["channel"] == 1])
    ctx.make("run_1", ["peak_basics"])
    merged = ctx.get_array("run_1", ["peaks", "peak_basics"])  # same kind: merged, not combined
    assert len(merged) == len(ctx.get_array("run_1", "peaks"))
    np.testing.assert_array_equal(merged["time"], ctx.get_array("run_1", "peak_basics")["time"])
