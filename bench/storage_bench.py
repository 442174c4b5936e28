"""Storage benchmark: the chunk store against plain zstandard on the same bytes, same run.

Writes and reads ~1 GB of strax-like ``records`` (``time i8, length i4, dt i2, channel i2,
area f4, data i2[110]``; 240 B/row) in 200,000-row strax chunks, built like workload W1 of
``shared/bench/workloads.md``: consecutive rows of a seeded pool of 65,536 waveforms (noise in
[-2, 2], an exponential pulse on one row in 8), 1100 ns records in blocks of 1000 separated by
50 us gaps.

Two references compress each field column of each strax chunk and write it to its own file,
and read + decompress those files, on a thread pool of the same size as the store's
(``STORAGE_THREADS``, default 2): "raw_zstd" with ``zstandard`` at the same level, and
"raw_best" with, per field, the best raw codec of ``bench/codec_bench.py`` (the codec the
store's default rule picks for that field: Blosc zstd bit shuffle via numcodecs, or zstd),
called directly, no checksum. The store figure is ``Saver.save_from`` (until ``close``
returns: data set complete and renamed into place) and a full ``Store.load`` iteration
(verified, checksummed, assembled into strax chunks). Ratios: store / raw_best (target 0.8)
and store / raw_zstd.

Prints one JSON line per figure (medians of ``--repeats`` interleaved repeats; the machine is
noisy). ``--sweep`` also prints write/read/ratio for a few rows-per-chunk and zstd levels, the
evidence for the defaults.

    python bench/storage_bench.py [--mb 1000] [--repeats 3] [--sweep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import zstandard
from numcodecs import blosc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from strax_storage import Chunk, DataKey, open_store
from strax_storage.codec import BLOSC_SHUFFLES, DEFAULT_LEVEL, Codec
from strax_storage.codec_choice import auto_codec
from strax_storage.dtypes import field_specs, rows_per_chunk_for
from strax_storage.pool import n_threads
from strax_storage.store import DEFAULT_CHUNK_BYTES

RECORD_DTYPE = np.dtype(
    [
        ("time", "<i8"),
        ("length", "<i4"),
        ("dt", "<i2"),
        ("channel", "<i2"),
        ("area", "<f4"),
        ("data", "<i2", (110,)),
    ]
)
ROWS_PER_STRAX_CHUNK = 200_000
MB = 1e6


def waveform_pool(seed: int = 20_240_611, n: int = 65_536) -> np.ndarray:
    """Noise in [-2, 2] on every row, an exponential pulse on one row in 8."""
    rng = np.random.default_rng(seed)
    pool = rng.integers(-2, 3, size=(n, 110)).astype(np.int16)
    rows = np.flatnonzero(rng.random(n) < 1 / 8)
    samples = np.arange(110)
    onset = rng.integers(5, 60, size=len(rows))
    amplitude = rng.exponential(38.0, size=len(rows)) + 5
    shape = np.where(samples >= onset[:, None], np.exp(-(samples - onset[:, None]) / 12.1), 0.0)
    pool[rows] += (shape * amplitude[:, None]).astype(np.int16)
    return pool


def make_chunks(n_chunks: int) -> list[Chunk]:
    pool = waveform_pool()
    rng = np.random.default_rng(1)
    chunks: list[Chunk] = []
    for c in range(n_chunks):
        k = np.arange(c * ROWS_PER_STRAX_CHUNK, (c + 1) * ROWS_PER_STRAX_CHUNK, dtype=np.int64)
        rows = np.zeros(len(k), RECORD_DTYPE)
        rows["time"] = 25_000 + k * 1100 + (k // 1000) * 50_000
        rows["length"] = 110
        rows["dt"] = 10
        rows["channel"] = rng.integers(0, 494, len(k))
        rows["data"] = pool[k % len(pool)]
        rows["area"] = rows["data"].sum(axis=1)
        end = 25_000 + int(k[-1] + 1) * 1100 + (int(k[-1] + 1) // 1000) * 50_000
        chunks.append(Chunk(chunks[-1].end if chunks else 0, end, rows))
    return chunks


class RawZstd:
    """The reference: one zstd frame per field column per strax chunk, one file each."""

    def __init__(self, directory: Path, level: int, threads: int) -> None:
        self.directory = directory
        self.level = level
        self.threads = threads
        self._local = threading.local()
        self.stored_bytes = 0

    def _compressor(self) -> zstandard.ZstdCompressor:
        c = getattr(self._local, "c", None)
        if c is None:
            c = self._local.c = zstandard.ZstdCompressor(level=self.level)
        return c

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        d = getattr(self._local, "d", None)
        if d is None:
            d = self._local.d = zstandard.ZstdDecompressor()
        return d

    def _compress(self, name: str, column: np.ndarray) -> bytes:
        return self._compressor().compress(column.data)

    def _decompress(self, name: str, frame: bytes) -> bytes:
        return self._decompressor().decompress(frame)

    def _write_one(self, i: int, name: str, rows: np.ndarray) -> int:
        frame = self._compress(name, np.ascontiguousarray(rows[name]))
        with open(self.directory / f"{i}_{name}", "wb") as f:
            f.write(frame)
        return len(frame)

    def _read_one(self, i: int, name: str) -> int:
        with open(self.directory / f"{i}_{name}", "rb") as f:
            return len(self._decompress(name, f.read()))

    def write(self, chunks: list[Chunk]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        assert RECORD_DTYPE.names is not None
        with ThreadPoolExecutor(self.threads) as ex:
            futures = [
                ex.submit(self._write_one, i, name, c.data)
                for i, c in enumerate(chunks)
                for name in RECORD_DTYPE.names
            ]
            self.stored_bytes = sum(f.result() for f in futures)

    def read(self, n_chunks: int) -> int:
        assert RECORD_DTYPE.names is not None
        with ThreadPoolExecutor(self.threads) as ex:
            futures = [
                ex.submit(self._read_one, i, name)
                for i in range(n_chunks)
                for name in RECORD_DTYPE.names
            ]
            return sum(f.result() for f in futures)


class RawBest(RawZstd):
    """The reference of the best raw codec per field: the library call the store's default
    rule makes for that field (numcodecs Blosc or zstandard), nothing else."""

    def __init__(self, directory: Path, level: int, threads: int) -> None:
        super().__init__(directory, level, threads)
        self.codecs: dict[str, Codec] = {
            s.name: auto_codec(s, level) for s in field_specs(RECORD_DTYPE)
        }

    def _compress(self, name: str, column: np.ndarray) -> bytes:
        c = self.codecs[name]
        if c.kind == "zstd":
            return super()._compress(name, column)
        shuffle = BLOSC_SHUFFLES[c.shuffle]
        flat = column.reshape(-1)
        return blosc.compress(flat, c.cname.encode(), c.level, shuffle, 0, flat.dtype.itemsize)

    def _decompress(self, name: str, frame: bytes) -> bytes:
        if self.codecs[name].kind == "zstd":
            return super()._decompress(name, frame)
        return blosc.decompress(frame)


class Clock:
    """Wall and process CPU seconds of a block (CPU time is robust to other load)."""

    def __enter__(self) -> Clock:
        self._t, self._c = time.perf_counter(), os.times()
        return self

    def __exit__(self, *exc: object) -> None:
        c = os.times()
        self.wall = time.perf_counter() - self._t
        self.cpu = (c.user - self._c.user) + (c.system - self._c.system)


def timed(fn: Callable[[], object]) -> Clock:
    with Clock() as clock:
        fn()
    return clock


@dataclass
class Result:
    """MB/s of each repeat, and compression ratios (uncompressed / stored bytes)."""

    store_write: list[float] = field(default_factory=list)
    raw_write: list[float] = field(default_factory=list)
    store_read: list[float] = field(default_factory=list)
    raw_read: list[float] = field(default_factory=list)
    best_write: list[float] = field(default_factory=list)
    best_read: list[float] = field(default_factory=list)
    best_ratio: float = 0.0
    # MB per CPU-second, same order
    store_write_cpu: list[float] = field(default_factory=list)
    raw_write_cpu: list[float] = field(default_factory=list)
    store_read_cpu: list[float] = field(default_factory=list)
    raw_read_cpu: list[float] = field(default_factory=list)
    store_ratio: float = 0.0
    raw_ratio: float = 0.0


def run_config(
    chunks: list[Chunk],
    base: Path,
    *,
    repeats: int,
    level: int,
    rows_per_chunk: int | None,
    store_url: str | None,
) -> Result:
    """Interleaved repeats of raw write, store write, raw read, store read."""
    nbytes = sum(c.nbytes for c in chunks)
    n_rows = sum(len(c) for c in chunks)
    key = DataKey("bench_run", "records", "bench")
    res = Result()
    for r in range(repeats):
        raw = RawZstd(base / f"raw{r}", level, max(1, n_threads()))
        clock = timed(partial(raw.write, chunks))
        res.raw_write.append(nbytes / clock.wall / MB)
        res.raw_write_cpu.append(nbytes / clock.cpu / MB)
        res.raw_ratio = nbytes / raw.stored_bytes
        best = RawBest(base / f"best{r}", level, max(1, n_threads()))
        clock = timed(partial(best.write, chunks))
        res.best_write.append(nbytes / clock.wall / MB)
        res.best_ratio = nbytes / best.stored_bytes

        store = open_store(
            store_url or str(base / f"store{r}"), rows_per_chunk=rows_per_chunk, zstd_level=level
        )
        saver = store.saver(key, RECORD_DTYPE, {"bench": True}, overwrite=True)
        with Clock() as clock:
            info = saver.save_from(chunks)
        res.store_write.append(nbytes / clock.wall / MB)
        res.store_write_cpu.append(nbytes / clock.cpu / MB)
        res.store_ratio = nbytes / (info.stored_bytes or 1)

        assert raw.read(len(chunks)) == nbytes  # warm the page cache like the store's
        clock = timed(partial(raw.read, len(chunks)))
        res.raw_read.append(nbytes / clock.wall / MB)
        res.raw_read_cpu.append(nbytes / clock.cpu / MB)
        assert best.read(len(chunks)) == nbytes
        clock = timed(partial(best.read, len(chunks)))
        res.best_read.append(nbytes / clock.wall / MB)
        with Clock() as clock:
            loaded = sum(len(c) for c in store.load(key))
        res.store_read.append(nbytes / clock.wall / MB)
        res.store_read_cpu.append(nbytes / clock.cpu / MB)
        assert loaded == n_rows

        shutil.rmtree(base / f"raw{r}", ignore_errors=True)
        shutil.rmtree(base / f"best{r}", ignore_errors=True)
        store.remove(key)
    return res


def emit(figure: str, **fields: object) -> None:
    print(json.dumps({"figure": figure, **fields}), flush=True)


def rounded(values: list[float]) -> list[float]:
    return [round(v, 1) for v in values]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=1000, help="uncompressed MB to write")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--level", type=int, default=DEFAULT_LEVEL, help="zstd level (both)")
    parser.add_argument("--rows-per-chunk", type=int, default=None, help="Zarr chunk rows")
    parser.add_argument("--store", default=None, help="store URL (default: a temp directory)")
    parser.add_argument("--dir", default=None, help="where to write (default: system temp)")
    parser.add_argument("--sweep", action="store_true", help="also sweep rows/chunk and level")
    args = parser.parse_args(argv)

    n_chunks = max(1, round(args.mb * MB / (ROWS_PER_STRAX_CHUNK * RECORD_DTYPE.itemsize)))
    chunks = make_chunks(n_chunks)
    nbytes = sum(c.nbytes for c in chunks)
    rows = args.rows_per_chunk or rows_per_chunk_for(RECORD_DTYPE, DEFAULT_CHUNK_BYTES)
    common = {
        "MB": round(nbytes / MB, 1),
        "strax_chunks": n_chunks,
        "rows_per_chunk": rows,
        "level": args.level,
        "threads": n_threads(),
        "repeats": args.repeats,
    }
    with tempfile.TemporaryDirectory(prefix="storage_bench_", dir=args.dir) as tmp:
        base = Path(tmp)
        # warm-up: page cache, thread pools, imports
        warm = chunks[: min(2, len(chunks))]
        run_config(
            warm, base, repeats=1, level=args.level, rows_per_chunk=rows, store_url=args.store
        )
        res = run_config(
            chunks,
            base,
            repeats=args.repeats,
            level=args.level,
            rows_per_chunk=rows,
            store_url=args.store,
        )
        where = args.store or "local directory"
        for figure, store_runs, raw_runs, best_runs, store_cpu, raw_cpu in (
            (
                "write_MBps",
                res.store_write,
                res.raw_write,
                res.best_write,
                res.store_write_cpu,
                res.raw_write_cpu,
            ),
            (
                "read_MBps",
                res.store_read,
                res.raw_read,
                res.best_read,
                res.store_read_cpu,
                res.raw_read_cpu,
            ),
        ):
            s, r = statistics.median(store_runs), statistics.median(raw_runs)
            b = statistics.median(best_runs)
            sc, rc = statistics.median(store_cpu), statistics.median(raw_cpu)
            emit(
                figure,
                store=round(s, 1),
                raw_best=round(b, 1),
                raw_zstd=round(r, 1),
                ratio=round(s / b, 3),
                ratio_vs_raw_zstd=round(s / r, 3),
                target=0.8,
                ok=s / b >= 0.8,
                store_runs=rounded(store_runs),
                raw_best_runs=rounded(best_runs),
                raw_zstd_runs=rounded(raw_runs),
                # MB per CPU-second: how much work each path does, insensitive to other load
                store_MB_per_cpu_s=round(sc, 1),
                raw_zstd_MB_per_cpu_s=round(rc, 1),
                cpu_ratio=round(sc / rc, 3),
                where=where,
                **common,
            )
        emit(
            "compression_ratio",
            store=round(res.store_ratio, 3),
            raw_best=round(res.best_ratio, 3),
            raw_zstd=round(res.raw_ratio, 3),
            ratio=round(res.store_ratio / res.best_ratio, 3),
            ratio_vs_raw_zstd=round(res.store_ratio / res.raw_ratio, 3),
            target="within 5% of raw_best",
            ok=abs(res.store_ratio / res.best_ratio - 1) <= 0.05,
            **common,
        )
        if args.sweep:
            for level in (1, 3):
                for sweep_rows in (16_384, 32_768, 65_536, 131_072):
                    res = run_config(
                        chunks,
                        base,
                        repeats=args.repeats,
                        level=level,
                        rows_per_chunk=sweep_rows,
                        store_url=args.store,
                    )
                    med = statistics.median
                    sw, rw = med(res.store_write), med(res.raw_write)
                    sr, rr = med(res.store_read), med(res.raw_read)
                    swc, rwc = med(res.store_write_cpu), med(res.raw_write_cpu)
                    src, rrc = med(res.store_read_cpu), med(res.raw_read_cpu)
                    emit(
                        "sweep",
                        level=level,
                        rows_per_chunk=sweep_rows,
                        write_MBps=round(sw, 1),
                        write_ratio=round(sw / rw, 3),
                        read_MBps=round(sr, 1),
                        read_ratio=round(sr / rr, 3),
                        write_cpu_ratio=round(swc / rwc, 3),
                        read_cpu_ratio=round(src / rrc, 3),
                        compression=round(res.store_ratio, 3),
                        compression_vs_raw=round(res.store_ratio / res.raw_ratio, 3),
                    )


if __name__ == "__main__":
    main()
