"""Several small runs on one machine: ``get_array(runs)`` in worker processes vs one after another.

One JSON line per figure on stdout::

    python3 bench/many_runs_bench.py                     # 8 runs, 5 interleaved rounds
    python3 bench/many_runs_bench.py --runs 8 --rounds 7 --chunks 100 --rows 20000

The runs: the toy pipeline of ``strax_decl.testing`` (records -> peaks -> peak_basics), each
run ``--chunks`` chunks of ``--rows`` records, computed and stored (every round asks for new
run ids, so nothing is loaded; a round's runs are removed after it, untimed, so the disk
holds one round). The default size, 100 chunks of 20,000 records (2 million records, 21 MB
stored, 400,000 rows back), takes about 0.5 s a run one after another: a small run, not a
trivial one (20 chunks of 2,000, the size before, took ~0.1 s, mostly the fixed cost of a
request, which says little about processing runs). ``pool``: ``ctx.get_array(runs,
"peak_basics")`` with ``max_workers=--workers`` (the runs go to that many worker processes,
docs/runs.md); ``serial``: the same context with ``max_workers=1`` (one after another in
this process, with the default executor and storage threads). The rounds alternate which
goes first (A B, B A, ...); ``ratio`` is serial time / pool time of each round, reported as
the median and the range (and every round's, ``ratios``). Before the rounds, one untimed
call of each starts the pool's fork server and workers and compiles what a first run
compiles; its time is the ``first_pool_call`` figure (what the first call in a fresh
process costs once; later calls reuse the warm workers). Every round checks that both give
equal arrays (the same rows, ``run_id`` aside: the runs differ only by name).
``serial_run_s``: the median time of one run one after another; ``serial_cpu_s`` and
``pool_cpu_s``: the median CPU seconds of a call, this process and every process under it
(fork server and workers) together, which the load of a shared machine changes little.
``load_avg``: the machine's
1-minute load average before and after (the machine may be shared: compare ratios).
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


def cpu_seconds() -> float:
    """CPU time of this process and every process under it (the fork server, the workers):
    what a call costs whatever else the machine runs (Linux ``/proc``; else this process)."""
    if not os.path.isdir("/proc"):
        return time.process_time()
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        children.setdefault(int(fields[1]), []).append(int(entry))
        # utime + stime, and those of its ended children it collected (a worker ended by
        # its pool is counted in the fork server's)
        ticks[int(entry)] = sum(int(f) for f in fields[11:15])
    total, todo = 0, [os.getpid()]
    while todo:
        pid = todo.pop()
        total += ticks.get(pid, 0)
        todo += children.get(pid, [])
    return total / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--rows", type=int, default=20000)
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
        cpu: dict[str, list[float]] = {"pool": [], "serial": []}
        equal = True
        for i in range(args.rounds):
            order = ["pool", "serial"] if i % 2 == 0 else ["serial", "pool"]
            got = {}
            for name in order:
                ctx = pool if name == "pool" else serial
                runs = [f"{name}{i}_{k}" for k in range(args.runs)]
                c, t = cpu_seconds(), time.perf_counter()
                got[name] = ctx.get_array(runs, args.target)
                times[name].append(time.perf_counter() - t)
                cpu[name].append(cpu_seconds() - c)
                assert list(dict.fromkeys(got[name]["run_id"])) == runs  # the order asked
            equal = equal and same_rows(got["pool"], got["serial"])
            for name in order:  # untimed: the disk holds one round
                for k in range(args.runs):
                    shutil.rmtree(root / f"{name}{i}_{k}", ignore_errors=True)
        ratios = [s / p for s, p in zip(times["serial"], times["pool"], strict=True)]
        emit(
            f"get_array_{args.runs}_runs",
            ratio_median=round(statistics.median(ratios), 3),
            ratio_min=round(min(ratios), 3),
            ratio_max=round(max(ratios), 3),
            ratios=[round(r, 3) for r in ratios],
            serial_s=round(statistics.median(times["serial"]), 3),
            pool_s=round(statistics.median(times["pool"]), 3),
            serial_run_s=round(statistics.median(times["serial"]) / args.runs, 3),
            serial_cpu_s=round(statistics.median(cpu["serial"]), 3),
            pool_cpu_s=round(statistics.median(cpu["pool"]), 3),
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
