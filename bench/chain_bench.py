"""The realistic chain of issue 21 (examples/analysis_plugins.py, 8 data types) at three
chunkings, saving on and off: strax_decl vs strax 2.2.3 vs a bare loop over the same kernels.

    python3 bench/chain_bench.py [--chunkings c5,c120,c5000] [--impl decl,strax,bare]
                                 [--reps 3] [--baseline /work/baseline] [--timeout 900]

The run (3 s, ~58k records) is simulated once and replayed at every chunking, cut only
between records (``chain_workload``), so every implementation's rows can be compared bit for
bit: each saved figure carries a digest of all 8 stored data types (bare: of its outputs).
Each measurement is a fresh process (warm-up on the first 60 ms at the same chunk length,
then the timed run); figures are interleaved (decl, strax, bare, decl, strax, bare ...), and
the median of ``--reps`` is reported. ``--baseline DIR`` adds impl ``base``: the same strax_decl
chain run from another checkout (e.g. a worktree of HEAD), for before/after ratios.

With saving, strax_decl's figures are followed by a ``load`` figure (issue 21, item 3):
reloading the 8 stored data types in a fresh context vs reading the files' bytes and vs
reading and decompressing them (``--no-load`` skips it).

One JSON line per figure, then ratio lines: ``framework_us_per_chunk_per_type`` = (wall - bare
loop) / (chunks x 8 data types); the issue's targets; ``rss`` figures: strax_decl with saving
at the 5,000-chunk length over a 4x shorter run (1,250 chunks), for peak RSS vs run length.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

MODULES = {
    "decl": "chain_decl_impl",
    "base": "chain_decl_impl",
    "strax": "strax_chain_impl",
    "bare": "chain_bare_impl",
}


def child(spec: dict[str, Any], result_path: str) -> int:
    code_root = Path(spec["code_root"])
    sys.path[:0] = [str(BENCH), str(code_root), str(code_root / "storage")]
    result: dict[str, Any] = {}
    try:
        import importlib

        import chain_workload as cw

        module = importlib.import_module(MODULES[spec["impl"]])
        workdir = Path(spec["workdir"])
        workdir.mkdir(parents=True, exist_ok=True)  # the impls read workdir/records.npy
        os.symlink(spec["records"], cw.records_path(workdir))
        n, span, save = spec["n_chunks"], spec["span"], spec["save"]
        warm_n = max(2, n * cw.WARMUP_NS // span)
        module.run(workdir / "warmup", "warm", warm_n, cw.WARMUP_NS, save)
        shutil.rmtree(workdir / "warmup", ignore_errors=True)
        import gc

        gc.collect()
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        out = module.run(workdir / "timed", "chain", n, span, save)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_SELF)
        result = {
            "wall_s": wall,
            "cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
            "peak_rss_MB": after.ru_maxrss * 1024 / 1e6,
            "loadavg": load,
            **out,
        }
        if save or spec["impl"] == "bare":
            result.update(module.check(workdir / "timed", "chain", n, span))
        if save and spec.get("load") and hasattr(module, "load"):
            result["load"] = module.load(workdir / "timed", "chain", n, span)
        if spec["impl"] in ("decl", "base"):
            import strax_decl

            result["strax_decl"] = str(Path(strax_decl.__file__).parents[1])
    except BaseException as exc:
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    finally:
        Path(result_path).write_text(json.dumps(result))
    return 0


def run_child(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    fd, result_path = tempfile.mkstemp(prefix="chain-result-", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, str(Path(__file__).resolve()), "child", json.dumps(spec), result_path]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True
    )
    try:
        _, stderr = proc.communicate(timeout=timeout_s)
    except BaseException as exc:  # timeout, Ctrl-C: end exactly the child we started
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        Path(result_path).unlink(missing_ok=True)
        if isinstance(exc, subprocess.TimeoutExpired):
            return {"error": f"timeout after {timeout_s:.0f} s"}
        raise
    try:
        text = Path(result_path).read_text()
        result: dict[str, Any] = json.loads(text) if text else {}
    finally:
        Path(result_path).unlink(missing_ok=True)
    if not result:
        tail = stderr.decode(errors="replace").strip().splitlines()[-5:]
        result = {"error": f"child exited {proc.returncode} without a result: {' | '.join(tail)}"}
    return result


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


def _median(results: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in results if key in r]
    return statistics.median(values) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def main(argv: list[str] | None = None) -> int:
    import chain_workload as cw

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunkings", default=",".join(cw.CHUNKINGS))
    parser.add_argument("--impl", default="decl,strax,bare")
    parser.add_argument("--modes", default="save,nosave")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--strax-reps", type=int, default=None, help="(default: --reps)")
    parser.add_argument("--baseline", default="", help="another checkout: adds impl 'base'")
    parser.add_argument("--timeout", type=float, default=900.0, help="per process [s]")
    parser.add_argument("--no-rss", action="store_true", help="skip the run-length RSS figure")
    parser.add_argument("--no-load", action="store_true", help="skip the reload figures")
    parser.add_argument("--tmpdir", default=None)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    impls = [i for i in args.impl.split(",") if i]
    if args.baseline:
        impls.insert(1, "base")
    modes = [m == "save" for m in args.modes.split(",") if m]
    roots = {i: str(ROOT) for i in impls}
    if args.baseline:
        roots["base"] = str(Path(args.baseline).resolve())
    root = Path(tempfile.mkdtemp(prefix="chain-bench-", dir=args.tmpdir))
    figures: dict[tuple[str, str, bool], dict[str, Any]] = {}
    try:
        cw.make_records(cw.records_path(root))
        plan = [
            (c, cw.CHUNKINGS[c], cw.RUN_NS, save)
            for c in args.chunkings.split(",")
            if c
            for save in modes
        ]
        for chunking, n, span, save in plan:
            results: dict[str, list[dict[str, Any]]] = {i: [] for i in impls}
            errors: dict[str, dict[str, Any]] = {}
            for rep in range(args.reps):
                for impl in impls:
                    if impl == "bare" and save:
                        continue  # the bare loop stores nothing: its nosave figure is the floor
                    reps = args.strax_reps if impl == "strax" else None
                    if impl in errors or (reps is not None and rep >= reps):
                        continue
                    workdir = root / f"{impl}-{chunking}-{save}-{rep}"
                    spec = {
                        "impl": impl,
                        "n_chunks": n,
                        "span": span,
                        "save": save,
                        "workdir": str(workdir),
                        "code_root": roots[impl],
                        "records": str(cw.records_path(root)),
                        "load": not args.no_load,
                    }
                    result = run_child(spec, args.timeout)
                    shutil.rmtree(workdir, ignore_errors=True)
                    if "error" in result:
                        errors[impl] = result
                        continue
                    results[impl].append(result)
            for impl in impls:
                line: dict[str, Any] = {
                    "figure": "chain",
                    "impl": impl,
                    "chunking": chunking,
                    "save": save,
                }
                if impl == "bare" and save:
                    continue
                if impl in errors:
                    err = errors[impl]
                    emit({**line, "error": err["error"]})
                    if "traceback" in err:
                        print(err["traceback"], file=sys.stderr)
                    if not results[impl]:
                        continue
                rs = results[impl]
                wall = _median(rs, "wall_s")
                line.update(
                    wall_s=round(wall, 4) if wall is not None else None,
                    walls_s=[round(r["wall_s"], 4) for r in rs],
                    cpu_s=round(_median(rs, "cpu_s") or 0, 4),
                    peak_rss_MB=round(_median(rs, "peak_rss_MB") or 0, 1),
                    loadavg=[round(r["loadavg"], 2) for r in rs],
                    n_chunks=len(cw.cuts(cw.load_records(root), span, n)),
                )
                for key in ("digest", "n_out", "compress_s", "store_write_s", "saved_bytes",
                            "strax_decl"):  # fmt: skip
                    if key in rs[0]:
                        value = rs[0][key]
                        if isinstance(value, float):  # a time: the median of the reps
                            value = round(_median(rs, key) or 0.0, 4)
                        line[key] = value
                if len({r.get("digest") for r in rs}) > 1:
                    line["error"] = "digest differs between reps"
                figures[(impl, chunking, save)] = line
                emit(line)
                if any("load" in r for r in rs):
                    emit(load_figure(impl, chunking, line["n_chunks"], rs, len(cw.DATA_TYPES)))
        if not args.no_rss and "decl" in impls:
            rss_figures(root, cw, args, roots["decl"], figures)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(figures, cw)
    return 0


def load_figure(
    impl: str, chunking: str, n_chunks: int, rs: list[dict[str, Any]], n_types: int
) -> dict[str, Any]:
    """Issue 21, item 3: reloading the saved data sets vs reading (and decompressing) their
    bytes; ``overhead_us_per_chunk_per_type`` = (load - read and decode) / (chunks x types)."""
    loads = [r["load"] for r in rs if "load" in r]
    med = {k: statistics.median(x[k] for x in loads) for k in loads[0]}
    over = (med["load_s"] - med["read_decode_s"]) / (n_chunks * n_types) * 1e6
    return {
        "figure": "load",
        "impl": impl,
        "chunking": chunking,
        **{k: round(v, 4) for k, v in med.items()},
        "load/read_decode": _ratio(med["load_s"], med["read_decode_s"]),
        "load/read_bytes": _ratio(med["load_s"], med["read_bytes_s"]),
        "overhead_us_per_chunk_per_type": round(over, 1),
    }


def rss_figures(root: Path, cw: Any, args: Any, code_root: str, figures: dict) -> None:
    """strax_decl with saving at the 5,000-chunk length, over a run 4x shorter."""
    n, span = cw.CHUNKINGS["c5000"] // 4, cw.RUN_NS // 4
    rs = []
    for rep in range(args.reps):
        workdir = root / f"rss-{rep}"
        spec = {
            "impl": "decl",
            "n_chunks": n,
            "span": span,
            "save": True,
            "workdir": str(workdir),
            "code_root": code_root,
            "records": str(cw.records_path(root)),
        }
        result = run_child(spec, args.timeout)
        shutil.rmtree(workdir, ignore_errors=True)
        if "error" not in result:
            rs.append(result)
    line = {"figure": "chain", "impl": "decl", "chunking": "c1250_quarter_run", "save": True}
    if rs:
        line.update(
            wall_s=round(_median(rs, "wall_s") or 0, 4),
            peak_rss_MB=round(_median(rs, "peak_rss_MB") or 0, 1),
            rss_MB=[round(r["peak_rss_MB"], 1) for r in rs],
        )
        figures[("decl", "c1250_quarter_run", True)] = line
    emit(line)


def report(figures: dict[tuple[str, str, bool], dict[str, Any]], cw: Any) -> None:
    n_types = len(cw.DATA_TYPES)
    digests = {
        f"{i}/{c}/{'save' if s else 'nosave'}": f["digest"]
        for (i, c, s), f in figures.items()
        if f.get("digest")
    }
    if digests:
        emit({"check": "digest", "ok": len(set(digests.values())) == 1, "values": digests})
    chunkings = sorted({c for _, c, _ in figures}, key=lambda c: cw.CHUNKINGS.get(c, 0))
    for chunking in chunkings:
        bare = figures.get(("bare", chunking, False))
        if bare is None:
            continue  # the run-length RSS figure: no bare loop at that length
        for save in (True, False):
            for impl in ("decl", "base", "strax"):
                f = figures.get((impl, chunking, save))
                if f is None or f.get("wall_s") is None:
                    continue
                line: dict[str, Any] = {
                    "ratio": f"{impl}/bare",
                    "chunking": chunking,
                    "save": save,
                    "wall": _ratio(f["wall_s"], bare["wall_s"] if bare else None),
                }
                if bare is not None:
                    us = (f["wall_s"] - bare["wall_s"]) / (f["n_chunks"] * n_types) * 1e6
                    line["framework_us_per_chunk_per_type"] = round(us, 1)
                emit(line)
            decl = figures.get(("decl", chunking, save))
            for other in ("strax", "base"):
                o = figures.get((other, chunking, save))
                if decl and o and o.get("wall_s"):
                    emit(
                        {
                            "ratio": f"decl/{other}",
                            "chunking": chunking,
                            "save": save,
                            "wall": _ratio(decl["wall_s"], o["wall_s"]),
                            "peak_rss_MB": _ratio(decl["peak_rss_MB"], o["peak_rss_MB"]),
                        }
                    )
    # The targets of issue 21.
    decl, bare = figures.get(("decl", "c5000", True)), figures.get(("bare", "c5000", False))
    strax = figures.get(("strax", "c5000", True))
    if decl and bare:
        us = (decl["wall_s"] - bare["wall_s"]) / (decl["n_chunks"] * n_types) * 1e6
        emit({"target": "c5000 save: framework us/chunk/type", "value": round(us, 1),
              "wanted": "<=100", "met": us <= 100})  # fmt: skip
    if decl and strax and strax.get("wall_s"):
        speed = strax["wall_s"] / decl["wall_s"]
        emit({"target": "c5000 save: x faster than strax", "value": round(speed, 2),
              "wanted": ">=10", "met": speed >= 10})  # fmt: skip
    elif decl and ("strax", "c5000", True) not in figures:
        emit({"target": "c5000 save: x faster than strax", "value": None, "met": None,
              "note": "strax has no figure (error or timeout: see its line)"})  # fmt: skip
    decl, bare = figures.get(("decl", "c120", True)), figures.get(("bare", "c120", False))
    if decl and bare and bare.get("compress_s") is not None:
        floor = bare["wall_s"] + bare["compress_s"]
        emit({"target": "c120 save: wall / (bare loop + compression)",
              "value": round(decl["wall_s"] / floor, 3), "wanted": "<=1.2",
              "met": decl["wall_s"] / floor <= 1.2})  # fmt: skip
    if decl and bare and bare.get("store_write_s") is not None:
        floor = bare["wall_s"] + bare["store_write_s"]
        emit({"target": "c120 save: wall / (bare loop + the store writing its outputs)",
              "value": round(decl["wall_s"] / floor, 3), "wanted": "<=1.2",
              "met": decl["wall_s"] / floor <= 1.2})  # fmt: skip
    long, short = (
        figures.get(("decl", "c5000", True)),
        figures.get(("decl", "c1250_quarter_run", True)),
    )
    if long and short and short.get("peak_rss_MB"):
        growth = long["peak_rss_MB"] / short["peak_rss_MB"]
        emit({"target": "peak RSS, 4x run length (same chunk length)", "value": round(growth, 3),
              "wanted": "<=1.1", "met": growth <= 1.1})  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "child":
        sys.exit(child(json.loads(sys.argv[2]), sys.argv[3]))
    sys.exit(main())
