"""Codec benchmark: ratio and speed of each candidate codec on every workload's fields.

For every data type of ``shared/bench/workloads.md`` (W1 records, peaks, peak_basics, events;
W2's rows; W3's per-record features and their merge), each field is cut into one Zarr chunk as
the store cuts it (``rows_per_chunk_for`` the dtype, fewer rows if the workload makes fewer) and
compressed with each candidate codec exactly as the store does it (``strax_storage.codec.encode``
/ ``decode``, crc32c trailer included). Figures, each the median of ``--repeats`` timings:

- ``ratio``: uncompressed / stored bytes;
- ``compress_MBps``/``decompress_MBps``: 1 thread, and ``..._2t``: 2 threads at once, each
  on its own copy (MB/s of uncompressed bytes, summed over threads).

One JSON line per (data type, field, codec), then one line per data type and codec over all its
fields together (``"field": "*"``: bytes-weighted, the speed of a whole row-chunk; plus the
``auto`` row, the store's default rule, field by field), and with ``--table`` a Markdown table of
the per-data-type lines.

    python bench/codec_bench.py [--repeats 5] [--table] [--only records,peaks]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "storage"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as wl

from strax_storage.codec import Codec, decode, encode
from strax_storage.codec_choice import auto_codec
from strax_storage.dtypes import FieldSpec, field_specs, rows_per_chunk_for
from strax_storage.store import DEFAULT_CHUNK_BYTES

MB = 1e6
CANDIDATES: dict[str, Codec | None] = {
    "zstd:1": Codec("zstd", 1),
    "zstd:3": Codec("zstd", 3),
    "blosc-zstd-noshuffle:1": Codec("blosc", 1, "zstd", "noshuffle"),
    "blosc-zstd-shuffle:1": Codec("blosc", 1, "zstd", "shuffle"),
    "blosc-zstd-bitshuffle:1": Codec("blosc", 1, "zstd", "bitshuffle"),
    "blosc-zstd-bitshuffle:3": Codec("blosc", 3, "zstd", "bitshuffle"),
    "blosc-lz4-shuffle:5": Codec("blosc", 5, "lz4", "shuffle"),
    "blosc-lz4-bitshuffle:5": Codec("blosc", 5, "lz4", "bitshuffle"),
    "auto": None,  # the default rule (auto_codec) per field: the rows above combined
}


def data_types() -> dict[str, tuple[str, np.ndarray]]:
    """name -> (workload, rows): enough rows for one Zarr chunk where the workload has them."""
    size = 200_000
    records = [wl.records_chunk(c, size)[2] for c in range(3)]
    peaks = [wl.compute_peaks(r) for r in records]
    basics = [wl.compute_peak_basics(p) for p in peaks]
    all_basics = np.concatenate(basics)
    end = int(wl.records_chunk_bounds(len(records) - 1, size)[1])
    events = wl.compute_events(all_basics, 0, end)
    w2 = np.concatenate([wl.w2_chunk(c, 10)[2] for c in range(5_000)])
    features = [wl.compute_feature(records[0], k) for k in range(wl.N_FEATURES)]
    return {
        "records": ("W1", np.concatenate(records)),
        "peaks": ("W1", np.concatenate(peaks)),
        "peak_basics": ("W1", all_basics),
        "events": ("W1", events),
        "level0": ("W2", w2),
        "feature_0": ("W3", features[0]),
        "record_features": ("W3", wl.merge_features(features)),
    }


def timed(fn: Callable[[], object], repeats: int, threads: int) -> float:
    """Median seconds per call of ``fn``, called in a loop in each of ``threads`` threads at
    the same time (loops of >= ~30 ms, so thread start-up does not count)."""
    t0 = time.perf_counter()
    fn()  # also warms the per-thread contexts
    iters = max(1, round(0.03 / max(time.perf_counter() - t0, 1e-6)))

    def loop() -> None:
        for _ in range(iters):
            fn()

    times = []
    for _ in range(repeats):
        workers = [threading.Thread(target=loop) for _ in range(threads)]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        times.append((time.perf_counter() - t0) / iters)
    return statistics.median(times)


def measure(column: np.ndarray, codec: Codec, repeats: int) -> dict[str, float]:
    frame, crc = encode(column, codec)
    blob = frame + crc
    assert decode(blob, column.nbytes, codec) == column.tobytes()
    stored = len(blob)
    local = threading.local()

    def own() -> np.ndarray:  # each thread compresses its own copy (no shared cache lines)
        mine = getattr(local, "column", None)
        if mine is None:
            mine = local.column = column.copy()
        return mine

    def comp() -> None:
        encode(own(), codec)

    def dec() -> None:
        decode(blob, column.nbytes, codec)

    out = {"bytes": column.nbytes, "stored": stored}
    for threads, suffix in ((1, ""), (2, "_2t")):
        out[f"compress_s{suffix}"] = timed(comp, repeats, threads) / threads
        out[f"decompress_s{suffix}"] = timed(dec, repeats, threads) / threads
    return out


def emit(line: dict[str, object]) -> None:
    print(json.dumps(line), flush=True)


def figures(m: dict[str, float]) -> dict[str, float]:
    n = m["bytes"]
    return {
        "ratio": round(n / m["stored"], 2),
        "compress_MBps": round(n / m["compress_s"] / MB, 1),
        "decompress_MBps": round(n / m["decompress_s"] / MB, 1),
        "compress_MBps_2t": round(n / m["compress_s_2t"] / MB, 1),
        "decompress_MBps_2t": round(n / m["decompress_s_2t"] / MB, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--table", action="store_true", help="also print a Markdown table")
    parser.add_argument("--only", default="", help="comma list of data types")
    args = parser.parse_args(argv)
    only = {d for d in args.only.split(",") if d}
    totals: list[dict[str, object]] = []
    for name, (workload, rows) in data_types().items():
        if only and name not in only:
            continue
        zarr_rows = min(len(rows), rows_per_chunk_for(rows.dtype, DEFAULT_CHUNK_BYTES))
        chunk = rows[:zarr_rows]
        specs = field_specs(rows.dtype)
        sums: dict[str, dict[str, float]] = {}
        for spec in specs:
            column = np.ascontiguousarray(chunk[spec.name]).astype(spec.stored, copy=False)
            done: dict[Codec, dict[str, float]] = {}
            for label, candidate in CANDIDATES.items():
                codec = candidate or auto_codec(spec)
                # the auto row reuses its codec's measurement of this field (same moment)
                m = done.get(codec) or measure(column, codec, args.repeats)
                done[codec] = m
                if candidate is not None:
                    emit(_line(workload, name, spec, zarr_rows, label, m))
                acc = sums.setdefault(label, {})
                for k, v in m.items():
                    acc[k] = acc.get(k, 0.0) + v
        for label, m in sums.items():
            line = {
                "workload": workload,
                "data_type": name,
                "field": "*",
                "codec": label,
                "rows": zarr_rows,
                "MB": round(m["bytes"] / MB, 2),
                **figures(m),
            }
            emit(line)
            totals.append(line)
    if args.table:
        keys = (
            "ratio",
            "compress_MBps",
            "compress_MBps_2t",
            "decompress_MBps",
            "decompress_MBps_2t",
        )
        print(
            "\n| data type | codec | ratio | compress MB/s (1t / 2t) | decompress MB/s (1t / 2t) |"
        )
        print("|---|---|---|---|---|")
        for t in totals:
            r, c1, c2, d1, d2 = (t[k] for k in keys)
            print(
                f"| {t['workload']} {t['data_type']} | {t['codec']} | {r} | {c1} / {c2} "
                f"| {d1} / {d2} |"
            )


def _line(
    workload: str, name: str, spec: FieldSpec, rows: int, label: str, m: dict[str, float]
) -> dict[str, object]:
    kind = f"{spec.stored.str}{list(spec.shape) if spec.shape else ''}"
    return {
        "workload": workload,
        "data_type": name,
        "field": spec.name,
        "dtype": kind,
        "codec": label,
        "rows": rows,
        "MB": round(m["bytes"] / MB, 3),
        **figures(m),
    }


if __name__ == "__main__":
    main()
