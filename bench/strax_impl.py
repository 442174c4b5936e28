"""W1/W2/W3 written as strax 2.2.3 plugins: the reference side of ``pipeline_bench.py``.

How strax was installed (the system python needs numpy 2.4, numba 0.68 and zarr 3.1 for
strax_decl, and strax 2.2.3 pins ``zarr<3`` and ``numcodecs<0.16``): strax imports zarr only
inside ``Context.get_zarr`` and numcodecs never, so it is installed without its dependency list,
plus the runtime dependencies it imports that were missing (none of which changes numpy, numba
or zarr; checked with ``pip install --dry-run``)::

    pip install --no-deps strax==2.2.3
    pip install blosc zstd lz4 pytz immutabledict numexpr dill deepdiff pymongo

(``pip install -e .[bench]`` cannot resolve: the extra's ``strax==2.2.3`` conflicts with
``zarr>=3.1``.) Plugins are thin: all data generation and computation is in ``workloads.py``.
Settings are strax's defaults (blosc, rechunk on save) except ``parallel = True`` on the
per-chunk plugins, which only the threaded mailbox processor uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import strax
import workloads as wl

__all__ = ["prepare", "run"]

VERSION = "0.0.1"


# ---------------------------------------------------------------------------------------------
# W1 (and W3's source)
# ---------------------------------------------------------------------------------------------
class Records(strax.Plugin):
    """Source: deterministic records, built by ``workloads.records_chunk``."""

    __version__ = VERSION
    provides = "records"
    depends_on = ()
    data_kind = "records"
    dtype = wl.RECORD_DTYPE
    n_chunks = strax.Config(default=40, type=int, help="number of chunks")
    rows_per_chunk = strax.Config(default=200_000, type=int, help="records per chunk")

    def source_finished(self) -> bool:
        return True

    def is_ready(self, chunk_i: int) -> bool:
        return chunk_i < self.n_chunks

    def compute(self, chunk_i: int) -> strax.Chunk:
        start, end, data = wl.records_chunk(chunk_i, self.rows_per_chunk)
        return self.chunk(start=start, end=end, data=data)


class Peaks(strax.Plugin):
    __version__ = VERSION
    provides = "peaks"
    depends_on = ("records",)
    data_kind = "peaks"
    dtype = wl.PEAK_DTYPE
    parallel = True

    def compute(self, records: np.ndarray) -> np.ndarray:
        return wl.compute_peaks(records)


class PeakBasics(strax.Plugin):
    __version__ = VERSION
    provides = "peak_basics"
    depends_on = ("peaks",)
    data_kind = "peaks"
    dtype = wl.PEAK_BASICS_DTYPE
    parallel = True

    def compute(self, peaks: np.ndarray) -> np.ndarray:
        return wl.compute_peak_basics(peaks)


class Events(strax.OverlapWindowPlugin):
    __version__ = VERSION
    provides = "events"
    depends_on = ("peak_basics",)
    data_kind = "events"
    dtype = wl.EVENT_DTYPE

    def get_window_size(self) -> int:
        return wl.EVENT_WINDOW_NS

    def compute(self, peaks: np.ndarray, start: int, end: int) -> np.ndarray:
        return wl.compute_events(peaks, start, end)


# ---------------------------------------------------------------------------------------------
# W2
# ---------------------------------------------------------------------------------------------
class W2Source(strax.Plugin):
    __version__ = VERSION
    provides = "level0"
    depends_on = ()
    data_kind = "w2rows"
    dtype = wl.W2_DTYPE
    n_chunks = strax.Config(default=5000, type=int, help="number of chunks")
    rows_per_chunk = strax.Config(default=10, type=int, help="rows per chunk")

    def source_finished(self) -> bool:
        return True

    def is_ready(self, chunk_i: int) -> bool:
        return chunk_i < self.n_chunks

    def compute(self, chunk_i: int) -> strax.Chunk:
        start, end, data = wl.w2_chunk(chunk_i, self.rows_per_chunk)
        return self.chunk(start=start, end=end, data=data)


class _PlusOne(strax.Plugin):
    __version__ = VERSION
    data_kind = "w2rows"
    dtype = wl.W2_DTYPE

    def compute(self, w2rows: np.ndarray) -> np.ndarray:
        return wl.plus_one(w2rows)


def _w2_chain(levels: int) -> list[type[strax.Plugin]]:
    """The source and ``levels`` ``+1`` plugins, level i consuming level i - 1."""
    chain: list[type[strax.Plugin]] = [W2Source]
    for i in range(1, levels + 1):
        attrs = {"provides": f"level{i}", "depends_on": (f"level{i - 1}",)}
        chain.append(type(f"PlusOne{i}", (_PlusOne,), attrs))
    return chain


# ---------------------------------------------------------------------------------------------
# W3
# ---------------------------------------------------------------------------------------------
class _Feature(strax.Plugin):
    __version__ = VERSION
    depends_on = ("records",)
    data_kind = "records"
    parallel = True
    feature = 0

    def compute(self, records: np.ndarray) -> np.ndarray:
        return wl.compute_feature(records, self.feature)


FEATURES: list[type[strax.Plugin]] = [
    type(
        f"Feature{k}",
        (_Feature,),
        {"provides": f"feature_{k}", "dtype": wl.FEATURE_DTYPES[k], "feature": k},
    )
    for k in range(wl.N_FEATURES)
]


class RecordFeatures(strax.MergeOnlyPlugin):
    __version__ = VERSION
    provides = "record_features"
    depends_on = tuple(f"feature_{k}" for k in range(wl.N_FEATURES))


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------
def _graph(workload: str, mode: str, levels: int) -> tuple[list[type[strax.Plugin]], str]:
    """(plugins to register, target) of a workload."""
    if workload in ("W1", "W1x2"):
        if mode == "reload":
            return [Records], "records"
        return [Records, Peaks, PeakBasics, Events], "events"
    if workload == "W2":
        return _w2_chain(levels), f"level{levels}"
    if workload == "W3":
        if mode.endswith("onebranch"):
            return [Records, FEATURES[0]], "feature_0"
        return [Records, *FEATURES, RecordFeatures], "record_features"
    raise ValueError(f"unknown workload {workload!r}")


def _context(
    workload: str, mode: str, size: wl.Size, workdir: Path, levels: int
) -> tuple[strax.Context, str]:
    plugins, target = _graph(workload, mode, levels)
    saving = mode.endswith("_save") or mode == "reload"
    storage = [strax.DataDirectory(str(workdir / "strax_data"))] if saving else []
    config = {"n_chunks": size.n_chunks, "rows_per_chunk": size.rows_per_chunk}
    return strax.Context(storage=storage, register=plugins, config=config), target


def _iterate(ctx: strax.Context, run_id: str, target: str, mode: str) -> Iterator[strax.Chunk]:
    if mode.startswith("threaded"):
        return ctx.get_iter(
            run_id, target, processor="threaded_mailbox", max_workers=2, progress_bar=False
        )
    return ctx.get_iter(run_id, target, processor="default", progress_bar=False)


def prepare(workload: str, mode: str, size: wl.Size, workdir: Path, run_id: str) -> None:
    """Store ``records`` for the ``reload`` mode (run in its own process, not timed)."""
    if mode != "reload":
        return
    ctx, _ = _context(workload, mode, size, workdir, 0)
    ctx.make(run_id, "records", progress_bar=False)
    if not ctx.is_stored(run_id, "records"):
        raise RuntimeError("strax did not store records")


def run(
    workload: str, mode: str, size: wl.Size, workdir: Path, run_id: str, levels: int = 0
) -> dict[str, Any]:
    """Run one figure to completion; returns the target and the number of rows it produced."""
    ctx, target = _context(workload, mode, size, workdir, levels)
    if mode == "reload" and not ctx.is_stored(run_id, target):
        raise RuntimeError("reload: records are not stored; prepare() was not run")
    n = 0
    for chunk in _iterate(ctx, run_id, target, mode):
        n += len(chunk)
    return {"target": target, "n_out": n}
