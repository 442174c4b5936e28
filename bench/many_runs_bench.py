"""Several small runs on one machine: ``get_array(runs)`` in worker processes vs one after another.

One JSON line per figure on stdout::

    python3 bench/many_runs_bench.py                     # 8 runs, 5 interleaved rounds
    python3 bench/many_runs_bench.py --runs 8 --rounds 7 --chunks 20 --rows 2000

The runs: the toy pipeline of ``strax_decl.testing`` (records -> peaks -> peak_basics), each
run ``--chunks`` chunks of ``--rows`` records, computed and stored (every round asks for new
run ids, so nothing is loaded). ``pool``: ``ctx.get_array(runs, "peak_basics")`` with
``max_workers=--workers`` (the runs go to that many worker processes, docs/runs.md);
``serial``: the same context with ``max_workers=1`` (one after another in this process).
The rounds alternate which goes first (A B, B A, ...); ``ratio`` is serial time / pool time
of each round, reported as the median and the range. Before the rounds, one untimed call of
each starts the pool's fork server and compiles what a first run compiles; its time is the
``first_pool_call`` figure (what the first call in a fresh process costs once). Every round
checks that both give equal arrays (the same rows, ``run_id`` aside: the runs differ only by
name). ``load_avg``: the machine's 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def emit(figure: str, **fields: Any) -> None:
    print(json.dumps({"bench": "many_runs", "figure": figure, **fields}), flush=True)


def same_rows(a: Any, b: Any) -> bool:
    import numpy as np

    names = [n for n in a.dtype.names if n != "run_id"]
    return bool(len(a) == len(b) and np.array_equal(a[names], b[names]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--target", default="peak_basics")
    args = parser.parse_args()

    import strax_decl as sd
    from strax_decl.testing import PLUGINS

    root = Path(tempfile.mkdtemp(prefix="many_runs_bench_"))
    try:
        config = {"n_chunks": args.chunks, "rows_per_chunk": args.rows}
        pool = sd.Context(str(root), plugins=PLUGINS, config=config, max_workers=args.workers)
        serial = pool.new_context(max_workers=1)
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        pool.get_array(["warm_p0", "warm_p1"], args.target)
        emit("first_pool_call", seconds=round(time.perf_counter() - t0, 3), runs=2)
        serial.get_array(["warm_s0", "warm_s1"], args.target)

        times: dict[str, list[float]] = {"pool": [], "serial": []}
        equal = True
        for i in range(args.rounds):
            order = ["pool", "serial"] if i % 2 == 0 else ["serial", "pool"]
            got = {}
            for name in order:
                ctx = pool if name == "pool" else serial
                runs = [f"{name}{i}_{k}" for k in range(args.runs)]
                t = time.perf_counter()
                got[name] = ctx.get_array(runs, args.target)
                times[name].append(time.perf_counter() - t)
                assert list(dict.fromkeys(got[name]["run_id"])) == runs  # the order asked
            equal = equal and same_rows(got["pool"], got["serial"])
        ratios = [s / p for s, p in zip(times["serial"], times["pool"], strict=True)]
        emit(
            f"get_array_{args.runs}_runs",
            ratio_median=round(statistics.median(ratios), 3),
            ratio_min=round(min(ratios), 3),
            ratio_max=round(max(ratios), 3),
            serial_s=round(statistics.median(times["serial"]), 3),
            pool_s=round(statistics.median(times["pool"]), 3),
            rounds=args.rounds,
            workers=args.workers,
            rows=len(got["pool"]),
            equal=equal,
            target=">= 1.6",
            load_avg=[round(load_before, 2), round(os.getloadavg()[0], 2)],
            cpus=os.cpu_count(),
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
