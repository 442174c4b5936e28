"""Resuming an interrupted make; two writers of one data set in one process; fail-fast."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.testing import (
    TOY_PLUGINS,
    Peak,
    PeakExtras,
    PeakRecordCount,
    Record,
)
from strax_storage import ClaimHeld, open_store

RUN = "run_1"
TYPES = ["records", "peaks", "peak_basics", "big_peaks", "peak_extras"]
CONFIG = {"n_chunks": 6, "rows_per_chunk": 200}


class FlakyRecordCount(sd.Plugin):
    """PeakRecordCount that can be told to crash (the option is not part of the lineage)."""

    version = PeakRecordCount.version

    class Inputs(sd.Inputs):
        peaks: Peak
        records: Record

    class Outputs(sd.Outputs):
        peak_extras: PeakExtras = sd.output(kind="peaks")

    class Options(sd.Options):
        extras_fail_at: int = sd.option(-1, track=False, description="crash in this chunk")

    def setup(self) -> None:
        self.chunk_i = 0

    def compute(self, peaks: np.ndarray, records: np.ndarray) -> np.ndarray:
        if self.chunk_i == self.options.extras_fail_at:  # type: ignore[attr-defined]
            time.sleep(0.5)  # let the savers of the upstream data types finish first
            raise RuntimeError(f"FlakyRecordCount crashed on purpose at chunk {self.chunk_i}")
        self.chunk_i += 1
        out = PeakExtras.zeros(len(peaks))
        out["time"] = peaks["time"]
        out["endtime"] = peaks["endtime"]
        starts = np.searchsorted(records["time"], peaks["time"], side="left")
        stops = np.searchsorted(records["time"], peaks["endtime"], side="left")
        out["records_inside"] = stops - starts
        return out


PLUGINS = [p for p in TOY_PLUGINS if p is not PeakRecordCount] + [FlakyRecordCount]


def context(path: Path, **config: object) -> sd.Context:
    return sd.Context(storage=str(path), plugins=PLUGINS, config={**CONFIG, **config})


def test_an_interrupted_make_resumes_where_it_stopped(tmp_path: Path) -> None:
    clean = context(tmp_path / "clean")
    clean.make(RUN, TYPES)
    expected = {t: clean.get_array(RUN, t) for t in TYPES}

    # big mailboxes: upstream runs to its end while peak_extras is still at work
    broken = context(tmp_path / "store", extras_fail_at=5).new_context(max_messages=100)
    with pytest.raises(RuntimeError, match="crashed on purpose at chunk 5"):
        broken.make(RUN, TYPES)
    store = open_store(tmp_path / "store")
    status = {t: store.status(broken.key_for(RUN, t)) for t in TYPES}
    assert status["peak_extras"] == "failed"
    done = {t for t, s in status.items() if s == "complete"}
    assert {"records", "peaks"} <= done, status  # finished before the crash: stays complete

    again = context(tmp_path / "store")
    assert again.key_for(RUN, "peak_extras") == broken.key_for(RUN, "peak_extras")
    plan = again.plan(RUN, TYPES)
    assert set(plan.to_load) == done
    assert set(plan.to_compute) == set(TYPES) - done
    assert "failed while it was written" in plan.steps["peak_extras"].reason
    again.make(RUN, TYPES)
    assert again.last_plan is not None and set(again.last_plan.to_compute) == set(TYPES) - done
    for t in TYPES:
        np.testing.assert_array_equal(again.get_array(RUN, t), expected[t])
    assert again.last_plan.to_compute == []


def test_two_threads_making_the_same_data_compute_it_once(tmp_path: Path) -> None:
    path = tmp_path / "store"
    plans: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def make() -> None:
        ctx = context(path, n_chunks=20)
        barrier.wait()
        try:
            ctx.make(RUN, TYPES)
        except BaseException as e:
            errors.append(e)
        assert ctx.last_plan is not None
        plans.append(ctx.last_plan.to_compute)

    threads = [threading.Thread(target=make) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(map(len, plans)) == [0, len(TYPES)], plans
    infos = open_store(path).list()
    assert sorted(i.key.data_type for i in infos) == sorted(TYPES)
    assert all(i.status == "complete" for i in infos)
    assert [n for n in os.listdir(path / RUN) if n.startswith(".")] == []


def test_on_conflict_fail_raises_naming_the_data_set_and_holder(tmp_path: Path) -> None:
    ctx = context(tmp_path / "store")
    ctx.make(RUN, "records")
    key = ctx.key_for(RUN, "peaks")
    claim = ctx.stores[0].claim(key)  # someone is writing peaks
    assert claim is not None
    failing = ctx.new_context(on_conflict="fail")
    with pytest.raises(ClaimHeld, match=rf"data set {key} is being written by pid {os.getpid()}"):
        failing.make(RUN, "peak_basics")
    # it claimed nothing it keeps, and computed nothing
    assert ctx.stores[0].claim_holder(ctx.key_for(RUN, "peak_basics")) is None
    assert ctx.stores[0].status(ctx.key_for(RUN, "peak_basics")) == "absent"
    claim.release()
    failing.make(RUN, "peak_basics")
    assert failing.is_stored(RUN, "peak_basics")


def test_a_waiter_computes_itself_when_the_holder_gives_up(tmp_path: Path) -> None:
    ctx = context(tmp_path / "store")
    claim = ctx.stores[0].claim(ctx.key_for(RUN, "records"))
    assert claim is not None
    threading.Timer(0.3, claim.release).start()  # the holder stops without writing
    ctx.make(RUN, "records")
    assert ctx.last_plan is not None and ctx.last_plan.to_compute == ["records"]
    assert ctx.is_stored(RUN, "records")


def test_readers_see_a_data_set_being_written_as_absent(tmp_path: Path) -> None:
    ctx = context(tmp_path / "store")
    key = ctx.key_for(RUN, "records")
    rows = ctx.new_context(storage=[]).get_array(RUN, "records")
    saver = ctx.stores[0].saver(key, rows.dtype, {})
    saver.send(sd.Chunk(0, int(rows["time"][-1]) + 1000, rows[:10]))
    assert not ctx.is_stored(RUN, "records")
    plan = ctx.plan(RUN, "records")
    assert plan.steps["records"].action == "compute"
    assert "being written" in plan.steps["records"].reason
    saver.fail(RuntimeError("stop"))


def test_context_rejects_unknown_conflict_and_corruption_modes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="on_conflict"):
        sd.Context(storage=None, plugins=TOY_PLUGINS, on_conflict="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_corrupted"):
        sd.Context(storage=None, plugins=TOY_PLUGINS, on_corrupted="x")  # type: ignore[arg-type]
    ctx = sd.Context(
        storage=None, plugins=TOY_PLUGINS, on_conflict="fail", on_corrupted="recompute"
    )
    derived = ctx.new_context(config={"n_chunks": 2})
    assert (derived.on_conflict, derived.on_corrupted) == ("fail", "recompute")
