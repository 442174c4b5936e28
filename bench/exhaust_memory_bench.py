"""The memory cost of an exhaust plugin (docs/plugins.md, "Exhaust plugins"): its peak next to
a per-chunk plugin doing the same reduction, and next to the bytes of its input.

    python3 bench/exhaust_memory_bench.py [--chunks 100] [--rows 20000] [--reps 3]

One run of ``--chunks`` chunks of ``--rows`` rows (time, endtime, area: 24 bytes a row) is
reduced by a plain plugin (one row per chunk) and by an ``sd.ExhaustPlugin`` (one row per
run), in-process, serial executor, no store. Peak memory is Python's traced allocations
(``tracemalloc``, numpy's buffers included) during ``get_array``, above what was allocated
before it; the two plugins are measured interleaved and the median of ``--reps`` is reported.
One JSON line per figure, then the ratios: exhaust peak / input bytes (expected about 2: the
buffered chunks plus their join) and exhaust peak / per-chunk peak.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tracemalloc
from collections.abc import Iterator

import numpy as np

import strax_decl as sd


class Row(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    area: sd.f64


class Total(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    area: sd.f64
    n: sd.i64


class Rows(sd.Plugin):
    class Outputs(sd.Outputs):
        rows: Row

    class Options(sd.Options):
        n_chunks: int = sd.option(100, description="chunks")
        n_rows: int = sd.option(20_000, description="rows per chunk")

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        n = self.options.n_rows
        for i in range(self.options.n_chunks):
            rows = Row.zeros(n)
            rows["time"] = i * n + np.arange(n)
            rows["endtime"] = rows["time"] + 1
            rows["area"] = 1.0
            yield sd.Chunk(i * n, (i + 1) * n, rows)


def total(rows: np.ndarray, start: int, end: int) -> np.ndarray:
    out = Total.zeros(1)
    out["time"], out["endtime"], out["area"], out["n"] = start, end, rows["area"].sum(), len(rows)
    return out


class PerChunk(sd.Plugin):
    class Inputs(sd.Inputs):
        rows: Row

    class Outputs(sd.Outputs):
        per_chunk: Total

    def compute(self, rows: np.ndarray, start: int, end: int) -> np.ndarray:
        return total(rows, start, end)


class WholeRun(sd.ExhaustPlugin):
    class Inputs(sd.Inputs):
        rows: Row

    class Outputs(sd.Outputs):
        whole_run: Total

    def compute(self, rows: np.ndarray, start: int, end: int) -> np.ndarray:
        return total(rows, start, end)


def peak_mb(ctx: sd.Context, target: str, expect_area: float) -> float:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    got = ctx.get_array("run_1", target)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert got["area"].sum() == expect_area, target
    return (peak - base) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    config = {"n_chunks": args.chunks, "n_rows": args.rows}
    ctx = sd.Context(
        storage=None, plugins=[Rows, PerChunk, WholeRun], config=config, processor="serial"
    )
    input_mb = args.chunks * args.rows * Row.dtype.itemsize / 1e6
    expect = float(args.chunks * args.rows)
    ctx.get_array("run_1", "whole_run")  # warm-up: numba kernels, imports
    peaks: dict[str, list[float]] = {"per_chunk": [], "whole_run": []}
    for _ in range(args.reps):
        for target in peaks:  # interleaved
            peaks[target].append(peak_mb(ctx, target, expect))
    figures = {t: statistics.median(v) for t, v in peaks.items()}
    print(json.dumps({"figure": "input_mb", "value": round(input_mb, 1), **config}))
    for target, value in figures.items():
        print(json.dumps({"figure": f"{target}_peak_mb", "value": round(value, 1)}))
    print(
        json.dumps(
            {
                "figure": "exhaust_peak_over_input",
                "value": round(figures["whole_run"] / input_mb, 2),
            }
        )
    )
    print(
        json.dumps(
            {
                "figure": "exhaust_peak_over_per_chunk_peak",
                "value": round(figures["whole_run"] / figures["per_chunk"], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
