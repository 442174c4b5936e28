"""Run the workloads of shared/bench/workloads.md on strax_decl, strax 2.2.3 and a bare loop.

    python bench/pipeline_bench.py [--impl strax,bare,decl] [--workload W1,W2,W3,W1x2] [--quick]

Prints one JSON line per figure (median of 3 fresh-process runs, JIT warm-up excluded), then W2's
per-chunk-per-plugin slopes, consistency checks and ratio lines (decl vs strax etc., with the
targets of issue 4). Absolute figures drift between machines and runs, so strax is measured in
the same run and the ratios are what count. An implementation that cannot be imported (strax
not installed, strax_decl not written yet) gives one JSON line with "error" and is skipped.
W1x2 is W1 with twice as many chunks: issue 4 asks that peak RSS grows by < 10%.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as wl
from _harness import measure

IMPLS = ("strax", "bare", "decl")
WORKLOADS = ("W1", "W2", "W3", "W1x2")
W2_LEVELS = (0, 1, 3, 5)
W1_EVENTS = 10_806  # workloads.md: strax's event count for W1 (the generator is calibrated to it)

# Modes per implementation and workload. "default" is each framework's default processor (for
# strax_decl: its threaded pipeline); "threaded" is strax's threaded mailbox with 2 workers.
MODES: dict[str, dict[str, tuple[str, ...]]] = {
    "strax": {
        "W1": ("default_nosave", "threaded_nosave", "default_save", "threaded_save", "reload"),
        "W1x2": ("default_nosave", "default_save"),
        "W2": ("default_nosave", "threaded_nosave", "default_save"),
        "W3": ("default_nosave", "threaded_nosave", "default_onebranch"),
    },
    "bare": {
        "W1": ("default_nosave",),
        "W1x2": ("default_nosave",),
        "W2": ("default_nosave",),
        "W3": ("default_nosave", "default_onebranch"),
    },
    "decl": {
        "W1": ("default_nosave", "serial_nosave", "default_save", "reload"),
        "W1x2": ("default_nosave", "default_save"),
        "W2": ("default_nosave", "default_save"),
        "W3": ("default_nosave", "default_onebranch"),
    },
}
PREPARED_MODES = {"reload"}  # modes that read data stored by an untimed prepare step

# (decl mode, strax mode, metric, target, what) from issue 4's acceptance
TARGETS: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("W1", "default_save", "default_save", "records_MBps", ">=2", "W1 with saving"),
    ("W1", "default_save", "default_save", "peak_rss_MB", "<=1", "W1 with saving, peak RSS"),
    ("W1", "default_nosave", "default_nosave", "records_MBps", ">=1.2", "W1 without saving"),
    ("W2", "default_nosave", "default_nosave", "us_per_chunk_per_plugin", "<=0.5", "W2 overhead"),
)


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


def _slope(points: Iterable[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares (slope, intercept) of y over x."""
    pts = list(points)
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    slope = sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else float("nan")
    return slope, my - slope * mx


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", default=",".join(IMPLS), help="comma list of strax,bare,decl")
    parser.add_argument("--workload", default=",".join(WORKLOADS), help="comma list of W1,W2,...")
    parser.add_argument("--mode", default="", help="only these modes (comma list)")
    parser.add_argument("--quick", action="store_true", help="scaled-down sizes, for smoke tests")
    parser.add_argument(
        "--reps", type=int, default=None, help="fresh-process runs per figure (3; --quick: 1)"
    )
    parser.add_argument("--tmpdir", default=None, help="where stores are written (default: TMP)")
    parser.add_argument(
        "--strax-python",
        default=sys.executable,
        help="python that has strax 2.2.3 installed (e.g. a venv's), for the strax figures",
    )
    args = parser.parse_args(argv)
    # SIGTERM -> SystemExit, so the running child is ended and its stores are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    impls = [i for i in args.impl.split(",") if i]
    workloads = [w for w in args.workload.split(",") if w]
    only_modes = {m for m in args.mode.split(",") if m}
    for name in impls:
        if name not in MODES:
            parser.error(f"unknown impl {name!r}")
    for name in workloads:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}")
    scale = "quick" if args.quick else "full"
    reps = args.reps if args.reps is not None else (1 if args.quick else 3)
    w2_levels = (0, 5) if args.quick else W2_LEVELS

    figures: list[dict[str, Any]] = []
    slopes: dict[tuple[str, str], float] = {}
    for impl in impls:
        python = args.strax_python if impl == "strax" else sys.executable
        broken = False
        for workload in workloads:
            for mode in MODES[impl].get(workload, ()):
                if broken or (only_modes and mode not in only_modes):
                    continue
                levels = w2_levels if workload == "W2" else (0,)
                w2_points: list[tuple[float, float]] = []
                w2_cpu: list[tuple[float, float]] = []
                n_chunks = wl.size_for(workload, scale).n_chunks
                for level in levels:
                    line = measure(
                        impl,
                        workload,
                        mode,
                        scale,
                        levels=level,
                        reps=reps,
                        python=python,
                        tmp_root=args.tmpdir,
                        needs_prepare=mode in PREPARED_MODES,
                    )
                    emit({k: v for k, v in line.items() if k != "traceback"})
                    if line.get("import_error"):
                        broken = True  # skip the rest of this implementation
                        break
                    if "error" in line:
                        if "traceback" in line:
                            print(line["traceback"], file=sys.stderr)
                        continue
                    figures.append(line)
                    w2_points.append((level, line["wall_s"]))
                    w2_cpu.append((level, line["cpu_s"]))
                if workload == "W2" and len(w2_points) >= 2:
                    slope, intercept = _slope(w2_points)
                    us = round(slope / n_chunks * 1e6, 2)
                    slopes[(impl, mode)] = us
                    emit(
                        {
                            "workload": "W2",
                            "impl": impl,
                            "mode": mode,
                            "us_per_chunk_per_plugin": us,
                            "us_per_chunk_at_L0": round(intercept / n_chunks * 1e6, 2),
                            # the same slope of CPU time (all threads): steadier on a busy machine
                            "cpu_us_per_chunk_per_plugin": round(
                                _slope(w2_cpu)[0] / n_chunks * 1e6, 2
                            ),
                            "levels": [p[0] for p in w2_points],
                            "walls_s": [p[1] for p in w2_points],
                        }
                    )
    report(figures, slopes, scale)
    return 0


def report(figures: list[dict[str, Any]], slopes: dict[tuple[str, str], float], scale: str) -> None:
    """Consistency checks and ratio lines."""
    by_key = {(f["impl"], f["workload"], f["mode"], f.get("levels", 0)): f for f in figures}
    # Every implementation must produce the same rows: the same events, the same merged rows.
    outputs: dict[tuple[str, str, int], dict[str, int]] = {}
    for f in figures:
        key = (f["workload"], f["target"] if f["workload"] != "W2" else "w2", f.get("levels", 0))
        outputs.setdefault(key, {})[f"{f['impl']}/{f['mode']}"] = f["n_out"]
    for (workload, target, _), values in sorted(outputs.items()):
        if workload == "W2":
            continue
        check: dict[str, Any] = {"check": "n_out", "workload": workload, "target": target}
        ok = len(set(values.values())) == 1
        if workload == "W1" and target == "events" and scale == "full":
            check["expected"] = W1_EVENTS
            ok = ok and set(values.values()) == {W1_EVENTS}
        emit({**check, "ok": ok, "values": values})

    # Same-mode ratios: decl and bare against strax, decl against bare.
    for a, b in (("decl", "strax"), ("bare", "strax"), ("decl", "bare")):
        for (impl, workload, mode, levels), fa in sorted(by_key.items()):
            if impl != a or workload == "W2":
                continue
            fb = by_key.get((b, workload, mode, levels))
            if fb is None:
                continue
            emit(
                {
                    "ratio": f"{a}/{b}",
                    "workload": workload,
                    "mode": mode,
                    "records_MBps": _ratio(fa["records_MBps"], fb["records_MBps"]),
                    "peak_rss_MB": _ratio(fa["peak_rss_MB"], fb["peak_rss_MB"]),
                }
            )
        for (impl, mode), us in sorted(slopes.items()):
            other = slopes.get((b, mode))
            if impl == a and other is not None:
                emit(
                    {
                        "ratio": f"{a}/{b}",
                        "workload": "W2",
                        "mode": mode,
                        "us_per_chunk_per_plugin": _ratio(us, other),
                    }
                )

    # Issue 4's targets (decl vs strax's default processor).
    for workload, decl_mode, strax_mode, metric, target, what in TARGETS:
        if metric == "us_per_chunk_per_plugin":
            value = _ratio(slopes.get(("decl", decl_mode)), slopes.get(("strax", strax_mode)))
        else:
            fd = by_key.get(("decl", workload, decl_mode, 0))
            fs = by_key.get(("strax", workload, strax_mode, 0))
            value = _ratio(fd and fd[metric], fs and fs[metric])
        if value is None:
            continue
        bound = float(target[2:])
        met = value >= bound if target.startswith(">=") else value <= bound
        emit(
            {
                "target": what,
                "workload": workload,
                "metric": metric,
                "decl_vs_strax": f"decl/{decl_mode} vs strax/{strax_mode}",
                "ratio": value,
                "wanted": target,
                "met": met,
            }
        )

    # Peak RSS growth with a 2x longer run (issue 4: < 10% for strax_decl).
    for (impl, workload, mode, _), f in sorted(by_key.items()):
        if workload != "W1x2":
            continue
        base = by_key.get((impl, "W1", mode, 0))
        if base is not None:
            growth = _ratio(f["peak_rss_MB"], base["peak_rss_MB"])
            line = {"check": "rss_growth_2x", "impl": impl, "mode": mode, "ratio": growth}
            if impl == "decl" and growth is not None:
                line.update(wanted="<1.1", met=growth < 1.1)
            emit(line)


if __name__ == "__main__":
    sys.exit(main())
