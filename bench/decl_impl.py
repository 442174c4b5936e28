"""W1/W2/W3 written for strax_decl against the API sketch of DESIGN.md (plugins, Context).

The natural port of ``strax_impl.py``, written while strax_decl was being built; it ran against
the working tree of that day (``--quick``, all modes, same row counts as strax). Adapt it if the
API moves. Plugins are thin: all data generation and computation is in ``workloads.py``, shared
with the strax and bare runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import workloads as wl

import strax_decl as sd

__all__ = ["prepare", "run"]

VERSION = "0.0.1"


# ---------------------------------------------------------------------------------------------
# Schemas: must give exactly the dtypes of workloads.py (checked in _check_schemas)
# ---------------------------------------------------------------------------------------------
class Record(sd.Schema):
    time: sd.i64 = sd.field("start time", unit="ns")
    length: sd.i32 = sd.field("number of samples")
    dt: sd.i16 = sd.field("sample width", unit="ns")
    channel: sd.i16
    area: sd.f32 = sd.field("integral", unit="ADC sample")
    data: sd.array(sd.i16, wl.RECORD_LENGTH)


class Peak(sd.Schema):
    time: sd.i64 = sd.field("start time", unit="ns")
    length: sd.i32
    dt: sd.i32 = sd.field("sample width", unit="ns")
    area: sd.f32
    n_records: sd.i32
    data: sd.array(sd.f32, wl.PEAK_LENGTH)


class PeakBasics(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    area: sd.f32
    max_amplitude: sd.f32
    time_of_max: sd.i64
    center_time: sd.i64
    range_50p_area: sd.f32
    range_90p_area: sd.f32


class Event(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    n_peaks: sd.i32
    n_triggers: sd.i32
    area: sd.f32
    largest_peak_area: sd.f32


class W2Row(sd.Schema):
    time: sd.i64
    length: sd.i32
    dt: sd.i16
    value: sd.f64


def _feature_schema(k: int) -> type[sd.Schema]:
    fields = {"time": sd.i64, "endtime": sd.i64, f"feature_{k}": sd.f32}
    return type(f"Feature{k}", (sd.Schema,), {"__annotations__": fields})


FEATURE_SCHEMAS = [_feature_schema(k) for k in range(wl.N_FEATURES)]


def _check_schemas() -> None:
    """The schemas and workloads.py's dtypes must agree, or the kernels' output is rejected."""
    pairs = [
        (Record, wl.RECORD_DTYPE),
        (Peak, wl.PEAK_DTYPE),
        (PeakBasics, wl.PEAK_BASICS_DTYPE),
        (Event, wl.EVENT_DTYPE),
        (W2Row, wl.W2_DTYPE),
        *zip(FEATURE_SCHEMAS, wl.FEATURE_DTYPES, strict=True),
    ]
    for schema, dtype in pairs:
        if schema.dtype != dtype:
            raise TypeError(f"{schema.__name__}: {schema.dtype} != {dtype}")


# ---------------------------------------------------------------------------------------------
# W1
# ---------------------------------------------------------------------------------------------
class SizeOptions(sd.Options):
    n_chunks: int = sd.option(40, ge=1, description="number of chunks")
    rows_per_chunk: int = sd.option(200_000, ge=1000, description="rows per chunk (x1000)")


class RecordSource(sd.Plugin):
    version = VERSION

    class Outputs(sd.Outputs):
        records: Record

    Options = SizeOptions

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        for c in range(self.options.n_chunks):
            start, end, data = wl.records_chunk(c, self.options.rows_per_chunk)
            yield sd.Chunk(start, end, data)


class PeakFinder(sd.Plugin):
    version = VERSION
    parallel = True

    class Inputs(sd.Inputs):
        records: Record

    class Outputs(sd.Outputs):
        peaks: Peak

    def compute(self, records: np.ndarray, start: int, end: int) -> np.ndarray:
        return wl.compute_peaks(records)


class PeakBasicsPlugin(sd.Plugin):
    version = VERSION
    parallel = True

    class Inputs(sd.Inputs):
        peaks: Peak

    class Outputs(sd.Outputs):
        peak_basics: PeakBasics = sd.output(kind="peaks")

    def compute(self, peaks: np.ndarray, start: int, end: int) -> np.ndarray:
        return wl.compute_peak_basics(peaks)


class EventBuilder(sd.OverlapWindowPlugin):
    version = VERSION
    window = wl.EVENT_WINDOW_NS

    class Inputs(sd.Inputs):
        peak_basics: PeakBasics

    class Outputs(sd.Outputs):
        events: Event

    def compute(self, peaks: np.ndarray, start: int, end: int) -> np.ndarray:
        return wl.compute_events(peaks, start, end)  # compute gets one argument per input kind


# ---------------------------------------------------------------------------------------------
# W2
# ---------------------------------------------------------------------------------------------
class W2Source(sd.Plugin):
    version = VERSION

    class Outputs(sd.Outputs):
        level0: W2Row

    class Options(sd.Options):
        n_chunks: int = sd.option(5000, ge=1, description="number of chunks")
        rows_per_chunk: int = sd.option(10, ge=1, description="rows per chunk")

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        for c in range(self.options.n_chunks):
            start, end, data = wl.w2_chunk(c, self.options.rows_per_chunk)
            yield sd.Chunk(start, end, data)


def _plus_one(level: int) -> type[sd.Plugin]:
    """Plugin ``level{level}`` = ``level{level - 1}`` + 1 (names are data, so built with type())."""

    def compute(self: sd.Plugin, **inputs: np.ndarray) -> np.ndarray:  # one input kind
        (rows,) = inputs.values()
        return wl.plus_one(rows)

    inputs = type("Inputs", (sd.Inputs,), {"__annotations__": {f"level{level - 1}": W2Row}})
    outputs = type("Outputs", (sd.Outputs,), {"__annotations__": {f"level{level}": W2Row}})
    attrs = {"version": VERSION, "Inputs": inputs, "Outputs": outputs, "compute": compute}
    return type(f"PlusOne{level}", (sd.Plugin,), attrs)


# ---------------------------------------------------------------------------------------------
# W3
# ---------------------------------------------------------------------------------------------
def _feature(k: int) -> type[sd.Plugin]:
    """Plugin ``feature_{k}``: one row per record, of the records kind."""

    def compute(self: sd.Plugin, records: np.ndarray, start: int, end: int) -> np.ndarray:
        return wl.compute_feature(records, k)

    inputs = type("Inputs", (sd.Inputs,), {"__annotations__": {"records": Record}})
    outputs = type(
        "Outputs",
        (sd.Outputs,),
        {
            "__annotations__": {f"feature_{k}": FEATURE_SCHEMAS[k]},
            f"feature_{k}": sd.output(kind="records"),
        },
    )
    attrs = {
        "version": VERSION,
        "parallel": True,
        "Inputs": inputs,
        "Outputs": outputs,
        "compute": compute,
    }
    return type(f"Feature{k}Plugin", (sd.Plugin,), attrs)


FEATURES = [_feature(k) for k in range(wl.N_FEATURES)]


class MergeFeatures(sd.MergeOnlyPlugin):
    """``record_features``: the fields of the 8 features (output schema derived from inputs)."""

    version = VERSION
    provides = "record_features"
    kind = "records"
    Inputs = type(
        "Inputs",
        (sd.Inputs,),
        {"__annotations__": {f"feature_{k}": FEATURE_SCHEMAS[k] for k in range(wl.N_FEATURES)}},
    )


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------
def _graph(workload: str, mode: str, levels: int) -> tuple[list[type[sd.Plugin]], str]:
    if workload in ("W1", "W1x2"):
        if mode == "reload":
            return [RecordSource], "records"
        return [RecordSource, PeakFinder, PeakBasicsPlugin, EventBuilder], "events"
    if workload == "W2":
        return [W2Source, *(_plus_one(i) for i in range(1, levels + 1))], f"level{levels}"
    if workload == "W3":
        if mode.endswith("onebranch"):
            return [RecordSource, FEATURES[0]], "feature_0"
        return [RecordSource, *FEATURES, MergeFeatures], "record_features"
    raise ValueError(f"unknown workload {workload!r}")


def _context(
    workload: str, mode: str, size: wl.Size, workdir: Path, levels: int
) -> tuple[sd.Context, str]:
    _check_schemas()
    plugins, target = _graph(workload, mode, levels)
    saving = mode.endswith("_save") or mode == "reload"
    ctx = sd.Context(
        storage=str(workdir / "store") if saving else None,
        plugins=plugins,
        config={"n_chunks": size.n_chunks, "rows_per_chunk": size.rows_per_chunk},
        processor="serial" if mode.startswith("serial") else "threaded",
        max_workers=2,
    )
    return ctx, target


def prepare(workload: str, mode: str, size: wl.Size, workdir: Path, run_id: str) -> None:
    """Store ``records`` for the ``reload`` mode (run in its own process, not timed)."""
    if mode != "reload":
        return
    ctx, _ = _context(workload, mode, size, workdir, 0)
    ctx.make(run_id, "records")
    if not ctx.is_stored(run_id, "records"):
        raise RuntimeError("strax_decl did not store records")


def run(
    workload: str, mode: str, size: wl.Size, workdir: Path, run_id: str, levels: int = 0
) -> dict[str, Any]:
    """Run one figure to completion; returns the target and the number of rows it produced."""
    ctx, target = _context(workload, mode, size, workdir, levels)
    if mode == "reload" and not ctx.is_stored(run_id, target):
        raise RuntimeError("reload: records are not stored; prepare() was not run")
    n = 0
    for chunk in ctx.iter_chunks(run_id, target):
        n += len(chunk)
    return {"target": target, "n_out": n}
