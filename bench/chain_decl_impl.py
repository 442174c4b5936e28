"""The chain of ``chain_workload`` on strax_decl: the example plugins, fed by a replay source.

``ReplayRecords`` yields the records simulated once (``records.npy``) cut into the wanted
number of chunks. ``make`` of both leaves runs the whole chain in one pipeline: with saving
every data type is stored, without a store nothing is.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chain_workload as cw
import numpy as np

import strax_decl as sd

__all__ = ["check", "load", "run"]

AP = cw.plugins_module()


class ReplayRecords(sd.Plugin):
    """Source: the records of ``records.npy``, cut between records into ``n_chunks``."""

    version = "0.1.0"

    class Outputs(sd.Outputs):
        records: AP.Record  # type: ignore[name-defined]

    class Options(sd.Options):
        records_file: str = sd.option("", track=False, description="the simulated records")
        n_chunks: int = sd.option(5, ge=1, description="chunks to cut them into")
        span: int = sd.option(cw.RUN_NS, gt=0, description="run length [ns]")

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        o = self.options
        records = np.load(o.records_file)
        # A view of the sorted rows' prefix, not a copy: the source holds the run once, so
        # the run-length RSS figure measures the pipeline, not this replay.
        records = records[: int(np.searchsorted(records["time"], o.span - 1100, side="right"))]
        for start, end, a, b in cw.cuts(records, o.span, o.n_chunks):
            yield sd.Chunk(start, end, records[a:b])


PLUGINS = [ReplayRecords, *AP.PLUGINS[1:]]


def context(workdir: Path, n_chunks: int, span: int, save: bool) -> sd.Context:
    config: dict[str, Any] = {
        "records_file": str(cw.records_path(workdir.parent)),
        "n_chunks": n_chunks,
        "span": span,
        **cw.PER_RUN,
    }
    store = str(workdir / "store") if save else None
    return sd.Context(storage=store, plugins=PLUGINS, config=config, processor="threaded")


def run(workdir: Path, run_id: str, n_chunks: int, span: int, save: bool) -> dict[str, Any]:
    ctx = context(workdir, n_chunks, span, save)
    ctx.make(run_id, list(cw.TARGETS))  # without a store: computed in one pipeline, not kept
    return {}


def check(workdir: Path, run_id: str, n_chunks: int, span: int) -> dict[str, Any]:
    """(Untimed) every stored data type, for the digest."""
    ctx = context(workdir, n_chunks, span, True)
    digest = cw.Digest()
    for data_type in cw.DATA_TYPES:
        digest.add(data_type, ctx.get_array(run_id, data_type))
    return digest.result()


def _store_files(workdir: Path) -> list[Path]:
    return sorted(p for p in (workdir / "store").rglob("*") if p.is_file())


def _read_bytes(files: list[Path], decode: bool) -> float:
    """Seconds to read every file (and, with ``decode``, to check and decompress every chunk
    file: the least any loader must do with the bytes)."""
    import zstandard
    from numcodecs import blosc

    from strax_storage.codec import decode as check_and_decode

    t0 = time.perf_counter()
    for path in files:
        blob = path.read_bytes()
        if decode and "/c/" in path.as_posix() and len(blob) > 4:
            frame = memoryview(blob)[:-4]
            if frame[:4] == b"\x28\xb5\x2f\xfd":  # a zstd frame (its size is in its header)
                n = zstandard.frame_content_size(frame)
            else:
                n = blosc._cbuffer_sizes(frame)[0]
            check_and_decode(blob, n, None if frame[:4] == b"\x28\xb5\x2f\xfd" else _BLOSC)
    return time.perf_counter() - t0


class _Blosc:
    kind = "blosc"


_BLOSC: Any = _Blosc()


def load(workdir: Path, run_id: str, n_chunks: int, span: int, reps: int = 3) -> dict[str, Any]:
    """Reloading every stored data type (a fresh context each time: nothing cached) vs reading
    the same files' bytes, and vs reading and decompressing them; medians of ``reps``,
    interleaved. The files are read once first, so every figure reads from the page cache."""
    files = _store_files(workdir)
    _read_bytes(files, decode=False)
    loads, reads, decodes = [], [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        ctx = context(workdir, n_chunks, span, True)
        for data_type in cw.DATA_TYPES:
            ctx.get_array(run_id, data_type)
        loads.append(time.perf_counter() - t0)
        reads.append(_read_bytes(files, decode=False))
        decodes.append(_read_bytes(files, decode=True))
    return {
        "load_s": statistics.median(loads),
        "read_bytes_s": statistics.median(reads),
        "read_decode_s": statistics.median(decodes),
        "stored_MB": sum(os.path.getsize(p) for p in files) / 1e6,
        "n_files": len(files),
    }
