"""A small toy pipeline for tests, examples and trying things out.

It lives in the package (like ``strax.testutils``) so that worker processes (process pools,
Dask workers) can import the plugin classes by name.

For plugin authors' own tests: ``check_chunking_independence`` (a plugin's rows must not
depend on how its inputs are chunked) and ``chunkings()``, a hypothesis strategy of chunkings.

    records  --(Peaks)-->  peaks  --(PeakProperties)-->  peak_basics (kind peaks), big_peaks
        \\____________________________(PeakRecordCount)-->  peak_extras (kind peaks; reads
                                                             peaks *and* records)
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np

import strax_decl as sd
from strax_decl.chunk import Chunk
from strax_decl.daq import RECORD_SAMPLES, DAQRecords, Record, RecordSums, toy_chunks, write_run
from strax_decl.plugin import Submit
from strax_decl.recompute import check_independence
from strax_decl.runner import PluginRunner
from strax_decl.schema import DType

if TYPE_CHECKING:  # pragma: no cover - hypothesis is a test dependency, imported lazily
    from hypothesis.strategies import SearchStrategy

__all__ = [
    "CHUNK_DEPENDENT_PLUGINS",
    "FLAKY_PLUGINS",
    "RECORD_SAMPLES",
    "TOY_PLUGINS",
    "BigPeak",
    "ChunkPeak",
    "ChunkPeaks",
    "DAQRecords",
    "FailedOnPurpose",
    "FlakyPeakProperties",
    "FlakyPeaks",
    "LabelledPeak",
    "Peak",
    "PeakBasics",
    "PeakExtras",
    "PeakLabels",
    "PeakProperties",
    "PeakRecordCount",
    "Peaks",
    "ProcessFlakyPeakProperties",
    "ProcessFlakyPeaks",
    "Record",
    "RecordSums",
    "ThreadFlakyPeakProperties",
    "ThreadFlakyPeaks",
    "ToyRecords",
    "binned_peaks",
    "check_chunking_independence",
    "chunkings",
    "toy_chunks",
    "write_run",
]


class Peak(sd.Schema):
    time: sd.i64 = sd.field("start time", unit="ns")
    endtime: sd.i64 = sd.field("exclusive end time", unit="ns")
    area: sd.f32 = sd.field("integral", unit="ADC")
    n_records: sd.i32 = sd.field("records summed into the peak")


class PeakBasics(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    width: sd.i64 = sd.field("duration", unit="ns")
    mean_area: sd.f32 = sd.field("area per record", unit="ADC")


class BigPeak(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    area: sd.f32 = sd.field("integral", unit="ADC")


class PeakExtras(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    records_inside: sd.i32 = sd.field("records of any channel inside the peak")


class ToyRecords(sd.Plugin):
    """Deterministic records: ``n_chunks`` chunks of ``rows_per_chunk`` 100 ns records."""

    version = "0.1.0"

    class Outputs(sd.Outputs):
        records: Record

    class Options(sd.Options):
        n_chunks: int = sd.option(4, ge=0, description="number of chunks")
        rows_per_chunk: int = sd.option(100, ge=0, description="records per chunk")
        seed: int = sd.option(0, description="random seed of the waveforms")
        crash_at_chunk: int = sd.option(
            -1, track=False, description="raise in this chunk (testing failure paths)"
        )

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        o = self.options
        rng = np.random.default_rng(o.seed)
        chunk_ns = o.rows_per_chunk * 100 + 1000
        for i in range(o.n_chunks):
            if i == o.crash_at_chunk:
                raise RuntimeError(f"ToyRecords crashed on purpose at chunk {i}")
            start = i * chunk_ns
            rows = Record.zeros(o.rows_per_chunk)
            rows["time"] = start + 100 * np.arange(o.rows_per_chunk)
            rows["length"] = RECORD_SAMPLES
            rows["dt"] = 10
            rows["channel"] = np.arange(o.rows_per_chunk) % 4
            rows["data"] = rng.integers(0, 100, size=(o.rows_per_chunk, RECORD_SAMPLES))
            rows["area"] = rows["data"].sum(axis=1)
            yield sd.Chunk(start, start + chunk_ns, rows)


RECORD_SPACING_NS = 100
"""ToyRecords' records start every 100 ns (and last 80 ns)."""


def binned_peaks(records: np.ndarray, group: int) -> np.ndarray:
    """One peak per time bin ``[b * W, (b + 1) * W)``, ``W = group * 100 ns``, holding the
    records that start in it. The bins are fixed in absolute time, so which records form a
    peak does not depend on where chunks begin or end."""
    if not len(records):
        return Peak.zeros(0)
    bins = records["time"] // (group * RECORD_SPACING_NS)
    first = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
    ends = records["time"] + records["length"].astype(np.int64) * records["dt"]
    peaks = Peak.zeros(len(first))
    peaks["time"] = records["time"][first]
    peaks["endtime"] = np.maximum.reduceat(ends, first)
    peaks["area"] = np.add.reduceat(records["area"], first)
    peaks["n_records"] = np.diff(np.r_[first, len(records)])
    return peaks


class Peaks(sd.OverlapWindowPlugin):
    """One peak per ``group`` record spacings (a fixed time bin), from the records in it.

    An overlap window of one bin on each side makes the result independent of the chunking
    of ``records`` (live, loaded, rechunked or resumed alike): a peak depends only on the
    records of its own bin. (Before 0.2.0 it grouped ``group`` consecutive records from
    each chunk's start and dropped the leftovers at chunk ends: its rows depended on the
    chunking.) With ToyRecords' default chunks (``rows_per_chunk`` a multiple of ``group``)
    every bin holds ``group`` records.
    """

    version = "0.2.0"

    class Inputs(sd.Inputs):
        records: Record

    class Outputs(sd.Outputs):
        peaks: Peak

    class Options(sd.Options):
        group: int = sd.option(5, ge=1, description="records per peak")

    def window_size(self) -> tuple[int, int]:
        width = self.options.group * RECORD_SPACING_NS
        return width, width

    def compute(self, records: np.ndarray) -> np.ndarray:
        return binned_peaks(records, self.options.group)


class PeakProperties(sd.Plugin):
    """Multi-output: per-peak basics (kind peaks) and the subset of big peaks (own kind)."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        peaks: Peak

    class Outputs(sd.Outputs):
        peak_basics: PeakBasics = sd.output(kind="peaks")
        big_peaks: BigPeak = sd.output(kind="big_peaks")

    class Options(sd.Options):
        big_area: float = sd.option(2000.0, description="area above which a peak is big")

    def compute(self, peaks: np.ndarray) -> dict[str, np.ndarray]:
        basics = PeakBasics.zeros(len(peaks))
        basics["time"] = peaks["time"]
        basics["endtime"] = peaks["endtime"]
        basics["width"] = peaks["endtime"] - peaks["time"]
        basics["mean_area"] = peaks["area"] / np.maximum(peaks["n_records"], 1)
        sel = peaks[peaks["area"] > self.options.big_area]
        big = BigPeak.zeros(len(sel))
        for f in ("time", "endtime", "area"):
            big[f] = sel[f]
        return {"peak_basics": basics, "big_peaks": big}


class PeakRecordCount(sd.Plugin):
    """Two inputs of different kinds: counts the records inside each peak."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        peaks: Peak
        records: Record

    class Outputs(sd.Outputs):
        peak_extras: PeakExtras = sd.output(kind="peaks")

    def compute(self, peaks: np.ndarray, records: np.ndarray) -> np.ndarray:
        out = PeakExtras.zeros(len(peaks))
        out["time"] = peaks["time"]
        out["endtime"] = peaks["endtime"]
        starts = np.searchsorted(records["time"], peaks["time"], side="left")
        stops = np.searchsorted(records["time"], peaks["endtime"], side="left")
        out["records_inside"] = stops - starts
        return out


class ChunkPeak(sd.Schema):
    time: sd.i64 = sd.field("start of the input chunk", unit="ns")
    endtime: sd.i64 = sd.field("end of the input chunk", unit="ns")
    area: sd.f64 = sd.field("area of the records of the chunk", unit="ADC")
    n_records: sd.i32 = sd.field("records in the chunk")


class ChunkPeaks(sd.Plugin):
    """Deliberately chunk-dependent: one row per chunk of ``records``, spanning that chunk.

    Legal (chunk boundaries are fixed by the source's options, so by the lineage) but fragile:
    its rows change with ``ToyRecords``' chunking, and the store must hand it the chunks the
    source made, loaded or live. Tests of resume and of ``verify`` use it.
    """

    version = "0.1.0"

    class Inputs(sd.Inputs):
        records: Record

    class Outputs(sd.Outputs):
        chunk_peaks: ChunkPeak

    def compute(self, records: np.ndarray, start: int, end: int) -> np.ndarray:
        row = ChunkPeak.zeros(1)
        row["time"], row["endtime"] = start, end
        row["area"], row["n_records"] = records["area"].sum(), len(records)
        return row


TOY_PLUGINS: list[type[sd.Plugin]] = [ToyRecords, Peaks, PeakProperties, PeakRecordCount]
CHUNK_DEPENDENT_PLUGINS: list[type[sd.Plugin]] = [*TOY_PLUGINS, ChunkPeaks]
"""The toy pipeline and ``ChunkPeaks``, whose rows depend on the chunking of ``records``."""
#: What ``strax-decl --plugins strax_decl.testing`` registers.
PLUGINS = TOY_PLUGINS


# ---------------------------------------------------------------------------------------------
# Plugins for testing the executors: parallel variants of the toy plugins that can fail, dawdle
# or kill their worker process on request. They live here, not in the tests, so that worker
# processes of a process pool can import them by name. Their options are not tracked, so they
# compute (and store under) the same lineage whether or not they misbehave.


class FailedOnPurpose(RuntimeError):
    """Raised by the flaky test plugins."""


def _misbehave(
    name: str, start: int, fail_at: int, delay_s: float, exit_at: int = -1, stop_at: int = -1
) -> None:
    if delay_s:
        time.sleep(delay_s)
    if 0 <= exit_at <= start and multiprocessing.parent_process() is not None:
        os._exit(3)  # a worker process dies (never the main process: inline runs skip this)
    if 0 <= fail_at <= start:
        raise FailedOnPurpose(f"{name} failed on purpose in the step starting at {start}")
    if 0 <= stop_at <= start:
        # User code leaking a StopIteration (e.g. a bare next() on an empty iterator): it
        # must never look like the end of a stream.
        raise StopIteration(f"{name} leaked StopIteration in the step starting at {start}")


class _FailsAtEnd(PluginRunner):
    """Runs a flaky plugin, then raises after its last step if its ``_fail_at_end`` option
    says so (a failure no compute can cause: it knows no "last")."""

    def iterate(
        self, inputs: Mapping[str, Iterator[Chunk]], submit: Submit | None = None
    ) -> Iterator[dict[str, Chunk] | Future[dict[str, Chunk]]]:
        yield from super().iterate(inputs, submit)
        plugin: Any = self.plugin  # a FlakyPeaks or FlakyPeakProperties
        if getattr(plugin.options, plugin._fail_at_end):
            raise FailedOnPurpose(f"{self.name} failed on purpose after its last step")


class FlakyPeaks(sd.Plugin):
    """``Peaks`` that can fail (from a time on, or after its last step), sleep or exit.

    A plain plugin (so that it can be parallel) computing each step's bins: the same rows as
    ``Peaks`` as long as no chunk of records ends inside a bin, as with ToyRecords' chunks
    when ``rows_per_chunk`` is a multiple of ``group`` (every test using it).
    """

    version = "0.2.0"
    Inputs = Peaks.Inputs
    Outputs = Peaks.Outputs

    class Options(Peaks.Options):
        peaks_fail_at: int = sd.option(
            -1, track=False, description="raise in steps starting at or after this time [ns]"
        )
        peaks_fail_at_end: bool = sd.option(
            False, track=False, description="raise after the last step"
        )
        peaks_delay_s: float = sd.option(
            0.0, ge=0, track=False, description="sleep this long per step"
        )
        peaks_exit_at: int = sd.option(
            -1, track=False, description="kill the worker process from this time [ns] on"
        )
        peaks_stop_at: int = sd.option(
            -1, track=False, description="raise StopIteration from this time [ns] on"
        )

    def compute(self, records: np.ndarray, start: int = 0, end: int = 0) -> np.ndarray:
        o = self.options
        _misbehave(
            self.name,
            start,
            o.peaks_fail_at,
            o.peaks_delay_s,
            o.peaks_exit_at,
            o.peaks_stop_at,
        )
        return binned_peaks(records, o.group)

    _runner = _FailsAtEnd
    _fail_at_end = "peaks_fail_at_end"


class ThreadFlakyPeaks(FlakyPeaks):
    parallel = True


class ProcessFlakyPeaks(FlakyPeaks):
    parallel = "process"


class FlakyPeakProperties(PeakProperties):
    """``PeakProperties`` (multi-output) that can fail (from a time on, or at the end) or sleep."""

    class Options(PeakProperties.Options):
        props_fail_at: int = sd.option(
            -1, track=False, description="raise in steps starting at or after this time [ns]"
        )
        props_fail_at_end: bool = sd.option(
            False, track=False, description="raise after the last step"
        )
        props_delay_s: float = sd.option(
            0.0, ge=0, track=False, description="sleep this long per step"
        )

    def compute(self, peaks: np.ndarray, start: int = 0, end: int = 0) -> dict[str, np.ndarray]:
        o = self.options
        _misbehave(self.name, start, o.props_fail_at, o.props_delay_s)
        return super().compute(peaks)

    _runner = _FailsAtEnd
    _fail_at_end = "props_fail_at_end"


class ThreadFlakyPeakProperties(FlakyPeakProperties):
    parallel = True


class ProcessFlakyPeakProperties(FlakyPeakProperties):
    parallel = "process"


class LabelledPeak(sd.Schema):
    """A row with a Python-object field: fine in memory, but the store cannot hold it."""

    time: sd.i64
    endtime: sd.i64
    label: Annotated[np.ndarray, DType(np.dtype("O"))] = sd.field("peak label")


class PeakLabels(sd.Plugin):
    """Labels every peak; its output cannot be stored (saving it fails when the saver starts)."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        peaks: Peak

    class Outputs(sd.Outputs):
        peak_labels: LabelledPeak = sd.output(kind="peaks")

    def compute(self, peaks: np.ndarray) -> np.ndarray:
        out = LabelledPeak.zeros(len(peaks))
        out["time"] = peaks["time"]
        out["endtime"] = peaks["endtime"]
        out["label"] = np.where(peaks["area"] > 2000, "big", "small")
        return out


FLAKY_PLUGINS: list[type[sd.Plugin]] = [
    ToyRecords,
    FlakyPeaks,
    FlakyPeakProperties,
    PeakRecordCount,
]
"""The toy pipeline with the flaky (serial) variants of Peaks and PeakProperties."""


# ---------------------------------------------------------------------------------------------
# For plugin authors' own tests: a plugin's rows must not depend on how its inputs are chunked
# (the check ``strax-decl verify`` makes on stored data, here on data computed in memory).


def chunkings(*, min_cuts: int = 1, max_cuts: int = 8) -> SearchStrategy[tuple[float, ...]]:
    """A hypothesis strategy of chunkings for :func:`check_chunking_independence`: sorted cut
    points, each a fraction in (0, 1) of the inputs' span (hypothesis is imported only when
    this is called, so this module imports without it)::

        @given(cuts=chunkings())
        def test_my_plugin(cuts):
            check_chunking_independence(PLUGINS, "my_type", chunkings=[cuts])
    """
    from hypothesis import strategies as st

    cut = st.floats(0.0, 1.0, exclude_min=True, exclude_max=True, allow_nan=False)
    cuts = st.lists(cut, min_size=min_cuts, max_size=max_cuts, unique=True)
    return cuts.map(lambda c: tuple(sorted(c)))


def check_chunking_independence(
    plugins: Iterable[type[sd.Plugin]],
    target: str,
    *,
    run_id: str = "run_1",
    config: Mapping[str, Any] | None = None,
    chunkings: Iterable[Sequence[float]] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Assert that the plugin providing ``target`` gives the same rows however its inputs are
    chunked; return its rows per output (the single-chunk result).

    The inputs are computed in memory from ``plugins`` (nothing is stored). The plugin runs
    once with every input as a single chunk, the reference, and then once per chunking: the
    inputs as their producers chunked them, and each of ``chunkings`` (cut points as fractions
    in [0, 1] of the inputs' span; None: three chunkings cut at random times drawn from
    ``seed``). All inputs are cut at the same times, each moved back to the latest time that
    cuts no row, so the chunk laws hold. Every output of the plugin is compared, chunk by
    chunk of the other chunking, with the reference rows that start in that chunk; the first
    difference raises an AssertionError naming plugin, run, output, chunking, chunk
    ``[t0, t1)``, field and row (so does an exception raised under a chunking).
    """
    ctx = sd.Context(storage=None, plugins=list(plugins), config=config)
    lineages, options, _ = ctx._session.configured(run_id)  # the run's own options
    return check_independence(ctx.registry, lineages, options, target, run_id, chunkings, seed)
