"""Start-up of the command line: ``strax-decl --help``, ``--version`` and ``ls``.

One JSON line per command on stdout::

    python3 bench/startup_bench.py               # median of 15 runs of each command
    python3 bench/startup_bench.py --repeat 5 --runs 3

Each figure is the wall time (seconds) of the installed ``strax-decl`` entry point, started
as a fresh process, from ``exec`` to exit: Python's own start-up included, since that is what
a user waits for. The commands are run interleaved (one of each per round), so a busy
machine slows them alike. ``ls`` lists a real store of ``--runs`` runs made here with the toy
pipeline (``strax_decl.testing``: records and peaks of each run). Each line also gives
``python_s``, the median of ``python -c pass`` in the same rounds (what no command can beat),
and ``heavy``, the heavy modules the command imported (``-X importtime``; the goal is none of
zarr, numba, pandas, dask). The target is under 0.3 s for each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("zarr", "numba", "llvmlite", "pandas", "dask", "numcodecs", "pydantic")
TARGET_S = 0.3


def _entry() -> list[str]:
    found = shutil.which("strax-decl", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "strax_decl"]


def _make_store(path: Path, runs: int) -> None:
    import strax_decl as sd
    from strax_decl.testing import TOY_PLUGINS

    ctx = sd.Context(str(path), plugins=TOY_PLUGINS)
    for i in range(runs):
        ctx.make(f"run_{i:03d}", "peaks")


def _wall(argv: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed


def _heavy_imports(argv: list[str]) -> list[str]:
    """The top-level packages of ``HEAVY`` that the command imported (``-X importtime``)."""
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
    )
    names = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines()}
    return sorted(names & set(HEAVY))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="rounds (median taken)")
    parser.add_argument("--runs", type=int, default=5, help="runs in the listed store")
    args = parser.parse_args(argv)
    entry = _entry()
    with tempfile.TemporaryDirectory(prefix="startup_bench_") as tmp:
        store = Path(tmp) / "strax_data"
        _make_store(store, args.runs)
        commands = {
            "help": [*entry, "--help"],
            "version": [*entry, "--version"],
            "ls": [*entry, "ls", "--storage", str(store)],
        }
        python = [sys.executable, "-c", "pass"]
        times: dict[str, list[float]] = {name: [] for name in [*commands, "python"]}
        for _ in range(args.repeat):
            for name, cmd in [*commands.items(), ("python", python)]:
                times[name].append(_wall(cmd))
        base = statistics.median(times["python"])
        for name, cmd in commands.items():
            median = statistics.median(times[name])
            figure = {
                "figure": f"startup_{name}",
                "command": " ".join(["strax-decl", *cmd[len(entry) :]]).replace(tmp, "$TMP"),
                "median_s": round(median, 4),
                "min_s": round(min(times[name]), 4),
                "python_s": round(base, 4),
                "repeat": args.repeat,
                "heavy": _heavy_imports(cmd),
                "target_s": TARGET_S,
                "meets_target": median < TARGET_S,
            }
            print(json.dumps(figure), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
