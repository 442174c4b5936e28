"""``sd.ExhaustPlugin``: ``compute`` once per run, on every input row, as a user runs it.

A chunked source of pulses (areas drawn per run), a run-level statistic over them (a new
kind, one row over the whole run), a per-pulse rank (same kind as the pulses, needing every
pulse of the run) and plain plugins downstream of both.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.kinds_exhaust import ExhaustRunner
from strax_decl.resuming import _why_not
from strax_decl.testing import check_chunking_independence

SECOND = 10**9
CALLS: list[tuple[str, int, int, int]] = []  # (run, start, end, rows) per compute call


class Pulse(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    area: sd.f64 = sd.field("area", unit="PE")


class Pulses(sd.Plugin):
    """``n_chunks`` chunks of 1000 ns with ``per_chunk`` pulses each; run ``rN`` starts at N s."""

    class Outputs(sd.Outputs):
        pulses: Pulse

    class Options(sd.Options):
        n_chunks: int = sd.option(6, description="chunks per run")
        per_chunk: int = sd.option(5, description="pulses per chunk")
        fail_at_chunk: int = sd.option(-1, track=False, description="raise before this chunk")
        chunk_delay_s: float = sd.option(0.0, track=False, description="sleep per chunk")

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        o = self.options
        off = int(run_id.lstrip("r")) * SECOND
        rng = np.random.default_rng(off // SECOND)
        for i in range(o.n_chunks):
            if i == o.fail_at_chunk:
                raise RuntimeError(f"source failed at chunk {i}")
            time.sleep(o.chunk_delay_s)
            rows = Pulse.zeros(o.per_chunk)
            rows["time"] = off + i * 1000 + np.arange(o.per_chunk) * (1000 // o.per_chunk)
            rows["endtime"] = rows["time"] + 10
            rows["area"] = rng.integers(1, 1000, o.per_chunk)
            yield sd.Chunk(off + i * 1000, off + (i + 1) * 1000, rows)

    def run_metadata(self, run_id: str) -> dict:
        off = int(run_id.lstrip("r")) * SECOND
        return {"start": off, "end": off + SECOND // 10}


class Stats(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    n: sd.i64 = sd.field("pulses in the run")
    median: sd.f64 = sd.field("median area", unit="PE")


class PulseStats(sd.ExhaustPlugin):
    """Run-level statistics: one row spanning the whole run."""

    version = "0.1.0"
    allow_superrun = True

    class Inputs(sd.Inputs):
        pulses: Pulse

    class Outputs(sd.Outputs):
        pulse_stats: Stats

    class Options(sd.Options):
        stats_fail: bool = sd.option(False, track=False, description="raise in compute")

    def compute(self, pulses: np.ndarray, start: int, end: int) -> np.ndarray:
        CALLS.append((self.run_id, start, end, len(pulses)))
        if self.options.stats_fail:
            raise ZeroDivisionError("stats failed")
        out = Stats.zeros(1)
        out["time"], out["endtime"] = start, end
        out["n"], out["median"] = len(pulses), np.median(pulses["area"])
        return out


class Rank(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    rank: sd.f64 = sd.field("fraction of the run's pulses with a smaller area")


class AreaRank(sd.ExhaustPlugin):
    """Same kind as its input: one rank per pulse, which needs every pulse of the run."""

    class Inputs(sd.Inputs):
        pulses: Pulse

    class Outputs(sd.Outputs):
        area_rank: Rank = sd.output(kind="pulses")

    def compute(self, pulses: np.ndarray) -> np.ndarray:
        out = Rank.zeros(len(pulses))
        out["time"], out["endtime"] = pulses["time"], pulses["endtime"]
        sorted_areas = np.sort(pulses["area"])
        out["rank"] = np.searchsorted(sorted_areas, pulses["area"], "left") / max(len(pulses), 1)
        return out


class RankPieces(AreaRank):
    """Down-chunking: the ranks handed on in two chunks tiling the run."""

    class Outputs(sd.Outputs):
        rank_pieces: Rank = sd.output(kind="pulses")

    def compute(self, pulses: np.ndarray, start: int, end: int) -> Iterator[sd.Chunk]:
        rows = super().compute(pulses)
        middle = int(pulses["time"][len(pulses) // 2])
        yield sd.Chunk(start, middle, rows[rows["time"] < middle])
        yield sd.Chunk(middle, end, rows[rows["time"] >= middle])


class Flag(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    above: sd.bool_ = sd.field("area above the run's median")
    top: sd.bool_ = sd.field("in the top half by rank")


class AboveMedian(sd.Plugin):
    """Reads the pulses and both exhaust outputs: a diamond that lags by the whole run."""

    class Inputs(sd.Inputs):
        pulses: Pulse
        area_rank: Rank
        pulse_stats: Stats

    class Outputs(sd.Outputs):
        above_median: Flag = sd.output(kind="pulses")

    def compute(self, pulses: np.ndarray, pulse_stats: np.ndarray) -> np.ndarray:
        out = Flag.zeros(len(pulses))
        out["time"], out["endtime"] = pulses["time"], pulses["endtime"]
        out["above"] = pulses["area"] > pulse_stats["median"][0]
        out["top"] = pulses["rank"] >= 0.5
        return out


PLUGINS = [Pulses, PulseStats, AreaRank, RankPieces, AboveMedian]


@pytest.fixture(params=["serial", "threaded"])
def processor(request: pytest.FixtureRequest) -> str:
    return request.param


def context(processor: str, storage: Path | None = None, **config: Any) -> sd.Context:
    CALLS.clear()
    return sd.Context(
        storage=None if storage is None else str(storage),
        plugins=PLUGINS,
        config=config,
        processor=processor,  # type: ignore[arg-type]
        max_messages=1,  # the tightest bounds: the exhaust plugin must still drain its input
    )


def pipeline_threads() -> list[str]:
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        alive = [t.name for t in threading.enumerate() if t.name.startswith("sd")]
        if not alive:
            break
        time.sleep(0.01)
    return alive


# ---------------------------------------------------------------------- results


def test_compute_runs_once_on_every_row_and_gives_one_chunk_over_the_run(processor):
    ctx = context(processor)
    pulses = ctx.get_array("r1", "pulses")
    chunks = list(ctx.iter_chunks("r1", "pulse_stats"))
    assert CALLS == [("r1", SECOND, SECOND + 6000, 30)]  # once, all 6 x 5 pulses
    ((start, end, rows),) = [(c.start, c.end, c.data) for c in chunks]
    assert (start, end) == (SECOND, SECOND + 6000)
    assert rows["n"].tolist() == [30] and rows["median"][0] == np.median(pulses["area"])


def test_a_same_kind_output_needs_and_gets_the_whole_run(processor):
    ctx = context(processor)
    got = ctx.get_array("r1", ["pulses", "area_rank"])
    areas = got["area"]
    want = np.array([(areas < a).sum() / len(areas) for a in areas])
    np.testing.assert_array_equal(got["rank"], want)
    # a chunk-wise computation would differ: the rank uses other chunks' pulses
    first_chunk = areas[:5]
    assert not np.array_equal(want[:5], [(first_chunk < a).mean() for a in first_chunk])


@pytest.mark.timeout(60)
def test_downstream_plugins_read_it_with_its_input_without_deadlock(processor):
    ctx = context(processor, n_chunks=20)
    got = ctx.get_array("r1", ["pulses", "above_median"])
    stats = ctx.get_array("r1", "pulse_stats")
    np.testing.assert_array_equal(got["above"], got["area"] > stats["median"][0])
    assert got["top"].sum() >= len(got) // 2 - 1
    assert len(CALLS) == 2  # pulse_stats in the request above and again here
    assert pipeline_threads() == []


@pytest.mark.parametrize("target", ["pulse_stats", "area_rank", "rank_pieces"])
def test_results_do_not_depend_on_the_input_chunking(target):
    out = check_chunking_independence(PLUGINS, target, run_id="r1", config={"n_chunks": 9})
    assert len(out[target]) == (1 if target == "pulse_stats" else 45)


def test_a_generator_compute_hands_its_output_on_in_pieces(processor, tmp_path):
    ctx = context(processor, tmp_path)
    chunks = list(ctx.iter_chunks("r1", "rank_pieces"))
    assert len(chunks) == 2 and chunks[0].start == SECOND and chunks[-1].end == SECOND + 6000
    ranks = np.concatenate([c.data for c in chunks])
    np.testing.assert_array_equal(ranks, ctx.get_array("r1", "area_rank"))


def test_stored_data_keeps_the_one_chunk_and_loads_without_computing(processor, tmp_path):
    ctx = context(processor, tmp_path)
    ctx.make("r1", ["pulse_stats", "area_rank", "rank_pieces"])
    store = ctx.stores[0]
    assert store.info(ctx.key_for("r1", "pulse_stats")).n_chunks == 1
    assert store.info(ctx.key_for("r1", "area_rank")).n_chunks == 1
    assert store.info(ctx.key_for("r1", "rank_pieces")).n_chunks == 2
    assert store.info(ctx.key_for("r1", "pulses")).n_chunks == 6
    computed = list(CALLS)
    plan = ctx.plan("r1", "above_median")
    assert {"pulses", "pulse_stats", "area_rank"} <= set(plan.to_load)
    assert plan.to_compute == ["above_median"]
    chunks = list(ctx.iter_chunks("r1", "pulse_stats"))
    assert [(c.start, c.end) for c in chunks] == [(SECOND, SECOND + 6000)]
    ctx.get_array("r1", "above_median")
    assert computed == CALLS  # loaded, never computed again
    # from stored pulses, recomputing gives the same rows
    again = ctx.new_context(config={"per_chunk": 5})
    np.testing.assert_array_equal(
        again.get_array("r1", "pulse_stats", save=[]), ctx.get_array("r1", "pulse_stats")
    )


def test_several_runs_get_one_row_each(processor):
    ctx = context(processor)
    rows = ctx.get_array(["r1", "r2"], "pulse_stats")
    assert rows["n"].tolist() == [30, 30] and list(rows["run_id"]) == ["r1", "r2"]
    assert rows["time"].tolist() == [SECOND, 2 * SECOND]  # each over its own run
    assert rows["endtime"].tolist() == [SECOND + 6000, 2 * SECOND + 6000]
    for i, run in enumerate(["r1", "r2"]):  # the runs may go to worker processes
        assert rows["median"][i] == np.median(ctx.get_array(run, "pulses")["area"])


def test_on_a_superrun_it_runs_once_over_the_joined_subruns(tmp_path):
    ctx = context("threaded", tmp_path)
    ctx.make(["r1", "r2"], "pulses").raise_if_failed()
    ctx.define_run("_sr", ["r1", "r2"])
    CALLS.clear()
    rows = ctx.get_array("_sr", "pulse_stats")
    assert CALLS == [("_sr", SECOND, 2 * SECOND + 6000, 60)]
    both = ctx.get_array(["r1", "r2"], "pulses")
    assert rows["n"].tolist() == [60] and rows["median"][0] == np.median(both["area"])


def test_a_time_range_computes_on_the_whole_run_and_keeps_the_rows_inside(processor):
    ctx = context(processor)
    inside = (SECOND + 1000, SECOND + 2000)
    assert len(ctx.get_array("r1", "pulse_stats", time_range=inside)) == 0  # spans the run
    assert CALLS == [("r1", SECOND, SECOND + 6000, 30)]
    whole = (SECOND, SECOND + 6000)
    assert ctx.get_array("r1", "pulse_stats", time_range=whole)["n"].tolist() == [30]
    ranks = ctx.get_array("r1", "area_rank", time_range=inside)
    everything = ctx.get_array("r1", "area_rank")
    np.testing.assert_array_equal(ranks, everything[5:10])  # ranked among all 30


class Mark(sd.Schema):
    time: sd.i64
    endtime: sd.i64


class Marks(sd.Plugin):
    """Three marks from 4.5 us on: a kind that starts later and ends later than the pulses."""

    class Outputs(sd.Outputs):
        marks: Mark

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        off = int(run_id.lstrip("r")) * SECOND
        for i in range(3):
            rows = Mark.zeros(1)
            rows["time"] = off + 4500 + i * 1000
            rows["endtime"] = rows["time"] + 1
            yield sd.Chunk(off + 4000 + i * 1000, off + 5000 + i * 1000, rows)


class Both(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    n_pulses: sd.i64
    n_marks: sd.i64


class CountBoth(sd.ExhaustPlugin):
    class Inputs(sd.Inputs):
        pulses: Pulse
        marks: Mark

    class Outputs(sd.Outputs):
        count_both: Both

    def compute(self, pulses: np.ndarray, marks: np.ndarray, start: int, end: int) -> np.ndarray:
        assert np.all(np.diff(pulses["time"]) > 0) and np.all(np.diff(marks["time"]) > 0)
        out = Both.zeros(1)
        out["time"], out["endtime"] = start, end
        out["n_pulses"], out["n_marks"] = len(pulses), len(marks)
        return out


def test_inputs_of_several_kinds_arrive_whole_over_their_common_span(processor):
    ctx = sd.Context(storage=None, plugins=[Pulses, Marks, CountBoth], processor=processor)
    (chunk,) = ctx.iter_chunks("r1", "count_both")
    assert (chunk.start, chunk.end) == (SECOND, SECOND + 7000)  # pulses from 0, marks to 7 us
    assert chunk.data[["n_pulses", "n_marks"]].tolist() == [(30, 3)]


# ---------------------------------------------------------------------- failures


def test_an_error_in_compute_fails_the_run_and_nothing_is_stored(processor, tmp_path):
    ctx = context(processor, tmp_path, stats_fail=True)
    with pytest.raises(ZeroDivisionError, match="stats failed") as info:
        ctx.get_array("r1", "above_median")
    assert any("PulseStats" in note for note in getattr(info.value, "__notes__", []))
    assert not ctx.is_stored("r1", "pulse_stats") and not ctx.is_stored("r1", "above_median")
    assert pipeline_threads() == []


def test_an_input_failing_while_it_buffers_fails_the_run_without_computing(processor, tmp_path):
    ctx = context(processor, tmp_path, fail_at_chunk=4)
    with pytest.raises(RuntimeError, match="source failed at chunk 4"):
        ctx.get_array("r1", "pulse_stats")
    assert CALLS == [] and not ctx.is_stored("r1", "pulse_stats")
    assert pipeline_threads() == []


def test_a_reader_stopping_early_stops_it(processor):
    ctx = context(processor, n_chunks=30, chunk_delay_s=0.01)
    for chunk in ctx.iter_chunks("r1", ["pulses", "above_median"]):
        assert len(chunk)
        break
    assert pipeline_threads() == []


@pytest.mark.skipif(
    sys.gettrace() is not None,
    reason="under a tracer the asynchronous KeyboardInterrupt may never reach a thread blocked "
    "in a wait (see tests/core/test_interrupts.py)",
)
@pytest.mark.timeout(60)
def test_ctrl_c_while_it_buffers_stops_everything(processor, tmp_path):
    ctx = context(processor, tmp_path, n_chunks=200, chunk_delay_s=0.02)  # 4 s of input
    caught: list[BaseException] = []

    def request() -> None:
        try:
            ctx.make("r1", "pulse_stats")
        except BaseException as e:
            caught.append(e)

    kernel = threading.Thread(target=request, name="kernel")
    kernel.start()
    time.sleep(0.5)  # the source has sent some chunks; the exhaust plugin is buffering them
    assert kernel.ident is not None and kernel.is_alive()
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(kernel.ident), ctypes.py_object(KeyboardInterrupt)
    )
    kernel.join(10)
    assert not kernel.is_alive() and len(caught) == 1
    assert isinstance(caught[0], KeyboardInterrupt), caught
    assert CALLS == [] and not ctx.is_stored("r1", "pulse_stats")
    assert pipeline_threads() == []


# ---------------------------------------------------------------------- declarations


def test_it_is_not_resumed_after_a_killed_writer():
    assert PulseStats._runner is ExhaustRunner and PulseStats.resumable is False
    assert _why_not(PulseStats, {}, 0).startswith("plugin PulseStats is a")  # not resumed


def test_bad_declarations_are_refused_naming_the_plugin():
    with pytest.raises(sd.PluginDeclarationError, match=r"plugin NoInputs: .* at least one input"):

        class NoInputs(sd.ExhaustPlugin):
            class Outputs(sd.Outputs):
                pulse_stats: Stats

            def compute(self) -> np.ndarray:
                return Stats.zeros(0)

    with pytest.raises(sd.PluginDeclarationError, match=r"plugin InParallel: .* cannot be paral"):

        class InParallel(PulseStats):
            parallel = True

    with pytest.raises(sd.PluginDeclarationError, match=r"plugin WithSource: .*not source"):

        class WithSource(PulseStats):
            def source(self, run_id: str) -> Iterator[sd.Chunk]:
                yield from ()

    with pytest.raises(sd.PluginDeclarationError, match="plugin NoCompute: define compute"):

        class NoCompute(sd.ExhaustPlugin):
            class Inputs(sd.Inputs):
                pulses: Pulse

            class Outputs(sd.Outputs):
                pulse_stats: Stats
