"""The analysis of ``analysis_plugins.py`` on two runs, with calibrations taken per run.

1. Builds the corrections table (an SQLite file) from ``analysis_corrections.json``: per-
   channel gains and electron lifetimes of ``run_a`` and ``run_b``, and two global versions.
2. Makes ``event_basics`` of both runs under global version ``gv1``: the runs' gains differ,
   so every data type from ``hits`` on has another lineage per run; ``records`` is shared.
3. Under ``gv2`` (a new electron lifetime for ``run_b`` only), plans again: only
   ``event_basics`` of ``run_b`` is computed; everything else loads.

    python3 examples/analysis.py [STORE_DIR]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import analysis_plugins

import strax_decl as sd

HERE = Path(__file__).parent
RUNS = ["run_a", "run_b"]
CONFIG = {
    "run_duration": 200_000_000,  # 0.2 s per run, in 20 ms chunks: quick
    "chunk_duration": 20_000_000,
    "pmt_gains": sd.correction("pmt_gains"),
    "electron_lifetime": sd.correction("electron_lifetime"),
}


def corrections_table(path: Path) -> sd.CorrectionsTable:
    """The example's corrections, from the JSON file shipped beside it."""
    spec = json.loads((HERE / "analysis_corrections.json").read_text())
    table = sd.CorrectionsTable(path)
    if table.entries():
        return table  # built before
    for name, versions in spec["corrections"].items():
        for version, values in versions.items():
            for run, value in values["by_run"].items():
                table.add(name, version, value, runs=[run])
    for tag, pins in spec["global_versions"].items():
        table.tag(tag, pins)
    return table


def context(store: Path, table: sd.CorrectionsTable, global_version: str) -> sd.Context:
    return sd.Context(
        storage=str(store / "strax_data"),
        plugins=analysis_plugins.PLUGINS,
        config=CONFIG,
        corrections=table,
        global_version=global_version,
    )


def main(folder: Path) -> None:
    table = corrections_table(folder / "corrections.sqlite")
    ctx = context(folder, table, "gv1")
    for run in RUNS:
        ctx.make(run, ["event_basics", "peak_proximity"])
        events = ctx.get_array(run, "event_basics")
        print(f"{run}: {len(events)} events, median cS2 {np.median(events['cs2_area']):.0f} PE")
    for data_type in ("records", "hits", "event_basics"):
        hashes = {run: ctx.key_for(run, data_type).lineage_hash for run in RUNS}
        print(f"{data_type:>13}: {hashes}")
    updated = context(folder, table, "gv2")
    for run in RUNS:
        plan = updated.plan(run, ["event_basics", "peak_proximity"])
        print(f"under gv2, {run} computes {plan.to_compute or 'nothing'}")
    print(updated.plan("run_b", "event_basics"))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
