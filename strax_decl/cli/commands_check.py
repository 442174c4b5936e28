"""The command that checks stored data: ``verify`` (recompute and compare)."""

from __future__ import annotations

import argparse
import json
import sys

from strax_decl.cli.common import PROG, check_run_id, make_context, parse_targets

__all__ = ["cmd_verify"]


def cmd_verify(args: argparse.Namespace) -> int:
    """Status 0 when the recomputed rows agree with the stored ones, 1 when a problem is
    found (the report on stdout, one line on stderr)."""
    ctx = make_context(args)
    run_id = check_run_id(args.run)
    (data_type,) = parse_targets(ctx.registry, [args.data_type])
    report = ctx.verify(run_id, data_type, sample=args.sample, rechunk=args.rechunk, seed=args.seed)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(report)
    if report.ok:
        return 0
    first = report.problems[0]
    more = f" (and {len(report.problems) - 1} more, see above)" if len(report.problems) > 1 else ""
    print(f"{PROG}: error: verify found {first}{more}", file=sys.stderr)
    return 1
