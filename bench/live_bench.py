"""Live runs, final-prefix reads and resume after SIGKILL, at the sizes of issue 19.

Prints one JSON line per measurement:

- ``live``: a DAQ writer process (``python -m strax_decl.daq``) appends chunks for
  ``--live-seconds``; a pipeline process computes ``records`` and ``record_sums`` from it
  live; this process reads the final prefix again and again (``allow_incomplete=True``) and
  checks every snapshot row by row against the final result, and the final result against a
  batch run of the same data;
- ``kills``: ``--kills`` seeded SIGKILLs of a process saving ``record_sums``, each followed
  by a resume; every result is compared byte for byte with a clean run; reports the mean
  fraction of chunks recomputed;
- ``sigints``: the same with SIGINT (Ctrl-C): each stopped run leaves ``record_sums``
  ``partial``, and the rerun resumes it;
- ``ranges``: a ``time_range`` over the third quarter of a run whose first half is
  ``partial`` (resumed there) against the same range with nothing stored, and a range
  inside the final prefix (read from it);
- ``rss``: peak RSS of the live pipeline process at N and 4N chunks (bounded memory).

    python3 bench/live_bench.py                 # full: 30 s live run, 30 kills
    python3 bench/live_bench.py --quick         # a few seconds
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import strax_decl as sd
from strax_decl.testing import DAQRecords, RecordSums, ToyRecords
from strax_storage import open_store

PIPELINE = """
import resource, signal, sys, json
signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, even if inherited ignored
import strax_decl as sd
from strax_storage import open_store
from strax_decl.testing import {source}, RecordSums
ctx = sd.Context(open_store({root!r}, rows_per_chunk={rpc}), plugins=[{source}, RecordSums],
                 config={config!r})
ctx.make({run!r}, "record_sums", save=["records"], progress=False)
print(json.dumps({{"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""


def pipeline(root: Path, source: str, config: dict, rpc: int) -> subprocess.Popen:
    code = PIPELINE.format(root=str(root), source=source, config=config, run="r1", rpc=rpc)
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def context(root: Path, source: type, config: dict, rpc: int) -> sd.Context:
    return sd.Context(
        open_store(root, rows_per_chunk=rpc), plugins=[source, RecordSums], config=config
    )


def live(tmp: Path, n_chunks: int, interval: float, rows: int, check: bool) -> dict:
    daq = tmp / "daq"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "strax_decl.daq",
            str(daq),
            "r1",
            "--chunks",
            str(n_chunks),
            "--rows",
            str(rows),
            "--interval",
            str(interval),
        ]
    )
    config = {"daq_dir": str(daq), "rows_per_chunk": rows}
    t0 = time.monotonic()
    run = pipeline(tmp / "live", "DAQRecords", config, 4096)
    reader = context(tmp / "live", DAQRecords, config, 4096)
    snapshots: list[np.ndarray] = []
    while check and run.poll() is None:
        try:
            snapshots.append(reader.get_array("r1", "record_sums", allow_incomplete=True))
        except sd.StraxDeclError:
            pass
        except Exception as e:
            if "neither stored complete" not in str(e):
                raise
        time.sleep(0.1)
    out, err = run.communicate()
    writer.wait()
    assert run.returncode == 0, err.decode()[-2000:]
    elapsed = time.monotonic() - t0
    result: dict = {"chunks": n_chunks, "seconds": round(elapsed, 1)}
    result.update(json.loads(out.decode().strip().splitlines()[-1]))
    if check:
        final = reader.get_array("r1", "record_sums")
        sizes = [len(s) for s in snapshots]
        ok = sizes == sorted(sizes) and all(
            s.tobytes() == final[: len(s)].tobytes() for s in snapshots
        )
        batch = context(
            tmp / "batch", ToyRecords, {"n_chunks": n_chunks, "rows_per_chunk": rows}, 4096
        )
        result.update(
            snapshots=len(snapshots),
            distinct_prefixes=len(set(sizes)),
            prefixes_ok=ok,
            equals_batch=batch.get_array("r1", "record_sums").tobytes() == final.tobytes(),
        )
    return result


def kills(tmp: Path, n: int, seed: int, n_chunks: int, work: int, sigint: bool = False) -> dict:
    """Seeded stops of a process saving record_sums (SIGKILL, or SIGINT: Ctrl-C), each
    followed by a rerun that resumes; every result compared with a clean run."""
    config = {"n_chunks": n_chunks, "rows_per_chunk": 2000, "work": work}
    # a Zarr chunk of 1000 rows: the final prefix grows every half chunk
    rpc = 1000
    clean = context(tmp / "clean", ToyRecords, config, rpc)
    t0 = time.monotonic()
    clean.make("r1", "record_sums", save=["records"], progress=False)
    clean_s = time.monotonic() - t0
    want = clean.get_array("r1", "record_sums").tobytes()
    rng = random.Random(seed)
    fractions, identical, partial = [], 0, 0
    for i in range(n):
        root = tmp / f"k{i}"
        context(root, ToyRecords, config, rpc).make("r1", "records", progress=False)
        proc = pipeline(root, "ToyRecords", config, rpc)
        target = rng.randint(n_chunks // 10, 9 * n_chunks // 10)  # kill once this is final
        store, key = open_store(root), clean.key_for("r1", "record_sums")
        while proc.poll() is None:
            p = store.progress(key)
            if p is not None and p.n_chunks >= target:
                break
            time.sleep(0.002)
        if sigint:
            proc.send_signal(signal.SIGINT)
        else:
            proc.kill()
        proc.wait()
        ctx = context(root, ToyRecords, config, rpc)
        partial += store.status(key) == "partial"
        plan = ctx.plan("r1", "record_sums")
        step = plan.steps["record_sums"]
        done = 0 if step.resume is None else step.resume.prefix.n_chunks
        got = ctx.get_array("r1", "record_sums").tobytes()
        identical += got == want
        fractions.append(1 - done / n_chunks)
        shutil.rmtree(root)
    return {
        "sigints" if sigint else "kills": n,
        "left_partial": partial,
        "bit_identical": identical,
        "mean_fraction_recomputed": round(sum(fractions) / n, 3),
        "resumed": sum(f < 1 for f in fractions),
        "clean_run_s": round(clean_s, 2),
    }


def ranges(tmp: Path, n_chunks: int, work: int) -> dict:
    """A time_range over the third quarter of a run whose first half is partly stored (it
    resumes there and computes one quarter) against the same range on nothing stored."""
    config = {"n_chunks": n_chunks, "rows_per_chunk": 2000, "work": work}
    clean = context(tmp / "clean", ToyRecords, config, 1000)
    full = clean.get_array("r1", "record_sums")
    end = int(full["endtime"].max())
    out: dict = {"chunks": n_chunks}
    for name, stored in (("cold", False), ("partial", True)):
        ctx = context(tmp / name, ToyRecords, config, 1000)
        ctx.make("r1", "records", progress=False)
        if stored:
            ctx.get_array("r1", "record_sums", time_range=(0, end // 2), progress=False)
        tr = (end // 2, 3 * end // 4)
        t0 = time.monotonic()
        got = ctx.get_array("r1", "record_sums", time_range=tr, progress=False)
        out[f"{name}_s"] = round(time.monotonic() - t0, 2)
        assert ctx.last_stats is not None
        out[f"{name}_records_loaded"] = ctx.last_stats.components["load records"].rows
        want = full[(full["time"] >= tr[0]) & (full["endtime"] <= tr[1])]
        out[f"{name}_rows_ok"] = got.tobytes() == want.tobytes()
        t0 = time.monotonic()
        inside = ctx.get_array("r1", "record_sums", time_range=(end // 8, end // 4))
        out[f"{name}_inside_prefix_s"] = round(time.monotonic() - t0, 3)
        assert len(inside)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=19)
    args = parser.parse_args()
    live_s, n_kills = (3.0, 3) if args.quick else (30.0, 30)
    interval = 0.05
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        n = int(live_s / interval)
        print(json.dumps({"bench": "live", **live(tmp / "a", n, interval, 500, True)}), flush=True)
        print(
            json.dumps({"bench": "kills", **kills(tmp / "b", n_kills, args.seed, 40, 3)}),
            flush=True,
        )
        print(
            json.dumps(
                {"bench": "sigints", **kills(tmp / "c", n_kills, args.seed, 40, 3, sigint=True)}
            ),
            flush=True,
        )
        print(json.dumps({"bench": "ranges", **ranges(tmp / "d", 40, 3)}), flush=True)
        n_rss = 50 if args.quick else 200
        for k in (n_rss, 4 * n_rss):
            r = live(tmp / f"rss{k}", k, 0.0, 2000, False)
            print(json.dumps({"bench": "rss", **r}), flush=True)


if __name__ == "__main__":
    main()
