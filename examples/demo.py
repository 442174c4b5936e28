"""The demo: simulate a small detector and process it from waveforms to events.

    python3 examples/demo.py            # first time: computes and stores everything
    python3 examples/demo.py            # second time: everything is loaded from the cache

Data goes to ``./strax_data`` (a directory of Zarr groups; ``--storage`` to change). The plugins
are in ``demo_plugins.py`` next to this file; the same pipeline runs from the command line::

    strax-decl run --plugins examples/demo_plugins.py demo_000 --timing
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo_plugins

import strax_decl as sd
from strax_decl.cli import default_targets, format_bytes, parse_config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", default="./strax_data", help="store (default ./strax_data)")
    parser.add_argument("--run", default="demo_000", help="run id (default demo_000)")
    parser.add_argument(
        "--config", action="append", default=[], metavar="KEY=VALUE", help="set an option"
    )
    parser.add_argument("--processor", choices=["threaded", "serial"], default="threaded")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    args = parser.parse_args(argv)

    ctx = sd.Context(
        storage=args.storage,
        plugins=demo_plugins.PLUGINS,
        config=parse_config(args.config),
        processor=args.processor,
    )
    # Every data type that is stored when requested (all but the merge-only event_info).
    targets = default_targets(ctx.registry)
    plan = ctx.plan(args.run, targets)
    print(plan)
    print()

    t0 = time.perf_counter()
    ctx.make(args.run, targets, progress=args.progress)
    seconds = time.perf_counter() - t0

    rows = []
    for data_type in targets:
        key = ctx.key_for(args.run, data_type)
        info = next(i for s in ctx.stores if (i := s.find(key)) is not None)
        how = "loaded" if plan.steps[data_type].action == "load" else "computed"
        ratio = info.nbytes / info.stored_bytes if info.stored_bytes else 0.0
        rows.append(
            f"  {data_type:<13} {how:<9} {info.n_rows:>8} rows {format_bytes(info.nbytes):>9}"
            f"  on disk {format_bytes(info.stored_bytes):>9} (x{ratio:.1f})"
        )
    print(f"Run {args.run} in {args.storage}:")
    print("\n".join(rows))
    print()
    if plan.to_compute:
        n = len(plan.to_compute)
        print(f"Computed {n} data types in {seconds:.2f} s; where the time went:")
        assert ctx.last_stats is not None
        print(ctx.last_stats.summary())
    else:
        print(f"Nothing computed: all {len(targets)} data types were loaded from the cache.")
    print()

    # event_info merges event_basics and the cuts on the fly (a merge-only plugin).
    events = ctx.get_array(args.run, "event_info", progress=False)
    good = events[events["cut_s1"] & events["cut_drift"]]
    print(f"{len(events)} events, {len(good)} pass both cuts.")
    if len(good):
        print(
            f"Good events: median S1 {np.median(good['s1_area']):.1f} PE, median S2 "
            f"{np.median(good['s2_area']):.0f} PE, median drift time "
            f"{np.median(good['drift_time']) / 1000:.1f} us."
        )
    print()
    print("Next: run this again (all loaded from the cache), or look at the data with")
    print(f"  strax-decl ls --storage {args.storage}")
    print(f"  strax-decl info --storage {args.storage} {args.run} event_basics")
    return 0


if __name__ == "__main__":
    sys.exit(main())
