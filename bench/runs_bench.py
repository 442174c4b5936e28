"""The run catalog at scale: ``ctx.runs()`` and ``ctx.select_runs`` over 10,000 runs.

One JSON line per figure on stdout::

    python3 bench/runs_bench.py                 # 10,000 runs, strax 2.2.3 too if installed
    python3 bench/runs_bench.py --runs 1000 --no-strax

The store: 10,000 synthetic runs, each with a run document (start, end, one of five modes,
tags from a pool; a tenth of the runs get one more tag as a record later), and for each of
the five data types of ``strax_decl.testing`` a data set for some of the runs (records 90 %,
peaks 70 %, peak_basics 50 %, big_peaks 30 %, peak_extras 10 %; plus, for 3 % of the runs, a
data set of another lineage and, for 2 %, a failed one). The data sets are real as far as
the catalog can tell: their group ``zarr.json`` is a copy of a real one (made by the
pipeline) with the run id rewritten, and a complete one gets its completion record as
publishing makes it (``strax_storage.status_records.mark_complete``); their arrays are left
out, since the catalog never opens them (that is the point being measured).

Figures (seconds): ``runs_first_cold_nocache``: ``runs`` in a fresh process, the OS page
cache dropped, and no run snapshot in the store (``strax_storage.run_snapshot``: the first
scan, which lists every run folder and writes one); ``runs_cold`` / ``select_cold``: the
first call in a fresh process (nothing cached in it; the OS page cache as it is; the
snapshot there); ``..._cold_nocache``: the same after dropping the OS page cache (where this
process may: ``page_cache_dropped`` says);
``runs_warm`` / ``select_warm``: the same call again in that process. ``runs`` asks
availability of all 5 data types; ``select`` is ``select_runs(mode="tpc_*",
tags="science", exclude_tags="bad", available=["peaks", "peak_basics"])``. strax 2.2.3's
``scan_runs(check_available=5 types)`` and ``select_runs`` (same criteria) run on the same
runs in strax's own layout (``DataDirectory``: one ``<run>-metadata.json`` per run, one
folder per stored data set). strax's ``select_runs`` reuses the run table it scanned first
(``st.runs``) until ``force_reload``; strax_decl reads the store on every call.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))

TYPES = ["records", "peaks", "peak_basics", "big_peaks", "peak_extras"]
SHARE = {"records": 0.9, "peaks": 0.7, "peak_basics": 0.5, "big_peaks": 0.3, "peak_extras": 0.1}
MODES = ["tpc_kr83m", "tpc_bkg", "tpc_ar37", "nv_led", "mv_led"]
TAGS = ["science", "_blinded", "bad", "messy", "calib", "_sciencerun0"]
SELECT = {
    "mode": "tpc_*",
    "tags": "science",
    "exclude_tags": "bad",
    "available": ["peaks", "peak_basics"],
}
FIGURES = [
    f"{what}_{phase}" for what in ("runs", "select") for phase in ("cold", "cold_nocache", "warm")
]
SNAPSHOT = ".runs-snapshot.json"  # strax_storage.run_snapshot.SNAPSHOT
HOUR = 3600 * 10**9
T0 = 1_700_000_000 * 10**9


def emit(figure: str, **fields: Any) -> None:
    print(json.dumps({"bench": "runs", "figure": figure, **fields}), flush=True)


def plan_runs(n: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    runs = []
    for i in range(n):
        tags = sorted(rng.sample(TAGS, rng.randint(0, 3)))
        stored = [dt for dt in TYPES if rng.random() < SHARE[dt]]
        runs.append(
            {
                "name": f"{i:06d}",
                "start": T0 + i * HOUR,
                "end": T0 + i * HOUR + HOUR - 10**9,
                "mode": rng.choice(MODES),
                "tags": tags,
                "later_tag": "reprocessed" if rng.random() < 0.1 else None,
                "stored": stored,
                "other_lineage": rng.random() < 0.03,
                "failed": rng.random() < 0.02,
            }
        )
    return runs


def build_decl(root: Path, runs: list[dict[str, Any]]) -> None:
    import strax_decl as sd
    from strax_decl.testing import PLUGINS
    from strax_storage import DataKey
    from strax_storage.status_records import mark_complete

    ctx = sd.Context(str(root), plugins=PLUGINS, config={"n_chunks": 1, "rows_per_chunk": 10})
    ctx.make("template", TYPES)
    templates = {}
    for dt in TYPES:
        key = ctx.key_for("template", dt)
        templates[dt] = json.loads((root / key.path / "zarr.json").read_text())
    shutil.rmtree(root / "template")
    shutil.rmtree(root / ".complete")  # the template's records (they match nothing now)
    store = ctx.stores[0]

    def write(run: str, dirname: str, doc: dict[str, Any]) -> None:
        (root / run / dirname).mkdir(parents=True)
        (root / run / dirname / "zarr.json").write_text(json.dumps(doc))
        data_type, _, lineage_hash = dirname.partition("-")
        # what publishing records (a complete one only: it checks the zarr.json written)
        mark_complete(store.backend, DataKey(run, data_type, lineage_hash))

    for r in runs:
        run = r["name"]
        fields = {k: r[k] for k in ("start", "end", "mode", "tags")}
        store.define_run(run, {"name": run, **fields})
        if r["later_tag"]:
            store.tag_run(run, r["later_tag"])
        for dt in r["stored"]:
            doc = json.loads(json.dumps(templates[dt]))
            doc["attributes"]["strax_decl"]["run_id"] = run
            if r["failed"] and dt == "peaks":
                doc["attributes"]["strax_decl"].update(status="failed", complete=False)
            write(run, ctx.key_for(run, dt).dirname, doc)
        if r["other_lineage"]:
            doc = json.loads(json.dumps(templates["peaks"]))
            doc["attributes"]["strax_decl"].update(run_id=run, lineage_hash="otherlineage2345")
            write(run, "peaks-otherlineage2345", doc)


def decl_context(root: Path) -> Any:
    import strax_decl as sd
    from strax_decl.testing import PLUGINS

    return sd.Context(str(root), plugins=PLUGINS, config={"n_chunks": 1, "rows_per_chunk": 10})


# ----------------------------------------------------------------------------- strax


def strax_context(root: Path) -> Any:
    import numpy as np
    import strax

    plugins = []
    previous: str | None = None
    for dt in TYPES:
        attrs: dict[str, Any] = {
            "provides": dt,
            "depends_on": () if previous is None else (previous,),
            "dtype": strax.time_fields,
            "__version__": "0.0.1",
            "compute": lambda self, **kw: np.zeros(0, strax.time_fields),
        }
        plugins.append(type(f"P_{dt}", (strax.Plugin,), attrs))
        previous = dt
    st = strax.Context(storage=[strax.DataDirectory(str(root), provide_run_metadata=True)])
    for p in plugins:
        st.register(p)
    return st


def build_strax(root: Path, runs: list[dict[str, Any]]) -> None:
    st = strax_context(root)
    for dt in TYPES:
        st.key_for("000000", dt)  # lineages once
    for r in runs:
        run = r["name"]
        doc = {
            "name": run,
            "number": int(run),
            "start": {"$date": (r["start"] // 10**6)},
            "end": {"$date": (r["end"] // 10**6)},
            "mode": r["mode"],
            "tags": [{"name": t} for t in r["tags"] + ([r["later_tag"]] if r["later_tag"] else [])],
        }
        (root / f"{run}-metadata.json").write_text(json.dumps(doc))
        for dt in r["stored"]:
            if r["failed"] and dt == "peaks":
                continue
            folder = root / str(st.key_for(run, dt))
            folder.mkdir()
            meta = {"writing_ended": 1_700_000_000, "run_id": run, "data_type": dt, "chunks": []}
            (folder / "metadata.json").write_text(json.dumps(meta))


# ----------------------------------------------------------------------------- timing


def drop_page_cache() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def child(impl: str, root: str, what: str, drop: str) -> None:
    """``what`` (runs or select) cold, then warm, in this fresh process; prints one JSON dict."""
    dropped = drop == "drop" and drop_page_cache()
    out: dict[str, Any] = {"page_cache_dropped": dropped}
    t = time.perf_counter()
    if impl == "decl":
        ctx = decl_context(Path(root))
        out["import_and_context"] = time.perf_counter() - t

        def runs() -> Any:
            return ctx.runs(available=TYPES)

        def select() -> Any:
            return ctx.select_runs(**SELECT)

    else:
        import warnings

        import pandas as pd

        # strax 2.2.3 predates pandas 3's str dtype (its to_str_tuple refuses an Arrow array)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pd.set_option("future.infer_string", False)
        st = strax_context(Path(root))
        out["import_and_context"] = time.perf_counter() - t

        def runs() -> Any:
            return st.scan_runs(check_available=TYPES)

        def select() -> Any:
            return st.select_runs(
                run_mode=SELECT["mode"],
                include_tags=SELECT["tags"],
                exclude_tags=SELECT["exclude_tags"],
                available=tuple(SELECT["available"]),
            )

    calls = {"runs": runs, "select": select}
    for phase in ("cold", "warm"):
        t = time.perf_counter()
        frame = calls[what]()
        out[f"{what}_{phase}{'_nocache' if drop == 'drop' and phase == 'cold' else ''}"] = (
            time.perf_counter() - t
        )
        out["n_runs" if what == "runs" else "n_selected"] = len(frame)
    print(json.dumps(out))


def measure(impl: str, root: Path) -> dict[str, Any]:
    """Each call first in a fresh process of its own: with the OS page cache as it is
    (``_cold``), and after dropping it (``_cold_nocache``, where this process may). For
    strax_decl first ``runs_first_cold_nocache``: ``runs`` with no run snapshot in the store
    (the first scan ever, which writes it)."""
    out: dict[str, Any] = {}
    if impl == "decl":
        (root / SNAPSHOT).unlink(missing_ok=True)
        got = _measure(impl, root, "runs", "drop")
        out["runs_first_cold_nocache"] = got["runs_cold_nocache"]
    for what in ("runs", "select"):
        for drop in ("keep", "drop"):
            got = _measure(impl, root, what, drop)
            if drop == "drop":
                got.pop(f"{what}_warm")
            out.update(got)
    return out


def _measure(impl: str, root: Path, what: str, drop: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", impl, str(root), what, drop],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{impl} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--no-strax", action="store_true")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument(
        "--keep", metavar="DIR", help="build the stores here and keep them (reused if there)"
    )
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    runs = plan_runs(args.runs)
    base = Path(args.keep or tempfile.mkdtemp(prefix="runs_bench_"))
    try:
        t = time.perf_counter()
        if not (base / "decl").exists():  # --keep DIR of an earlier run: reused
            build_decl(base / "decl", runs)
            emit("build_store_s", impl="strax_decl", value=round(time.perf_counter() - t, 2))
        result = measure("decl", base / "decl")
        for name in ["runs_first_cold_nocache", *FIGURES]:
            emit(
                f"{name}_s",
                impl="strax_decl",
                value=round(result[name], 3),
                n_runs=result["n_runs"],
                n_selected=result["n_selected"],
                page_cache_dropped=name.endswith("nocache") and result["page_cache_dropped"],
            )
        strax_ok = False
        if not args.no_strax:
            try:
                import strax

                strax_ok = strax.__version__ == "2.2.3"
            except ImportError:
                pass
            if not strax_ok:
                emit("strax", impl="strax", value=None, note="strax 2.2.3 not installed: skipped")
        if strax_ok:
            t = time.perf_counter()
            if not (base / "strax").exists():
                build_strax(base / "strax", runs)
                emit("build_store_s", impl="strax", value=round(time.perf_counter() - t, 2))
            other = measure("strax", base / "strax")
            for name in FIGURES:
                emit(
                    f"{name}_s",
                    impl="strax 2.2.3",
                    value=round(other[name], 3),
                    n_runs=other["n_runs"],
                    n_selected=other["n_selected"],
                    page_cache_dropped=name.endswith("nocache") and other["page_cache_dropped"],
                )
                emit(
                    f"{name}_ratio",
                    impl="strax/strax_decl",
                    value=round(other[name] / result[name], 1),
                )
            if (other["n_runs"], other["n_selected"]) != (result["n_runs"], result["n_selected"]):
                emit("mismatch", strax=other, strax_decl=result)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
