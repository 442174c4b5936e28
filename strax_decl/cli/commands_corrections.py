"""``strax-decl corrections``: list, add and tag values of a corrections table."""

from __future__ import annotations

import argparse
import json
from typing import Any

from strax_decl.cli.common import UsageError
from strax_decl.cli.formatting import table

__all__ = ["add_corrections_parser", "cmd_corrections"]


def add_corrections_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "corrections",
        parents=[common],
        help="list, add and tag per-run calibration values (a corrections table)",
        description="A corrections table (an SQLite file) holds versioned values of "
        "corrections by run or by run start time; a global version pins one version of each. "
        "Versions are append-only. Contexts read it with Context(corrections=FILE, "
        "global_version=TAG) and options given as sd.correction(NAME).",
    )
    p.add_argument("file", metavar="FILE", help="the corrections table (created if missing)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="every value (of one correction)")
    ls.add_argument("name", nargs="?", metavar="NAME")
    ls.add_argument("--json", action="store_true", help="print JSON")
    add = actions.add_parser("add", help="add a value of a new or existing version")
    add.add_argument("name", metavar="NAME")
    add.add_argument("version", metavar="VERSION")
    add.add_argument("value", metavar="JSON_VALUE", help="the value, as JSON (e.g. 1.5, [1, 2])")
    add.add_argument("--runs", metavar="RUN[,RUN...]", help="for these runs")
    add.add_argument("--start", type=int, metavar="NS", help="for runs starting at or after")
    add.add_argument("--end", type=int, metavar="NS", help="... and before (default: for ever)")
    tag = actions.add_parser("tag", help="define a global version")
    tag.add_argument("global_version", metavar="TAG")
    tag.add_argument("pins", nargs="+", metavar="NAME=VERSION")
    p.set_defaults(func=cmd_corrections)


def cmd_corrections(args: argparse.Namespace) -> int:
    # imported here: the parser imports this module for its grammar, and sqlite3 with the
    # corrections table would cost every command's start-up
    from strax_decl.corrections import CorrectionsTable

    corrections = CorrectionsTable(args.file)
    if args.action == "add":
        try:
            value = json.loads(args.value)
        except ValueError as e:
            raise UsageError(f"value {args.value!r} is not JSON ({e})") from None
        runs = [r for r in (args.runs or "").split(",") if r]
        if bool(runs) == (args.start is not None):
            raise UsageError("give either --runs or --start")
        if args.end is not None and args.start is None:
            raise UsageError("--end goes with --start (an interval of run start times)")
        corrections.add(args.name, args.version, value, runs=runs, start=args.start, end=args.end)
        return 0
    if args.action == "tag":
        pins = dict(pin.split("=", 1) for pin in args.pins if "=" in pin)
        if len(pins) != len(args.pins):
            raise UsageError("pins are NAME=VERSION")
        corrections.tag(args.global_version, pins)
        return 0
    entries = corrections.entries(args.name)
    tags = corrections.global_versions()
    if args.json:
        print(
            json.dumps(
                {
                    "values": [e.__dict__ for e in entries],
                    "global_versions": tags,
                },
                indent=1,
            )
        )
        return 0
    rows = [
        [
            e.name,
            e.version,
            e.run_id or "",
            "" if e.start is None else f"[{e.start}, {_end(e.end)})",
            json.dumps(e.value)[:60],
        ]
        for e in entries
    ]
    print(table(["correction", "version", "run", "starting in", "value"], rows, set()))
    for tag_name, pins in tags.items():
        print(f"global version {tag_name}: " + ", ".join(f"{n}={v}" for n, v in pins.items()))
    return 0


def _end(end: int | None) -> str:
    return "for ever" if end is None or end >= 2**63 - 1 else str(end)
