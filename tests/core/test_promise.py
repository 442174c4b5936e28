"""The cache's promise: a data set stored complete holds exactly what its lineage computes.

Each test here closes one way a wrong result could be stored complete (issue 15): user code
leaking ``StopIteration`` (it must never look like the end of a stream), and same-kind outputs
whose rows do not correspond one to one with the rows of their kind. Real threads, pools and
Zarr stores on ``tmp_path``; no mocks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.chunk import merge, safe_split_point, split
from strax_decl.plugin import PluginGaveWrongOutput, PluginRaisedStopIteration
from strax_decl.testing import (
    TOY_PLUGINS,
    FlakyPeaks,
    Peak,
    PeakProperties,
    PeakRecordCount,
    ProcessFlakyPeaks,
    Record,
    ThreadFlakyPeaks,
    ToyRecords,
)

N_CHUNKS = 6
ROWS = 20
CHUNK_NS = ROWS * 100 + 1000  # ToyRecords' chunk length
BASE: dict[str, Any] = {"n_chunks": N_CHUNKS, "rows_per_chunk": ROWS}
TYPES = ["records", "peaks", "peak_basics", "big_peaks"]


def _status(ctx: sd.Context, data_type: str) -> str:
    return str(ctx.stores[0].status(ctx.key_for("run_1", data_type)))


# ------------------------------------------------------------------ StopIteration (hole 1)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("peaks", "processor"),
    [
        (ThreadFlakyPeaks, "threaded"),
        (ProcessFlakyPeaks, "threaded"),
        (FlakyPeaks, "threaded"),
        (FlakyPeaks, "serial"),
        (ThreadFlakyPeaks, "serial"),
    ],
    ids=["thread pool", "process pool", "inline threaded", "serial", "parallel, serial"],
)
def test_stop_iteration_in_compute_fails_the_request(
    peaks: type[sd.Plugin], processor: str, tmp_path: Path
) -> None:
    """A compute raising StopIteration in step 3 of 6 must fail the run, not end the stream
    (it used to store ``peaks`` complete with half the rows)."""
    ctx = sd.Context(
        storage=str(tmp_path),
        plugins=[ToyRecords, peaks, PeakProperties, PeakRecordCount],
        config={**BASE, "peaks_stop_at": 3 * CHUNK_NS},
        processor=processor,  # type: ignore[arg-type]
        max_workers=2,
    )
    with pytest.raises(PluginRaisedStopIteration, match=rf"plugin {peaks.__name__}\b") as info:
        ctx.get_array("run_1", "peak_basics")
    assert "StopIteration" in str(info.value)
    if peaks is not ProcessFlakyPeaks:  # a cause does not cross a process boundary
        assert isinstance(info.value.__cause__, StopIteration)
    for data_type in ("peaks", "peak_basics", "big_peaks"):
        assert _status(ctx, data_type) != "complete", data_type
    # Without the fault the same lineage computes (and stores) every row.
    clean = ctx.new_context(config={"peaks_stop_at": -1})
    assert len(clean.get_array("run_1", "peaks")) == N_CHUNKS * ROWS // 5


class StoppingSource(sd.Plugin):
    """A source generator whose body leaks a StopIteration after two chunks."""

    version = "0.1.0"

    class Outputs(sd.Outputs):
        records: Record

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        empty: Iterator[int] = iter(())
        for i in range(4):
            if i == 2:
                next(empty)  # a bare next() on an exhausted iterator
            yield sd.Chunk(i * 100, (i + 1) * 100, Record.zeros(0))


class StoppingDown(sd.Plugin):
    """A down-chunking compute whose generator leaks a StopIteration."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        records: Record

    class Outputs(sd.Outputs):
        peaks: Peak

    def compute(self, records: np.ndarray, start: int, end: int) -> Iterator[sd.Chunk]:
        if start >= 2 * CHUNK_NS:
            next(iter(()))
        yield sd.Chunk(start, end, Peak.zeros(0))


@pytest.mark.parametrize("processor", ["threaded", "serial"])
@pytest.mark.parametrize(
    ("plugins", "culprit", "where"),
    [
        ([StoppingSource, FlakyPeaks], "StoppingSource", "source"),
        ([ToyRecords, StoppingDown], "StoppingDown", "compute"),
    ],
    ids=["source generator", "down-chunking generator"],
)
def test_stop_iteration_in_a_generator_names_the_plugin(
    plugins: list[type[sd.Plugin]], culprit: str, where: str, processor: str, tmp_path: Path
) -> None:
    ctx = sd.Context(
        storage=str(tmp_path),
        plugins=plugins,
        config=BASE if ToyRecords in plugins else {},
        processor=processor,  # type: ignore[arg-type]
    )
    with pytest.raises(PluginRaisedStopIteration, match=rf"plugin {culprit} .* in {where}"):
        ctx.get_array("run_1", "peaks")
    assert _status(ctx, "peaks") != "complete"


def test_a_future_failing_with_stop_iteration_does_not_end_a_mailbox_stream() -> None:
    """Whatever computed it (a pool, Dask, a chained ``then``): the reader raises."""
    from concurrent.futures import Future

    from strax_decl.engine.futures import then
    from strax_decl.engine.mailbox import Mailbox
    from strax_decl.engine.subscription import ResultRaisedStopIteration

    mailbox = Mailbox("peaks", max_messages=4)
    reader = mailbox.subscribe()
    done: Future[int] = Future()
    done.set_result(1)
    failed: Future[int] = Future()
    failed.set_exception(StopIteration("leaked"))
    for msg in (done, then(failed, lambda x: x), done):
        mailbox.send(msg)
    mailbox.close()
    got = []
    with pytest.raises(ResultRaisedStopIteration, match=r"message 1 of 'peaks'") as info:
        for value in reader:  # a for loop: a StopIteration would end it quietly
            got.append(value)
    assert got == [1] and isinstance(info.value.__cause__, StopIteration)


# ------------------------------------------------------------------ same-kind rows (hole 8)


class Basics(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    width: sd.i64 = sd.field("duration", unit="ns")


class WrongBasics(sd.Plugin):
    """Declares an output of kind peaks but returns other rows, as its option says."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        peaks: Peak

    class Outputs(sd.Outputs):
        wrong_basics: Basics = sd.output(kind="peaks")

    class Options(sd.Options):
        wrong: str = sd.option("none", description="none, half, shifted, endtime")

    def compute(self, peaks: np.ndarray) -> np.ndarray:
        how = self.options.wrong
        rows = peaks[: len(peaks) // 2] if how == "half" else peaks
        out = Basics.zeros(len(rows))
        out["time"] = rows["time"] + (1 if how == "shifted" else 0)
        out["endtime"] = rows["endtime"] + (1 if how in ("shifted", "endtime") else 0)
        out["width"] = out["endtime"] - out["time"]
        return out


class WrongBasicsDown(WrongBasics):
    """The same, down-chunking: the rows of one step yielded in two chunks."""

    def compute(  # type: ignore[override]
        self, peaks: np.ndarray, start: int, end: int
    ) -> Iterator[sd.Chunk]:
        whole = sd.Chunk(start, end, WrongBasics.compute(self, peaks))
        yield from split(whole, safe_split_point(whole, (start + end) // 2))


@pytest.mark.parametrize("plugin", [WrongBasics, WrongBasicsDown], ids=["returned", "yielded"])
@pytest.mark.parametrize("wrong", ["half", "shifted", "endtime"])
def test_same_kind_output_with_wrong_rows_is_refused(
    plugin: type[sd.Plugin], wrong: str, tmp_path: Path
) -> None:
    ctx = sd.Context(
        storage=str(tmp_path), plugins=[*TOY_PLUGINS, plugin], config={**BASE, "wrong": wrong}
    )
    with pytest.raises(PluginGaveWrongOutput) as info:
        ctx.get_array("run_1", "wrong_basics")
    text = str(info.value)
    assert f"plugin {plugin.__name__}" in text and "'wrong_basics'" in text, text
    assert "kind 'peaks'" in text and "row " in text and "[" in text, text
    assert _status(ctx, "wrong_basics") != "complete"


@pytest.mark.parametrize("plugin", [WrongBasics, WrongBasicsDown], ids=["returned", "yielded"])
def test_same_kind_output_with_the_right_rows_is_stored(
    plugin: type[sd.Plugin], tmp_path: Path
) -> None:
    ctx = sd.Context(storage=str(tmp_path), plugins=[*TOY_PLUGINS, plugin], config=BASE)
    rows = ctx.get_array("run_1", ["peaks", "wrong_basics"])
    assert len(rows) == N_CHUNKS * ROWS // 5
    assert _status(ctx, "wrong_basics") == "complete"


def test_merge_error_names_the_data_types() -> None:
    a = sd.Chunk(0, 10, Basics.zeros(2))
    b = sd.Chunk(0, 10, Peak.zeros(3))
    with pytest.raises(sd.ChunkLawViolation, match=r"peak_basics.*peaks|peaks.*peak_basics"):
        merge([a, b], names=["peak_basics", "peaks"])


# ------------------------------------------------------------------ toy Peaks (chunking)

_GIVEN: dict[str, Any] = {}  # the records GivenRecords serves, and where it cuts them


class GivenRecords(sd.Plugin):
    """Serves fixed records cut into chunks at the times in ``_GIVEN["cuts"]``."""

    version = "0.1.0"

    class Outputs(sd.Outputs):
        records: Record

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        rows: np.ndarray = _GIVEN["records"]
        bounds = [0, *_GIVEN["cuts"], int(rows["time"][-1]) + 1000]
        for lo, hi in itertools.pairwise(bounds):
            take = (rows["time"] >= lo) & (rows["time"] < hi)
            yield sd.Chunk(lo, hi, rows[take])


def test_toy_peaks_do_not_depend_on_the_chunking_of_records(tmp_path: Path) -> None:
    """The toy Peaks used to group records from each chunk's start and drop the leftovers at
    chunk ends, so the same lineage gave other rows when records came in other chunks."""
    ctx = sd.Context(storage=None, plugins=TOY_PLUGINS[:2], config=BASE)
    records = ctx.get_array("run_1", "records")
    _GIVEN["records"] = records
    results = []
    times = [int(t) + 90 for t in records["time"]]  # between two records (they last 80 ns)
    for cuts in ([], [times[12], times[71]], times[3::7]):
        _GIVEN["cuts"] = cuts
        given = sd.Context(storage=None, plugins=[GivenRecords, TOY_PLUGINS[1]])
        results.append(given.get_array("run_1", "peaks"))
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
    assert len(results[0]) >= len(records) // 5
