"""The commands that use plugins: ``run`` (compute and store), ``plan``, ``graph``."""

from __future__ import annotations

import argparse
import sys
import time

from strax_decl.cli.common import PROG, UsageError, make_context, parse_runs, parse_targets
from strax_decl.cli.formatting import format_bytes, table
from strax_decl.context import Context
from strax_decl.resolver import Plan

__all__ = ["cmd_graph", "cmd_plan", "cmd_run"]


def cmd_run(args: argparse.Namespace) -> int:
    ctx = make_context(
        args, processor=args.processor, max_workers=args.max_workers, timeout=args.timeout
    )
    targets = parse_targets(ctx.registry, args.targets)
    runs = parse_runs(args.runs)
    if args.scheduler:
        return _run_on_cluster(ctx, runs, targets, args)
    for run_id in runs:
        plan = ctx.plan(run_id, targets)
        t0 = time.perf_counter()
        ctx.make(run_id, targets, progress=args.progress)
        seconds = time.perf_counter() - t0
        if not args.quiet:
            print(_run_report(ctx, plan, seconds))
        if args.timing and ctx.last_stats is not None:
            print(ctx.last_stats.summary())
    return 0


def _run_on_cluster(
    ctx: Context, runs: list[str], targets: list[str], args: argparse.Namespace
) -> int:
    """``run --scheduler``: one Dask task per run; a summary; status 1 if any run failed."""
    result = ctx.make(runs, targets, client=args.scheduler, progress=args.progress)
    if not args.quiet or not result.ok:
        print(result)
    if args.timing:
        for outcome in result.outcomes.values():
            if outcome.stats:
                print(f"{outcome.run_id}:\n{outcome.stats}")
    if not result.ok:
        failed = ", ".join(result.failed)
        print(
            f"{PROG}: error: {len(result.failed)} of {len(runs)} runs failed: {failed}",
            file=sys.stderr,
        )
        return 1
    return 0


def _run_report(ctx: Context, plan: Plan, seconds: float) -> str:
    computed = plan.to_compute
    lines = []
    if not computed:
        lines.append(f"{plan.run_id}: nothing to compute; already stored: {', '.join(plan.steps)}")
    else:
        loaded = plan.to_load
        lines.append(
            f"{plan.run_id}: computed {', '.join(computed)}"
            + (f"; loaded {', '.join(loaded)}" if loaded else "")
            + f" in {seconds:.2f} s"
        )
    rows = []
    for data_type, step in plan.steps.items():
        info = next((i for s in ctx.stores if (i := s.find(step.key)) is not None), None)
        stored = "stored" if info is not None else "not stored"
        rows.append(
            [
                f"  {data_type}",
                "loaded" if step.action == "load" else "computed",
                stored,
                str(info.n_rows) if info is not None else "-",
                format_bytes(info.stored_bytes) if info is not None else "-",
            ]
        )
    lines.append(table(["  data type", "action", "storage", "rows", "on disk"], rows, {3, 4}))
    return "\n".join(lines)


def cmd_plan(args: argparse.Namespace) -> int:
    ctx = make_context(args)
    targets = parse_targets(ctx.registry, args.targets)
    fuzzy = [name for value in args.fuzzy_for for name in value.split(",") if name]
    if fuzzy:
        from strax_decl.fuzzy import check_fuzzy_for

        try:
            ctx = ctx.new_context(fuzzy_for=check_fuzzy_for(ctx.registry, fuzzy))
        except KeyError as e:
            raise UsageError(str(e.args[0])) from None
    for i, run_id in enumerate(parse_runs(args.runs)):
        if i:
            print()
        print(ctx.plan(run_id, targets))
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    ctx = make_context(args)
    wanted = parse_targets(ctx.registry, args.targets) if args.targets else None
    print(ctx.graph(args.format, wanted))
    return 0
