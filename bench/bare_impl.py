"""W1/W2/W3 as a bare Python loop over the same kernels: the floor any framework adds to.

No threads, no mailboxes, no checks, no saving: chunk after chunk, each kernel called directly.
The overlap window for events is done by hand, with strax's rules (cache inputs and results
within twice the window of the chunk end), so it produces exactly the same events.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import workloads as wl

__all__ = ["OverlapWindow", "run"]


def _early_split(rows: np.ndarray, t: int) -> int:
    """``t``, or earlier if a row straddles it (strax's ``allow_early_split`` for disjoint rows)."""
    straddling = rows["time"][(rows["time"] < t) & (rows["endtime"] > t)]
    return int(straddling.min()) if len(straddling) else t


class OverlapWindow:
    """Feed time-ordered, non-overlapping rows chunk by chunk; get final results back.

    Same rules as strax's OverlapWindowPlugin: results within ``2 * window`` of the inputs' end
    are held back (they may change when more input arrives) and the inputs needed to recompute
    them are carried into the next call.
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self.cached: np.ndarray | None = None
        self.cached_start = 0
        self.sent_until = 0
        self.pending: np.ndarray | None = None

    def feed(self, rows: np.ndarray, start: int, end: int) -> np.ndarray:
        """Results that are final after input [start, end) (``rows``) has arrived."""
        if self.cached is not None:
            rows = np.concatenate([self.cached, rows])
            start = self.cached_start
        result = wl.compute_events(rows, start, end)
        result = result[result["time"] >= self.sent_until]
        split = _early_split(result, end - 2 * self.window - 1)
        keep = result["time"] >= split
        self.pending = result[keep]
        self.sent_until = split
        cache_from = _early_split(rows, split - 2 * self.window - 1)
        self.cached = rows[rows["time"] >= cache_from]
        self.cached_start = cache_from
        return result[~keep]

    def flush(self) -> np.ndarray:
        """The held-back results, once the input has ended."""
        pending = self.pending if self.pending is not None else np.zeros(0, wl.EVENT_DTYPE)
        self.pending = None
        return pending


def _w1(size: wl.Size) -> int:
    window = OverlapWindow(wl.EVENT_WINDOW_NS)
    n = 0
    for c in range(size.n_chunks):
        start, end, records = wl.records_chunk(c, size.rows_per_chunk)
        basics = wl.compute_peak_basics(wl.compute_peaks(records))
        n += len(window.feed(basics, start, end))
    return n + len(window.flush())


def _w2(size: wl.Size, levels: int) -> int:
    n = 0
    for c in range(size.n_chunks):
        _, _, rows = wl.w2_chunk(c, size.rows_per_chunk)
        for _ in range(levels):
            rows = wl.plus_one(rows)
        n += len(rows)
    return n


def _w3(size: wl.Size, one_branch: bool) -> int:
    n = 0
    for c in range(size.n_chunks):
        _, _, records = wl.records_chunk(c, size.rows_per_chunk)
        if one_branch:
            n += len(wl.compute_feature(records, 0))
        else:
            features = [wl.compute_feature(records, k) for k in range(wl.N_FEATURES)]
            n += len(wl.merge_features(features))
    return n


def run(
    workload: str, mode: str, size: wl.Size, workdir: Path, run_id: str, levels: int = 0
) -> dict[str, Any]:
    """Run one figure to completion; returns the target and the number of rows it produced."""
    del workdir, run_id  # nothing is stored
    if mode not in ("default_nosave", "default_onebranch"):
        raise ValueError(f"bare has no mode {mode!r}")
    if workload in ("W1", "W1x2"):
        return {"target": "events", "n_out": _w1(size)}
    if workload == "W2":
        return {"target": f"level{levels}", "n_out": _w2(size, levels)}
    if workload == "W3":
        one_branch = mode == "default_onebranch"
        target = "feature_0" if one_branch else "record_features"
        return {"target": target, "n_out": _w3(size, one_branch)}
    raise ValueError(f"unknown workload {workload!r}")
