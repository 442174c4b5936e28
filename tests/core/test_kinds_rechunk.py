"""Rechunking on save and on load, as declared per output with ``sd.output(...)``."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import strax_decl as sd
from strax_storage.rechunk import SPLIT_GAP_NS


class Pulse(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    area: sd.f32


ROW_MB = Pulse.dtype.itemsize / 1e6  # 20 bytes a row
TARGET_MB = 29.5 * ROW_MB  # chunks of at least 30 rows (half a row below, against rounding)


def pulses(n_chunks: int, rows_per_chunk: int, cluster: int = 1) -> Iterator[sd.Chunk]:
    """Chunks of 10 ns pulses; ``cluster`` pulses touch, clusters are 2000 ns apart."""
    chunk_ns = 2000 * rows_per_chunk
    for i in range(n_chunks):
        rows = Pulse.zeros(rows_per_chunk)
        k = np.arange(rows_per_chunk)
        rows["time"] = i * chunk_ns + (k // cluster) * 2000 * cluster + (k % cluster) * 10
        rows["endtime"] = rows["time"] + 10
        rows["area"] = i * rows_per_chunk + k
        yield sd.Chunk(i * chunk_ns, (i + 1) * chunk_ns, rows)


class Options(sd.Options):
    n_chunks: int = sd.option(20, description="chunks")
    rows_per_chunk: int = sd.option(5, description="rows per chunk")
    cluster: int = sd.option(1, description="touching pulses per cluster")


class SmallChunks(sd.Plugin):
    """Many small chunks; stored in chunks of about 30 rows."""

    version = "1"
    Options = Options

    class Outputs(sd.Outputs):
        pulses: Pulse = sd.output(chunk_target_mb=TARGET_MB)

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        o = self.options
        return pulses(o.n_chunks, o.rows_per_chunk, o.cluster)


class KeepChunks(SmallChunks):
    """The same, but rechunking is forbidden."""

    class Outputs(sd.Outputs):
        pulses: Pulse = sd.output(chunk_target_mb=TARGET_MB, rechunk=False)


class BigTarget(SmallChunks):
    """Same name, version and options as SmallChunks (so the same data set), big target."""

    class Outputs(sd.Outputs):
        pulses: Pulse = sd.output(chunk_target_mb=1000 * ROW_MB)


BigTarget.name = "SmallChunks"


@pytest.fixture(params=["serial", "threaded"])
def processor(request: pytest.FixtureRequest) -> str:
    return request.param


def stored_chunks(ctx: sd.Context) -> int:
    return ctx.stores[0].info(ctx.key_for("run_1", "pulses")).n_chunks


def expected() -> np.ndarray:
    return np.concatenate([c.data for c in pulses(20, 5)])


def test_saver_combines_small_chunks_toward_the_target(processor, tmp_path):
    ctx = sd.Context(storage=str(tmp_path), plugins=[SmallChunks], processor=processor)
    computed = list(ctx.iter_chunks("run_1", "pulses"))
    assert len(computed) == 20  # the caller still sees the plugin's chunks
    assert stored_chunks(ctx) == 4  # 100 rows in chunks of at least 30 rows: 30, 30, 30, 10
    loaded = list(ctx.iter_chunks("run_1", "pulses"))
    assert [len(c) for c in loaded] == [30, 30, 30, 10]
    np.testing.assert_array_equal(np.concatenate([c.data for c in loaded]), expected())
    assert loaded[0].start == 0 and loaded[-1].end == 20 * 5 * 2000


def test_saver_splits_a_huge_chunk_at_gaps(processor, tmp_path):
    ctx = sd.Context(
        storage=str(tmp_path),
        plugins=[SmallChunks],
        config={"n_chunks": 1, "rows_per_chunk": 100},
        processor=processor,
    )
    ctx.make("run_1", "pulses")
    assert stored_chunks(ctx) == 3  # pieces of at least 30 rows: 30, 30, 40
    loaded = list(ctx.iter_chunks("run_1", "pulses"))
    assert [len(c) for c in loaded] == [30, 30, 40]


def test_saver_splits_only_between_clusters(processor, tmp_path):
    # 100 pulses in clusters of 25 touching pulses: the only gaps >= SPLIT_GAP_NS are
    # between clusters, so pieces are whole clusters
    assert SPLIT_GAP_NS <= 2000 * 25 - 10 * 25
    ctx = sd.Context(
        storage=str(tmp_path),
        plugins=[SmallChunks],
        config={"n_chunks": 1, "rows_per_chunk": 100, "cluster": 25},
        processor=processor,
    )
    ctx.make("run_1", "pulses")
    assert [len(c) for c in ctx.iter_chunks("run_1", "pulses")] == [50, 50]


def test_a_plugin_can_forbid_rechunking(processor, tmp_path):
    ctx = sd.Context(storage=str(tmp_path), plugins=[KeepChunks], processor=processor)
    ctx.make("run_1", "pulses")
    assert stored_chunks(ctx) == 20
    assert [len(c) for c in ctx.iter_chunks("run_1", "pulses")] == [5] * 20


def test_loader_splits_chunks_bigger_than_the_output_target(processor, tmp_path):
    config = {"n_chunks": 1, "rows_per_chunk": 100}
    big = sd.Context(storage=str(tmp_path), plugins=[BigTarget], config=config)
    big.make("run_1", "pulses")
    assert stored_chunks(big) == 1
    small = sd.Context(
        storage=str(tmp_path), plugins=[SmallChunks], config=config, processor=processor
    )
    with pytest.warns(sd.StaleVersionWarning):  # the plugin's code changed (only its target)
        assert small.plan("run_1", "pulses").to_load == ["pulses"]
        loaded = list(small.iter_chunks("run_1", "pulses"))
    assert [len(c) for c in loaded] == [30, 30, 40]
    np.testing.assert_array_equal(
        np.concatenate([c.data for c in loaded]), big.get_array("run_1", "pulses")
    )


class Crashing(SmallChunks):
    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        for i, chunk in enumerate(super().source(run_id)):
            if i == 12:
                raise RuntimeError("source crashed")
            yield chunk


def test_a_crash_while_rechunking_marks_the_data_set_failed(processor, tmp_path):
    ctx = sd.Context(storage=str(tmp_path), plugins=[Crashing], processor=processor)
    with pytest.raises(RuntimeError, match="source crashed"):
        ctx.make("run_1", "pulses")
    key = ctx.key_for("run_1", "pulses")
    assert ctx.stores[0].status(key) == "failed"
    assert not ctx.is_stored("run_1", "pulses")
