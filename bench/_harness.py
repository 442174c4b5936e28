"""Fresh-process measurement of one figure: the parent side and the child side.

Each measurement runs in a new Python process so that caches, allocator state and numba's JIT
of one figure cannot leak into another. The child first does a tiny warm-up run of the same
graph (compiling every numba kernel and warming the framework's own code paths), then times
the full run, then reports wall time and its peak RSS (``getrusage``: the high-water mark of the
whole process, warm-up and imports included, as a user would see it). The child writes its
result as JSON to a file, so libraries printing to stdout cannot corrupt it.

Child usage (internal): ``python bench/_harness.py child SPEC_JSON RESULT_PATH``.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
MB = 1e6


@dataclass(frozen=True, slots=True)
class Spec:
    """One measurement: which implementation runs which workload in which mode at which size."""

    impl: str
    workload: str
    mode: str
    scale: str  # "full" or "quick"
    levels: int = 0  # W2 chain length
    action: str = "run"  # "run" (warm-up + timed run) or "prepare" (untimed setup, e.g. reload)
    workdir: str = ""


def _module(impl: str) -> Any:
    return importlib.import_module(f"{impl}_impl")


def child_main(spec_json: str, result_path: str) -> int:
    """Run one Spec in this (fresh) process and write the result JSON to ``result_path``."""
    # bench/ for workloads and the *_impl modules; the repo root so that the working tree's
    # strax_decl is imported even when the package is not installed.
    sys.path[:0] = [str(BENCH_DIR), str(BENCH_DIR.parent)]
    spec = Spec(**json.loads(spec_json))
    result: dict[str, Any] = {}
    try:
        try:
            module = _module(spec.impl)
        except Exception as exc:  # an implementation that cannot import is reported, not fatal
            result = {"error": f"import failed: {type(exc).__name__}: {exc}", "import_error": True}
            return 0
        import workloads as wl

        workdir = Path(spec.workdir)
        size = wl.size_for(spec.workload, spec.scale)
        warm = wl.size_for(spec.workload, "warmup")
        if spec.action == "prepare":
            prepare = getattr(module, "prepare", None)
            if prepare is not None:
                prepare(spec.workload, spec.mode, warm, workdir / "warmup", "warmup")
                prepare(spec.workload, spec.mode, size, workdir / "timed", "timed")
            result = {"prepared": True}
            return 0
        module.run(spec.workload, spec.mode, warm, workdir / "warmup", "warmup", spec.levels)
        gc.collect()
        load = os.getloadavg()[0]  # how busy the (shared) machine was: judge the noise
        before = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        out = module.run(spec.workload, spec.mode, size, workdir / "timed", "timed", spec.levels)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        result = {
            "wall_s": wall,
            "cpu_s": cpu,  # all threads; less sensitive than wall to other load on the machine
            "peak_rss_MB": after.ru_maxrss * 1024 / MB,  # ru_maxrss is in KiB on Linux
            "loadavg": load,
            "source_bytes": size.source_bytes,
            **out,
        }
    except BaseException as exc:
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    finally:
        Path(result_path).write_text(json.dumps(result))
    return 0


def run_child(
    spec: Spec, python: str = sys.executable, timeout_s: float = 1800.0
) -> dict[str, Any]:
    """Run ``spec`` in a fresh process; returns its result dict (with "error" on any failure)."""
    fd, result_path = tempfile.mkstemp(prefix="bench-result-", suffix=".json")
    os.close(fd)
    cmd = [python, str(Path(__file__).resolve()), "child", json.dumps(asdict(spec)), result_path]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    # Own process group: on a timeout we end exactly the child we started and its helpers.
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True
    )
    try:
        _, stderr = proc.communicate(timeout=timeout_s)
    except BaseException as exc:  # timeout, Ctrl-C, SIGTERM: end the child we started
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


def measure(
    impl: str,
    workload: str,
    mode: str,
    scale: str,
    *,
    levels: int = 0,
    reps: int = 3,
    python: str = sys.executable,
    tmp_root: str | None = None,
    needs_prepare: bool = False,
) -> dict[str, Any]:
    """Median of ``reps`` fresh-process runs of one figure, as one JSON-able dict.

    Each rep gets an empty work directory (a store left by the previous rep would turn computing
    into loading); for modes that read stored data, one untimed ``prepare`` process fills a
    shared directory first.
    """
    root = Path(tempfile.mkdtemp(prefix=f"bench-{impl}-{workload}-{mode}-", dir=tmp_root))
    line: dict[str, Any] = {"workload": workload, "impl": impl, "mode": mode}
    if workload == "W2":
        line["levels"] = levels
    try:
        if needs_prepare:
            spec = Spec(impl, workload, mode, scale, levels, "prepare", str(root / "shared"))
            prepared = run_child(spec, python)
            if "error" in prepared:
                return {**line, **prepared}
        results = []
        for rep in range(reps):
            workdir = root / ("shared" if needs_prepare else f"rep{rep}")
            result = run_child(
                Spec(impl, workload, mode, scale, levels, "run", str(workdir)), python
            )
            if "error" in result:
                return {**line, **result}
            results.append(result)
            if not needs_prepare:
                shutil.rmtree(workdir, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    walls = [r["wall_s"] for r in results]
    wall = statistics.median(walls)
    line.update(
        wall_s=round(wall, 4),
        records_MBps=round(results[0]["source_bytes"] / MB / wall, 1),
        peak_rss_MB=round(statistics.median(r["peak_rss_MB"] for r in results), 1),
        cpu_s=round(statistics.median(r["cpu_s"] for r in results), 4),
        target=results[0].get("target"),
        n_out=results[0].get("n_out"),
        walls_s=[round(w, 4) for w in walls],
        rss_MB=[round(r["peak_rss_MB"], 1) for r in results],
        loadavg=[round(r["loadavg"], 2) for r in results],
        scale=scale,
    )
    if len({r.get("n_out") for r in results}) > 1:
        line["error"] = f"n_out differs between reps: {[r.get('n_out') for r in results]}"
    return line


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "child":
        sys.exit(child_main(sys.argv[2], sys.argv[3]))
    sys.exit("usage: python bench/_harness.py child SPEC_JSON RESULT_PATH (internal)")
