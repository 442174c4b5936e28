"""The commands about runs: ``runs`` (the catalog, with strax's selection), ``define-run``
and ``tag``. Availability needs the plugins (``-p``): it is judged by their lineage hashes."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from strax_decl.cli.common import (
    Parser,
    UsageError,
    check_run_id,
    make_context,
    open_existing_store,
)
from strax_decl.cli.formatting import table

if TYPE_CHECKING:  # pragma: no cover - imported when a command runs (fast start-up)
    from strax_decl.context import Context

__all__ = ["add_runs_parsers", "cmd_define_run", "cmd_runs", "cmd_tag"]


def _context(args: argparse.Namespace) -> Context:
    open_existing_store(args)
    if args.plugins:
        return make_context(args)
    if getattr(args, "available", None) or getattr(args, "check", None):
        raise UsageError("--available and --check need the plugins (-p): lineages come from them")
    from strax_decl.context import Context

    return Context(storage=args.storage, plugins=[])


def _time(value: Any) -> str:
    return "-" if value is None or str(value) == "NaT" else value.strftime("%Y-%m-%d %H:%M:%S")


def cmd_runs(args: argparse.Namespace) -> int:
    ctx = _context(args)
    available = args.available or []
    frame = ctx.select_runs(
        mode=args.mode or None,
        tags=args.tag or None,
        exclude_tags=args.exclude_tag or None,
        available=available,
        pattern=args.pattern or None,
        since=args.since,
        until=args.until,
        pattern_type="re" if args.regex else "fnmatch",
    )
    checked = list(dict.fromkeys([*available, *(args.check or [])]))
    for dt in checked[len(available) :]:
        frame[f"{dt}_available"] = frame["name"].isin(ctx.list_available(dt, list(frame["name"])))
    names = [f"{dt}_available" for dt in checked]
    if args.json:
        out = []
        for row in frame.itertuples(index=False):
            r = row._asdict()
            item: dict[str, Any] = {
                "name": r["name"],
                "start": None if str(r["start"]) == "NaT" else int(r["start"].value),
                "end": None if str(r["end"]) == "NaT" else int(r["end"].value),
                "mode": r["mode"],
                "tags": [t for t in r["tags"].split(",") if t],
                "livetime": None if str(r["livetime"]) == "NaT" else r["livetime"].total_seconds(),
                "superrun": bool(r["superrun"]),
            }
            item.update({n: bool(r[n]) for n in names})
            out.append(item)
        print(json.dumps(out, indent=1))
        return 0
    rows = [
        [
            str(r["name"]),
            _time(r["start"]),
            _time(r["end"]),
            r["mode"] or "-",
            r["tags"] or "-",
            "superrun" if r["superrun"] else "",
            *("yes" if r[n] else "no" for n in names),
        ]
        for r in frame.to_dict("records")
    ]
    header = ["run", "start (UTC)", "end (UTC)", "mode", "tags", "", *checked]
    print(table(header, rows, set()) if rows else "no runs match")
    return 0


def cmd_define_run(args: argparse.Namespace) -> int:
    ctx = _context(args)
    name = check_run_id(args.name)
    fields: dict[str, Any] = {}
    for key in ("start", "end", "mode"):
        value = getattr(args, key)
        if value is not None:
            fields[key] = int(value) if value.lstrip("-").isdigit() else value
    if args.tag:
        fields["tags"] = args.tag
    if args.comment:
        fields["comments"] = args.comment
    data = None
    if args.subruns:
        data = [check_run_id(r.strip()) for r in args.subruns.split(",") if r.strip()]
    try:
        doc = ctx.define_run(name, data, **fields)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(json.dumps(doc.to_json(), sort_keys=True))
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    ctx = _context(args)
    run_id = check_run_id(args.run)
    try:
        changed = (ctx.remove_tag if args.remove else ctx.add_tag)(run_id, args.tag)
    except ValueError as e:
        raise UsageError(str(e)) from None
    what = "removed from" if args.remove else "added to"
    print(f"tag {args.tag!r} {what} run {run_id}" + ("" if changed else " (no change)"))
    return 0


def add_runs_parsers(
    sub: Any, common: argparse.ArgumentParser, storage: argparse.ArgumentParser
) -> None:
    """``runs``, ``define-run`` and ``tag``."""
    optional_plugins = Parser(add_help=False)
    optional_plugins.add_argument(
        "--plugins", "-p", action="append", default=[], metavar="MODULE_OR_FILE",
        help="plugin module or .py file (repeatable): needed for --available",
    )  # fmt: skip
    optional_plugins.add_argument(
        "--config", "-c", action="append", default=[], metavar="KEY=VALUE",
        help="set an option (repeatable)",
    )  # fmt: skip
    parents = [common, storage, optional_plugins]
    p = sub.add_parser(
        "runs",
        parents=parents,
        help="list runs: their start, end, mode, tags and what is stored (strax's select_runs)",
        description="List the runs of the store, selected as strax's select_runs does: "
        "wildcards (* ? [..]) in --mode, --tag and --pattern; --exclude-tag beats --tag; a "
        "tag's leading '_' is ignored unless the pattern has one.",
    )
    p.add_argument("--mode", "-m", action="append", metavar="PATTERN", help="run mode")
    p.add_argument("--tag", "-t", action="append", metavar="PATTERN", help="any tag matches")
    p.add_argument("--exclude-tag", "-x", action="append", metavar="PATTERN", help="no tag")
    p.add_argument("--pattern", action="append", metavar="PATTERN", help="run name")
    p.add_argument(
        "--available", "-a", action="append", metavar="DATA_TYPE", help="only runs with it stored"
    )
    p.add_argument(
        "--check", "-k", action="append", metavar="DATA_TYPE", help="show if it is stored"
    )
    p.add_argument("--since", metavar="TIME", help="started at or after (ISO time or ns)")
    p.add_argument("--until", metavar="TIME", help="started before (ISO time or ns)")
    p.add_argument("--regex", action="store_true", help="patterns are regular expressions")
    p.add_argument("--json", action="store_true", help="print the runs as JSON")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser(
        "define-run",
        parents=parents,
        help="store a run document, or define a superrun (--subruns)",
    )
    p.add_argument("name", metavar="RUN")
    p.add_argument("--start", metavar="TIME", help="ISO time or ns since the epoch")
    p.add_argument("--end", metavar="TIME", help="ISO time or ns since the epoch")
    p.add_argument("--mode", metavar="MODE")
    p.add_argument("--tag", action="append", metavar="TAG", help="repeatable")
    p.add_argument("--comment", action="append", metavar="TEXT", help="repeatable")
    p.add_argument("--subruns", metavar="RUN[,RUN...]", help="a superrun of these runs")
    p.set_defaults(func=cmd_define_run)

    p = sub.add_parser("tag", parents=parents, help="add (or --remove) a tag of a run")
    p.add_argument("run", metavar="RUN")
    p.add_argument("tag", metavar="TAG")
    p.add_argument("--remove", action="store_true", help="remove the tag")
    p.set_defaults(func=cmd_tag)
