"""The chain of ``chain_workload`` as a bare loop over the same kernels: the floor.

Chunk after chunk, each example plugin's ``compute`` / ``compute_loop`` is called directly;
the overlap windows and the loop's containment join are done by hand with strax_decl's rules
(cache the input reaching ``left`` before what is unsent, hold back rows within ``right`` of
the input's end), so the rows are bit-identical to the framework's. No threads, no checks.

``check`` (after the timed loop) measures what storing costs at the least, two ways: every
output's bytes compressed once, per field with the store's default codec (``compress_s``),
and every output written once by the store itself, as one chunk per data type into a fresh
local store next to the framework's (``store_write_s``: the compression plus the files,
directories and metadata the store's layout needs; on a disk whose file creation is slow and
noisy that part is most of it, and it is paid whatever the framework does).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chain_workload as cw
import numpy as np

from strax_storage.chunk import Chunk, endtimes, safe_split_point

__all__ = ["run"]

AP = cw.plugins_module()


class Window:
    """An overlap-window plugin by hand (strax_decl's OverlapWindowRunner rules)."""

    def __init__(self, fn: Callable[[np.ndarray, int, int], np.ndarray], window: Any) -> None:
        self.fn = fn
        self.left, self.right = window
        self.cache: np.ndarray | None = None
        self.cache_start = 0
        self.sent: int | None = None
        self.held: np.ndarray | None = None

    def feed(self, rows: np.ndarray, start: int, end: int) -> np.ndarray:
        if self.cache is not None:
            rows = np.concatenate([self.cache, rows]) if len(self.cache) else rows
            start = self.cache_start
        if self.sent is None:
            self.sent = start
        result = self.fn(rows, start, end)
        new = result[np.searchsorted(result["time"], self.sent, side="left") :]
        cut = max(self.sent, end - self.right - 1)
        cut = safe_split_point(Chunk(self.sent, end, new), cut)
        i = int(np.searchsorted(new["time"], cut, side="left"))
        ready = new[:i] if cut > self.sent else new[:0]
        self.held = new[i:] if cut > self.sent else new
        self.sent = max(self.sent, cut)
        keep_from = safe_split_point(Chunk(start, end, rows), self.sent - self.left - 1)
        keep_from = max(keep_from, start)
        self.cache = rows[np.searchsorted(rows["time"], keep_from, side="left") :]
        self.cache_start = keep_from
        return ready

    def flush(self) -> np.ndarray:
        assert self.held is not None
        return self.held


def _merge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a_names, b_names = a.dtype.names or (), b.dtype.names or ()
    names = list(a_names) + [n for n in b_names if n not in a_names]
    dtype = np.dtype([(n, (b if n in b_names else a).dtype[n]) for n in names])
    out = np.empty(len(a), dtype)
    for n in a.dtype.names or ():
        out[n] = a[n]
    for n in b.dtype.names or ():
        out[n] = b[n]
    return out


class Chain:
    def __init__(self) -> None:
        k = {cls.__name__: cw.kernel(cls) for cls in AP.PLUGINS[1:]}
        self.k = k
        self.hits = lambda r: AP.Hits.compute(k["Hits"], r)
        self.peaklets = Window(
            lambda h, s, e: AP.Peaklets.compute(k["Peaklets"], h),
            AP.Peaklets.window_size(k["Peaklets"]),
        )
        self.proximity = Window(
            lambda p, s, e: AP.PeakProximity.compute(k["PeakProximity"], p),
            AP.PeakProximity.window_size(k["PeakProximity"]),
        )
        self.events = Window(
            lambda p, s, e: AP.Events.compute(k["Events"], p, s, e),
            AP.Events.window_size(k["Events"]),
        )
        self.peak_buffer: np.ndarray | None = None
        self.out: dict[str, list[np.ndarray]] = {d: [] for d in cw.DATA_TYPES}

    def step(self, records: np.ndarray, start: int, end: int, last: bool) -> None:
        k, out = self.k, self.out
        out["records"].append(records)
        hits = self.hits(records)
        out["hits"].append(hits)
        before = self.peaklets.sent if self.peaklets.sent is not None else start
        peaklets = self.peaklets.feed(hits, start, end)
        if last:
            peaklets = np.concatenate([peaklets, self.peaklets.flush()])
        else:  # peaklets (and all after them) are known over [before, sent) only
            assert self.peaklets.sent is not None
            start, end = before, self.peaklets.sent
            if end <= start:
                return
        out["peaklets"].append(peaklets)
        classification = AP.PeakletClassification.compute(k["PeakletClassification"], peaklets)
        out["peaklet_classification"].append(classification)
        merged = _merge(peaklets, classification)
        basics = AP.PeakBasics.compute(k["PeakBasics"], merged)
        out["peak_basics"].append(basics)
        proximity = self.proximity.feed(basics, start, end)
        events = self.events.feed(basics, start, end)
        if last:
            proximity = np.concatenate([proximity, self.proximity.flush()])
            events = np.concatenate([events, self.events.flush()])
        out["peak_proximity"].append(proximity)
        out["events"].append(events)
        peaks = basics if self.peak_buffer is None else np.concatenate([self.peak_buffer, basics])
        out["event_basics"].append(self.event_basics(events, peaks))
        cut = self.events.sent if self.events.sent is not None else start
        self.peak_buffer = peaks[np.searchsorted(peaks["time"], cut, side="left") :]

    def event_basics(self, events: np.ndarray, peaks: np.ndarray) -> np.ndarray:
        me = self.k["EventBasics"]
        rows = AP.EventBasic.zeros(len(events))
        rows["time"], rows["endtime"] = events["time"], events["endtime"]
        ends = endtimes(peaks)
        lo = np.searchsorted(peaks["time"], events["time"], side="left")
        hi = np.searchsorted(peaks["time"], events["endtime"], side="left")
        for i in range(len(events)):
            inside = peaks[lo[i] : hi[i]][ends[lo[i] : hi[i]] <= events["endtime"][i]]
            for f, v in AP.EventBasics.compute_loop(me, events[i], inside).items():
                rows[f][i] = v
        return rows


def _compress(out: dict[str, list[np.ndarray]]) -> tuple[float, int]:
    """Seconds to compress every output once (per field, the store's default codec)."""
    from strax_storage.codec import encode
    from strax_storage.codec_choice import auto_codec
    from strax_storage.dtypes import field_specs

    t0 = time.perf_counter()
    nbytes = 0
    for parts in out.values():
        rows = np.concatenate(parts)
        for spec in field_specs(rows.dtype):
            column = np.ascontiguousarray(rows[spec.name])
            nbytes += column.nbytes
            encode(column, auto_codec(spec))
    return time.perf_counter() - t0, nbytes


def run(workdir: Path, run_id: str, n_chunks: int, span: int, save: bool) -> dict[str, Any]:
    del run_id, save  # nothing is stored; check() times the compression
    t0 = time.perf_counter()
    records = np.load(cw.records_path(workdir.parent))
    records = records[records["time"] + 1100 <= span]
    chain = Chain()
    pieces = cw.cuts(records, span, n_chunks)
    for j, (start, end, a, b) in enumerate(pieces):
        chain.step(records[a:b], start, end, j == len(pieces) - 1)
    _LAST[:] = [chain]
    return {"loop_s": time.perf_counter() - t0}


_LAST: list[Chain] = []


def check(workdir: Path, run_id: str, n_chunks: int, span: int) -> dict[str, Any]:
    """(Untimed, after ``run``) the digest of every output, and the compression's seconds."""
    (chain,) = _LAST
    digest = cw.Digest()
    for d in cw.DATA_TYPES:
        digest.add(d, np.concatenate(chain.out[d]))
    result = digest.result()
    result["compress_s"], result["saved_bytes"] = _compress(chain.out)
    result["store_write_s"] = _store_write(workdir / "store-floor", run_id, chain.out)
    return result


def _store_write(root: Path, run_id: str, out: dict[str, list[np.ndarray]]) -> float:
    """Seconds for the store to write every output once (one chunk each, default codecs)."""
    from strax_storage import DataKey, open_store
    from strax_storage.chunk import endtimes

    rows = {d: np.concatenate(parts) for d, parts in out.items()}
    t0 = time.perf_counter()
    store = open_store(str(root))
    for data_type, data in rows.items():
        end = int(endtimes(data).max()) + 1 if len(data) else 1
        saver = store.saver(DataKey(run_id, data_type, "fl2or"), data.dtype, {})
        saver.send(Chunk(0, end, data))
        saver.close()
    return time.perf_counter() - t0
