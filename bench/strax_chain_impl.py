"""The chain of ``chain_workload`` as strax 2.2.3 plugins, calling the example's own kernels.

Each plugin's ``compute`` calls the example plugin's method with the same options
(``chain_workload.kernel``). strax's overlap windows are symmetric, so they get the larger
side of the example's ``(left, right)``; its loop plugin does not pre-fill ``time`` and
``endtime``, so ``compute_loop`` adds them. Settings are strax's defaults (its default,
single-threaded processor; blosc, rechunk on save).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chain_workload as cw
import numpy as np
import strax

__all__ = ["check", "run"]

AP = cw.plugins_module()
K = {cls.__name__: cw.kernel(cls) for cls in AP.PLUGINS[1:]}
VERSION = "0.1.0"


class ReplayRecords(strax.Plugin):
    __version__ = VERSION
    provides = "records"
    depends_on = ()
    data_kind = "records"
    dtype = AP.Record.dtype
    records_file = strax.Config(default="", type=str, track=False, help="records.npy")
    n_chunks = strax.Config(default=5, type=int, help="chunks")
    span = strax.Config(default=cw.RUN_NS, type=int, help="run length")

    def setup(self) -> None:
        records = np.load(self.records_file)
        self.records = records[records["time"] + 1100 <= self.span]
        self.pieces = cw.cuts(self.records, self.span, self.n_chunks)

    def source_finished(self) -> bool:
        return True

    def is_ready(self, chunk_i: int) -> bool:
        return chunk_i < len(self.pieces)

    def compute(self, chunk_i: int) -> strax.Chunk:
        start, end, a, b = self.pieces[chunk_i]
        return self.chunk(start=start, end=end, data=self.records[a:b])


class Hits(strax.Plugin):
    __version__ = VERSION
    provides = "hits"
    depends_on = ("records",)
    data_kind = "hits"
    dtype = AP.Hit.dtype
    parallel = True

    def compute(self, records: np.ndarray) -> np.ndarray:
        return AP.Hits.compute(K["Hits"], records)


class Peaklets(strax.OverlapWindowPlugin):
    __version__ = VERSION
    provides = "peaklets"
    depends_on = ("hits",)
    data_kind = "peaklets"
    dtype = AP.Peaklet.dtype

    def get_window_size(self) -> int:
        return max(AP.Peaklets.window_size(K["Peaklets"]))

    def compute(self, hits: np.ndarray) -> np.ndarray:
        return AP.Peaklets.compute(K["Peaklets"], hits)


class PeakletClassification(strax.Plugin):
    __version__ = VERSION
    provides = "peaklet_classification"
    depends_on = ("peaklets",)
    data_kind = "peaklets"
    dtype = AP.Classification.dtype

    def compute(self, peaklets: np.ndarray) -> np.ndarray:
        return AP.PeakletClassification.compute(K["PeakletClassification"], peaklets)


class PeakBasics(strax.Plugin):
    __version__ = VERSION
    provides = "peak_basics"
    depends_on = ("peaklets", "peaklet_classification")
    data_kind = "peaklets"
    dtype = AP.PeakBasic.dtype

    def compute(self, peaklets: np.ndarray) -> np.ndarray:
        return AP.PeakBasics.compute(K["PeakBasics"], peaklets)


class PeakProximity(strax.OverlapWindowPlugin):
    __version__ = VERSION
    provides = "peak_proximity"
    depends_on = ("peak_basics",)
    data_kind = "peaklets"
    dtype = AP.Proximity.dtype

    def get_window_size(self) -> int:
        return max(AP.PeakProximity.window_size(K["PeakProximity"]))

    def compute(self, peaklets: np.ndarray) -> np.ndarray:
        return AP.PeakProximity.compute(K["PeakProximity"], peaklets)


class Events(strax.OverlapWindowPlugin):
    __version__ = VERSION
    provides = "events"
    depends_on = ("peak_basics",)
    data_kind = "events"
    dtype = AP.Event.dtype

    def get_window_size(self) -> int:
        return max(AP.Events.window_size(K["Events"]))

    def compute(self, peaklets: np.ndarray, start: int, end: int) -> np.ndarray:
        return AP.Events.compute(K["Events"], peaklets, start, end)


class EventBasics(strax.LoopPlugin):
    __version__ = VERSION
    provides = "event_basics"
    depends_on = ("events", "peak_basics")
    data_kind = "events"
    loop_over = "events"
    dtype = AP.EventBasic.dtype

    def compute_loop(self, events: np.void, peaklets: np.ndarray) -> dict[str, Any]:
        row = dict(AP.EventBasics.compute_loop(K["EventBasics"], events, peaklets))
        row.update(time=events["time"], endtime=events["endtime"])
        return row


PLUGINS = [
    ReplayRecords,
    Hits,
    Peaklets,
    PeakletClassification,
    PeakBasics,
    PeakProximity,
    Events,
    EventBasics,
]


def _context(workdir: Path, n_chunks: int, span: int, save: bool) -> strax.Context:
    storage = [strax.DataDirectory(str(workdir / "strax_data"))] if save else []
    config = {
        "records_file": str(cw.records_path(workdir.parent)),
        "n_chunks": n_chunks,
        "span": span,
    }
    return strax.Context(storage=storage, register=PLUGINS, config=config)


def run(workdir: Path, run_id: str, n_chunks: int, span: int, save: bool) -> dict[str, Any]:
    ctx = _context(workdir, n_chunks, span, save)
    # strax makes targets of one kind per call: the second call loads peak_basics when
    # saving, and computes the chain up to it again without saving
    for target in cw.TARGETS:
        for _ in _iter(ctx, run_id, target):
            pass
    return {}


def check(workdir: Path, run_id: str, n_chunks: int, span: int) -> dict[str, Any]:
    ctx = _context(workdir, n_chunks, span, True)
    digest = cw.Digest()
    for data_type in cw.DATA_TYPES:
        digest.add(data_type, ctx.get_array(run_id, data_type, progress_bar=False))
    return digest.result()


def _iter(ctx: strax.Context, run_id: str, target: str) -> Iterator[strax.Chunk]:
    return ctx.get_iter(run_id, target, progress_bar=False)
