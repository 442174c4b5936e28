"""The lookup commands: ``diff`` (lineages), ``copy`` (data sets between stores), ``fields``.

::

    strax-decl diff RUN DATA_TYPE HASH_A HASH_B           # two stored data sets
    strax-decl diff -p plugins.py RUN DATA_TYPE [HASH]    # the plugins' lineage vs stored
    strax-decl copy RUN DATA_TYPE [HASH] --to /shared/strax_data [--recompress zstd:9]
    strax-decl fields -p plugins.py 'area*'               # which data types have such fields

``diff`` exits 0 when the lineages are the same and 1 when they differ (as ``diff`` does).
Heavy imports happen inside the commands (the command line starts at once).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from strax_decl.cli.common import UsageError, check_run_id, make_context, open_existing_store

if TYPE_CHECKING:  # pragma: no cover
    from strax_storage import DataSetInfo, Store

__all__ = ["add_lookup_parsers", "cmd_copy", "cmd_diff", "cmd_fields"]


def add_lookup_parsers(
    sub: Any,
    common: argparse.ArgumentParser,
    storage: argparse.ArgumentParser,
    plugins: argparse.ArgumentParser,
) -> None:
    """Register ``diff``, ``copy`` and ``fields`` on the command sub-parsers ``sub``."""
    optional_plugins = argparse.ArgumentParser(add_help=False)
    for action in plugins._actions:
        if action.dest in ("plugins", "config"):
            kwargs: dict[str, Any] = {
                "action": "append",
                "metavar": action.metavar,
                "help": action.help,
                "default": [] if action.dest == "config" else None,
            }
            optional_plugins.add_argument(*action.option_strings, **kwargs)
    p = sub.add_parser(
        "diff",
        parents=[common, storage, optional_plugins],
        help="lineage differences: two stored data sets, or the plugins' vs a stored one",
        description="Show the version, option and input differences between the lineages of "
        "two stored data sets of RUN DATA_TYPE (HASH_A HASH_B), or between the lineage the "
        "plugins (-p, --config) give DATA_TYPE and stored ones (HASH, or every other stored "
        "lineage). Exit status 0: the same, 1: they differ.",
    )
    p.add_argument("run", metavar="RUN")
    p.add_argument("data_type", metavar="DATA_TYPE")
    p.add_argument("hashes", nargs="*", metavar="HASH", help="lineage hash prefixes")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser(
        "copy",
        parents=[common, storage],
        help="copy a stored data set to another store, keeping its lineage and checks",
        description="Copy the stored RUN DATA_TYPE (of lineage HASH_PREFIX if several are "
        "stored) from --storage to --to: loaded verified chunk by chunk and written by the "
        "destination's saver (claimed, published only when complete).",
    )
    p.add_argument("run", metavar="RUN")
    p.add_argument("data_type", metavar="DATA_TYPE")
    p.add_argument("hash", nargs="?", metavar="HASH_PREFIX")
    p.add_argument("--to", required=True, metavar="PATH", help="destination store (path or URL)")
    p.add_argument("--recompress", metavar="CODEC", help="codec of the copy, e.g. zstd:9")
    p.add_argument("--rechunk-mb", type=float, metavar="MB", help="combine/split chunks to MB")
    p.add_argument("--overwrite", action="store_true", help="replace a complete copy at --to")
    p.set_defaults(func=cmd_copy)

    p = sub.add_parser(
        "fields",
        parents=[common, plugins],
        help="the fields of a data type, or which data types have fields matching a pattern",
    )
    p.add_argument(
        "what", metavar="DATA_TYPE_OR_PATTERN", help="a data type, or a pattern such as 'area*'"
    )
    p.set_defaults(func=cmd_fields, storage=None)


def _stored(store: Store, run_id: str, data_type: str, prefix: str) -> DataSetInfo:
    found = [i for i in store.list(run_id, data_type) if i.key.lineage_hash.startswith(prefix)]
    hashes = sorted({i.key.lineage_hash for i in found})
    if not hashes:
        from strax_storage import DataNotFound

        raise DataNotFound(f"no stored {run_id}/{data_type} with lineage {prefix}* in {store.url}")
    if len(hashes) > 1:
        raise UsageError(f"lineage hash prefix {prefix!r} is ambiguous: {', '.join(hashes)}")
    return found[0]


def cmd_diff(args: argparse.Namespace) -> int:
    from strax_decl.context.inspection import LineageComparison
    from strax_decl.lineage import diff

    run_id = check_run_id(args.run)
    store = open_existing_store(args)
    comparisons: list[LineageComparison] = []
    if args.plugins:
        ctx = make_context(args)
        if args.data_type not in ctx.registry.providers:
            from strax_decl.cli.common import parse_targets

            parse_targets(ctx.registry, [args.data_type])  # UsageError with did you mean
        if len(args.hashes) > 1:
            raise UsageError("with --plugins, give at most one HASH")
        mine = ctx.key_for(run_id, args.data_type).lineage_hash
        if args.hashes:
            comparisons.append(ctx.compare_lineage(args.hashes[0], args.data_type, run_id))
        else:
            others = sorted(
                {i.key.lineage_hash for i in store.list(run_id, args.data_type)} - {mine}
            )
            comparisons += [ctx.compare_lineage(h, args.data_type, run_id) for h in others]
            if not others:
                print(f"{args.data_type} of run {run_id!r}: no other lineage stored")
                return 0
    else:
        if len(args.hashes) != 2:
            raise UsageError("diff needs HASH_A HASH_B, or --plugins to compare with")
        a, b = (_stored(store, run_id, args.data_type, h) for h in args.hashes)
        comparisons.append(
            LineageComparison(
                args.data_type,
                f"stored {a.key}",
                f"stored {b.key}",
                a.key.lineage_hash,
                b.key.lineage_hash,
                diff(a.metadata.get("lineage") or {}, b.metadata.get("lineage") or {}),
            )
        )
    print("\n".join(str(c) for c in comparisons))
    return 1 if any(comparisons) else 0


def cmd_copy(args: argparse.Namespace) -> int:
    from strax_decl.cli.common import storage_path
    from strax_decl.cli.formatting import format_bytes
    from strax_decl.copying import copy_data_set
    from strax_storage import open_store

    run_id = check_run_id(args.run)
    source = open_existing_store(args)
    info = _stored(source, run_id, args.data_type, args.hash or "")
    if info.status != "complete":
        raise UsageError(f"data set {info.key} is {info.status}: only complete data is copied")
    dest = open_store(storage_path(args.to))
    copied = copy_data_set(
        source,
        dest,
        info.key,
        codec=args.recompress,
        rechunk_mb=args.rechunk_mb,
        overwrite=args.overwrite,
    )
    print(
        f"copied {copied.key} to {dest.url}: {copied.n_rows} rows in {copied.n_chunks} chunks, "
        f"{format_bytes(copied.stored_bytes)} on disk"
    )
    return 0


def cmd_fields(args: argparse.Namespace) -> int:
    ctx = make_context(args)
    if args.what in ctx.registry.providers:
        frame = ctx.data_info(args.what)
    else:
        frame = ctx.search_field(args.what)
        if frame.empty:
            from strax_decl.request_args import did_you_mean

            hint = did_you_mean(args.what, ctx.registry.providers)
            raise UsageError(
                f"no data type {args.what!r} and no fields matching it ({hint}data types: "
                f"{', '.join(sorted(ctx.registry.providers))})"
            )
    print(frame.to_string(index=False))
    return 0
