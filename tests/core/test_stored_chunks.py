"""Chunks are part of the data: a loaded input arrives in the chunks its producer made.

So a plugin whose rows depend on its input's chunking (legal: chunking is part of the lineage
through the source's options) stores the same rows under one lineage whether its input was
computed live or loaded from the store, and a pipeline resumed from the cache gives what one
clean run gives.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import strax_decl as sd


class Pulse(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    area: sd.f32


class ChunkSum(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    n_pulses: sd.i32
    area: sd.f64


class Options(sd.Options):
    n_chunks: int = sd.option(20, description="chunks")
    rows_per_chunk: int = sd.option(5, description="rows per chunk")


class SmallChunks(sd.Plugin):
    """Many small chunks of 10 ns pulses, 2000 ns apart."""

    version = "1"
    Options = Options

    class Outputs(sd.Outputs):
        pulses: Pulse

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        n = self.options.rows_per_chunk
        chunk_ns = 2000 * n
        for i in range(self.options.n_chunks):
            rows = Pulse.zeros(n)
            rows["time"] = i * chunk_ns + np.arange(n) * 2000
            rows["endtime"] = rows["time"] + 10
            rows["area"] = i * n + np.arange(n)
            yield sd.Chunk(i * chunk_ns, (i + 1) * chunk_ns, rows)


class PerChunkSums(sd.Plugin):
    """Deliberately chunk-dependent: one row per input chunk, spanning the chunk."""

    version = "1"

    class Inputs(sd.Inputs):
        pulses: Pulse

    class Outputs(sd.Outputs):
        chunk_sums: ChunkSum

    def compute(self, pulses: np.ndarray, start: int, end: int) -> np.ndarray:
        row = ChunkSum.zeros(1)
        row["time"], row["endtime"] = start, end
        row["n_pulses"], row["area"] = len(pulses), pulses["area"].sum()
        return row


PLUGINS = [SmallChunks, PerChunkSums]


@pytest.fixture(params=["serial", "threaded"])
def processor(request: pytest.FixtureRequest) -> str:
    return request.param


def bounds(chunks: list[sd.Chunk]) -> list[tuple[int, int, int]]:
    return [(c.start, c.end, len(c)) for c in chunks]


def test_loaded_chunks_are_the_chunks_the_plugin_made(processor, tmp_path):
    ctx = sd.Context(storage=str(tmp_path), plugins=PLUGINS, processor=processor)
    computed = list(ctx.iter_chunks("run_1", "pulses"))
    assert ctx.plan("run_1", "pulses").to_load == ["pulses"]
    loaded = list(ctx.iter_chunks("run_1", "pulses"))
    assert bounds(loaded) == bounds(computed) and len(loaded) == 20
    assert ctx.stores[0].info(ctx.key_for("run_1", "pulses")).n_chunks == 20


def test_a_chunk_dependent_plugin_gives_the_same_rows_from_a_loaded_input(processor, tmp_path):
    live = sd.Context(storage=None, plugins=PLUGINS, processor=processor)
    want = live.get_array("run_1", "chunk_sums")
    assert len(want) == 20
    ctx = sd.Context(storage=str(tmp_path), plugins=PLUGINS, processor=processor)
    ctx.make("run_1", "pulses")
    plan = ctx.plan("run_1", "chunk_sums")
    assert plan.to_load == ["pulses"] and plan.to_compute == ["chunk_sums"]
    np.testing.assert_array_equal(ctx.get_array("run_1", "chunk_sums"), want)
    assert ctx.plan("run_1", "chunk_sums").to_load == ["chunk_sums"]
    np.testing.assert_array_equal(ctx.get_array("run_1", "chunk_sums"), want)


def test_one_huge_chunk_is_stored_and_loaded_whole(processor, tmp_path):
    config = {"n_chunks": 1, "rows_per_chunk": 5000}
    ctx = sd.Context(storage=str(tmp_path), plugins=PLUGINS, config=config, processor=processor)
    ctx.make("run_1", "pulses")
    assert [len(c) for c in ctx.iter_chunks("run_1", "pulses")] == [5000]
    assert len(ctx.get_array("run_1", "chunk_sums")) == 1


class Crashing(SmallChunks):
    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        for i, chunk in enumerate(super().source(run_id)):
            if i == 12:
                raise RuntimeError("source crashed")
            yield chunk


def test_a_crash_midway_marks_the_data_set_failed(processor, tmp_path):
    ctx = sd.Context(storage=str(tmp_path), plugins=[Crashing], processor=processor)
    with pytest.raises(RuntimeError, match="source crashed"):
        ctx.make("run_1", "pulses")
    key = ctx.key_for("run_1", "pulses")
    assert ctx.stores[0].status(key) == "failed"
    assert not ctx.is_stored("run_1", "pulses")
