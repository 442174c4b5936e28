"""The ``strax-decl`` command line: run, plan, ls, info, graph, rm.

::

    strax-decl run   --plugins examples/demo_plugins.py demo_000            # compute + store
    strax-decl plan  --plugins examples/demo_plugins.py demo_000 events     # load or compute, why
    strax-decl ls                                                            # stored data sets
    strax-decl info  demo_000 peaks                                          # one data set
    strax-decl graph --plugins examples/demo_plugins.py --format mermaid     # the plugin DAG
    strax-decl rm    --failed                                                # clean up

Plugins come from a module name (``strax_decl.testing``) or a ``.py`` file; the module's
``PLUGINS`` list is used if it has one, else every plugin class defined in it.

Exit status: 0 success, 1 the work failed (a plugin raised, data not found, ...), 2 the
command line is wrong (unknown command, target, option or run id). Errors are one line on
stderr; ``--debug`` shows the traceback too.
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import hashlib
import importlib
import importlib.util
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import strax_decl as sd
from strax_decl.config import InvalidOption
from strax_decl.plugin import Plugin, SaveWhen
from strax_decl.registry import Registry
from strax_storage import DataNotFound, DataSetInfo, Store, open_store, validate_name

__all__ = ["UsageError", "default_targets", "load_plugins", "main", "parse_config"]

PROG = "strax-decl"
DEFAULT_STORAGE = os.environ.get("STRAX_DECL_STORAGE", "./strax_data")


class UsageError(Exception):
    """The command line is wrong: exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but errors raise UsageError (printed as one line by ``main``)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


# --------------------------------------------------------------------------- plugins & config


def load_plugins(spec: str) -> list[type[Plugin]]:
    """Plugin classes of a module name or a ``.py`` file path.

    The module's ``PLUGINS`` list if it defines one, else every concrete plugin class defined
    in the module itself (not imported into it), in definition order.
    """
    module = _import(spec)
    declared = getattr(module, "PLUGINS", None)
    if declared is not None:
        plugins = list(declared)
    else:
        plugins = [
            obj
            for obj in vars(module).values()
            if isinstance(obj, type)
            and issubclass(obj, Plugin)
            and obj.__module__ == module.__name__
            and not obj.__dict__.get("abstract", False)
        ]
    if not plugins:
        raise UsageError(f"no plugins found in {spec!r} (define PLUGINS or plugin classes)")
    return plugins


def _import(spec: str) -> ModuleType:
    looks_like_file = spec.endswith(".py") or os.sep in spec or "/" in spec
    if looks_like_file:
        path = Path(spec).resolve()
        if not path.is_file():
            raise UsageError(f"plugin file {spec!r} not found")
        name = path.stem
        loaded = sys.modules.get(name)
        if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() == path:
            return loaded
        if loaded is not None:
            name = f"_strax_decl_plugins_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise UsageError(f"cannot import plugin file {spec!r}")
        module = importlib.util.module_from_spec(module_spec)
        # Registered before running it: plugin classes find their source (version = "auto").
        sys.modules[name] = module
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))  # sibling imports, as `python file.py` allows
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as e:
        if e.name is not None and spec.startswith(e.name):
            raise UsageError(f"cannot import plugin module {spec!r}: {e}") from None
        raise


def parse_config(items: Sequence[str]) -> dict[str, Any]:
    """``["gap=300", "name=x"]`` -> ``{"gap": 300, "name": "x"}`` (values JSON if they parse)."""
    config: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--config expects KEY=VALUE, got {item!r}")
        try:
            config[key] = json.loads(raw)
        except json.JSONDecodeError:
            config[key] = raw
    return config


def _context(args: argparse.Namespace, **settings: Any) -> sd.Context:
    plugins: list[type[Plugin]] = []
    for spec in args.plugins:
        for p in load_plugins(spec):
            if p not in plugins:
                plugins.append(p)
    try:
        return sd.Context(
            storage=args.storage,
            plugins=plugins,
            config=parse_config(args.config),
            **settings,
        )
    except InvalidOption as e:
        raise UsageError(str(e)) from None


def _check_run_id(run_id: str) -> str:
    try:
        return validate_name("run_id", run_id)
    except ValueError as e:
        raise UsageError(str(e)) from None


def default_targets(registry: Registry) -> list[str]:
    """What ``run`` makes when no target is given: every data type stored when requested.

    That is every output with ``save='always'`` or ``save='target'``, in registration order
    (merge-only data, saved only when listed explicitly, is left out: it is made on the fly).
    """
    saved = [d for d in registry.providers if registry.output_spec(d).save >= SaveWhen.TARGET]
    if saved:
        return saved
    consumed = {d for p in registry.plugins.values() for d in p.inputs}
    return [d for d in registry.providers if d not in consumed]


def _targets(registry: Registry, given: Sequence[str]) -> list[str]:
    """Validate targets; none given means ``default_targets``."""
    known = sorted(registry.providers)
    for t in given:
        if t not in registry.providers:
            close = difflib.get_close_matches(t, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UsageError(f"unknown target {t!r} ({hint}registered: {', '.join(known)})")
    if given:
        return list(dict.fromkeys(given))
    return default_targets(registry)


def _runs(text: str) -> list[str]:
    runs = [r.strip() for r in text.split(",") if r.strip()]
    if not runs:
        raise UsageError("no run id given")
    return [_check_run_id(r) for r in runs]


# --------------------------------------------------------------------------- formatting


def format_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


def _ratio(info: DataSetInfo) -> str:
    if not info.stored_bytes or not info.nbytes:
        return "-"
    return f"{info.nbytes / info.stored_bytes:.2f}"


def _created(info: DataSetInfo) -> str:
    if not info.created:
        return "-"
    try:
        when = datetime.datetime.fromisoformat(info.created)
    except ValueError:
        return info.created
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S")


# --------------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    ctx = _context(args, processor=args.processor, max_workers=args.max_workers)
    targets = _targets(ctx.registry, args.targets)
    runs = _runs(args.runs)
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
    ctx: sd.Context, runs: list[str], targets: list[str], args: argparse.Namespace
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


def _run_report(ctx: sd.Context, plan: sd.Plan, seconds: float) -> str:
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
    lines.append(_table(["  data type", "action", "storage", "rows", "on disk"], rows, {3, 4}))
    return "\n".join(lines)


def cmd_plan(args: argparse.Namespace) -> int:
    ctx = _context(args)
    targets = _targets(ctx.registry, args.targets)
    for i, run_id in enumerate(_runs(args.runs)):
        if i:
            print()
        print(ctx.plan(run_id, targets))
    return 0


def _store(args: argparse.Namespace) -> Store:
    if "://" not in args.storage and not Path(args.storage).is_dir():
        raise DataNotFound(f"no store at {args.storage} (the directory does not exist)")
    return open_store(args.storage)


def cmd_ls(args: argparse.Namespace) -> int:
    store = _store(args)
    run_id = _check_run_id(args.run) if args.run else None
    data_type = args.data_type
    if data_type is not None:
        try:
            validate_name("data_type", data_type)
        except ValueError as e:
            raise UsageError(str(e)) from None
    infos = store.list(run_id=run_id, data_type=data_type)
    if args.status:
        infos = [i for i in infos if i.status == args.status]
    if not infos:
        if run_id is not None:
            raise DataNotFound(f"no data sets for run {run_id!r} in {store.url}")
        print(f"no data sets in {store.url}", file=sys.stderr)
        return 0
    rows = [
        [
            i.key.run_id,
            i.key.data_type,
            i.key.lineage_hash,
            i.status,
            str(i.n_rows),
            str(i.n_chunks),
            format_bytes(i.stored_bytes),
            _ratio(i),
            _created(i),
        ]
        for i in infos
    ]
    header = [
        "run",
        "data type",
        "lineage",
        "status",
        "rows",
        "chunks",
        "on disk",
        "ratio",
        "created",
    ]
    print(_table(header, rows, {4, 5, 6, 7}))
    return 0


def _find_one(store: Store, run_id: str, data_type: str, prefix: str | None) -> DataSetInfo:
    infos = [
        i
        for i in store.list(run_id=run_id, data_type=data_type)
        if prefix is None or i.key.lineage_hash.startswith(prefix)
    ]
    if not infos:
        what = f"run {run_id!r}, data type {data_type!r}" + (
            f", lineage hash {prefix}*" if prefix else ""
        )
        raise DataNotFound(f"no stored data set for {what} in {store.url}")
    hashes = sorted({i.key.lineage_hash for i in infos})
    if len(hashes) > 1:
        raise UsageError(
            f"{len(hashes)} data sets match run {run_id!r}, data type {data_type!r} "
            f"(lineage hashes {', '.join(hashes)}); give a hash prefix"
        )
    return infos[0]


def cmd_info(args: argparse.Namespace) -> int:
    store = _store(args)
    run_id = _check_run_id(args.run)
    info = _find_one(store, run_id, args.data_type, args.hash)
    if args.json:
        print(json.dumps(info.attrs, indent=2, sort_keys=True))
        return 0
    meta = info.metadata
    lines = [
        f"data set   {info.key}",
        f"location   {info.location}",
        f"status     {info.status}",
    ]
    if info.exception:
        lines.append(f"exception  {info.exception.strip().splitlines()[-1]}")
    span = "-" if info.start is None else f"[{info.start}, {info.end}) ns"
    lines += [
        f"plugin     {meta.get('plugin', '-')} version {meta.get('version', '-')}",
        f"kind       {meta.get('data_kind', '-')}",
        f"rows       {info.n_rows} in {info.n_chunks} chunks, time span {span}",
        f"size       {format_bytes(info.nbytes)} uncompressed, "
        f"{format_bytes(info.stored_bytes)} on disk (ratio {_ratio(info)})",
    ]
    ours = info.attrs.get("strax_decl", {}) if isinstance(info.attrs, dict) else {}
    compressor = ours.get("compressor") if isinstance(ours, dict) else None
    if isinstance(compressor, dict):
        lines.append(
            f"codecs     {' -> '.join(compressor.get('codecs', []))}, zstd level "
            f"{compressor.get('zstd_level')}, {ours.get('rows_per_chunk')} rows per Zarr chunk"
        )
    lines.append(f"created    {_created(info)}  (strax_decl {meta.get('strax_decl_version', '-')})")
    if meta.get("description"):
        lines.append(f"about      {meta['description']}")
    fields = meta.get("fields") if isinstance(meta.get("fields"), dict) else {}
    if info.dtype is not None and info.dtype.names:
        lines.append("fields")
        rows = []
        for name in info.dtype.names:
            sub = info.dtype[name]
            doc = fields.get(name, {}) if isinstance(fields, dict) else {}
            kind = str(sub.base) + (str(list(sub.shape)) if sub.shape else "")
            rows.append(
                [f"  {name}", kind, str(doc.get("unit") or ""), str(doc.get("description") or "")]
            )
        lines.append(_table(["  name", "type", "unit", "description"], rows, set()))
    lineage = meta.get("lineage")
    if isinstance(lineage, dict):
        lines.append("lineage")
        lines += _lineage_lines(lineage, "  ")
    print("\n".join(lines))
    return 0


def _lineage_lines(lineage: dict[str, Any], indent: str) -> list[str]:
    options = lineage.get("options") or {}
    opts = ", ".join(f"{k}={v!r}" for k, v in sorted(options.items())) if options else ""
    head = f"{indent}{lineage.get('output')} <- {lineage.get('plugin')} {lineage.get('version')}"
    out = [head + (f" ({opts})" if opts else "")]
    for child in (lineage.get("inputs") or {}).values():
        if isinstance(child, dict):
            out += _lineage_lines(child, indent + "  ")
    return out


def cmd_graph(args: argparse.Namespace) -> int:
    ctx = _context(args)
    registry = ctx.registry
    wanted = _targets(registry, args.targets) if args.targets else list(registry.providers)
    data_types = _ancestors(registry, wanted)
    render: dict[str, Callable[[Registry, list[str]], str]] = {
        "text": graph_text,
        "dot": graph_dot,
        "mermaid": graph_mermaid,
    }
    print(render[args.format](registry, data_types))
    return 0


def _ancestors(registry: Registry, targets: Sequence[str]) -> list[str]:
    """``targets`` and everything they need, in dependency order."""
    order: list[str] = []

    def visit(d: str) -> None:
        if d in order:
            return
        for dep in registry.provider(d).inputs:
            visit(dep)
        order.append(d)

    for t in targets:
        visit(t)
    for p in registry.plugins.values():  # keep every output of a multi-output plugin together
        outs = list(p.outputs)
        if any(o in order for o in outs):
            for o in outs:
                if o not in order:
                    order.append(o)
    return order


def graph_text(registry: Registry, data_types: Sequence[str]) -> str:
    rows = []
    for d in data_types:
        p = registry.provider(d)
        inputs = ", ".join(p.inputs) if p.inputs else "(source)"
        rows.append([d, registry.kind(d), f"{p.name} {p.version}", inputs])
    return _table(["data type", "kind", "plugin", "reads"], rows, set())


_PALETTE = ["#cfe2f3", "#d9ead3", "#fff2cc", "#f4cccc", "#d9d2e9", "#fce5cd", "#d0e0e3"]


def _kind_colors(registry: Registry, data_types: Sequence[str]) -> dict[str, str]:
    kinds = list(dict.fromkeys(registry.kind(d) for d in data_types))
    return {k: _PALETTE[i % len(_PALETTE)] for i, k in enumerate(kinds)}


def graph_dot(registry: Registry, data_types: Sequence[str]) -> str:
    colors = _kind_colors(registry, data_types)
    lines = [
        "digraph strax_decl {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
    ]
    for d in data_types:
        p = registry.provider(d)
        label = f"{d}\\n{p.name} {p.version}\\nkind {registry.kind(d)}"
        lines.append(f'  "{d}" [label="{label}", fillcolor="{colors[registry.kind(d)]}"];')
    for d in data_types:
        for dep in registry.provider(d).inputs:
            lines.append(f'  "{dep}" -> "{d}";')
    lines.append("}")
    return "\n".join(lines)


def graph_mermaid(registry: Registry, data_types: Sequence[str]) -> str:
    colors = _kind_colors(registry, data_types)
    lines = ["flowchart LR"]
    for d in data_types:
        p = registry.provider(d)
        lines.append(f'  {d}["{d}<br/><small>{p.name} {p.version}</small>"]')
    for d in data_types:
        for dep in registry.provider(d).inputs:
            lines.append(f"  {dep} --> {d}")
    for i, (kind, color) in enumerate(colors.items()):
        members = [d for d in data_types if registry.kind(d) == kind]
        lines.append(f"  classDef kind{i} fill:{color},stroke:#555")
        lines.append(f"  class {','.join(members)} kind{i}")
    return "\n".join(lines)


def cmd_rm(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.failed:
        if args.data_type or args.hash:
            raise UsageError("rm --failed takes at most a run id")
        run_id = _check_run_id(args.run) if args.run else None
        # "writing" is a live writer at work (a dead one's shows as "failed")
        victims = [i.key for i in store.list(run_id=run_id) if i.status == "failed"]
        if not victims:
            print("no failed data sets", file=sys.stderr)
            return 0
    else:
        if not args.run or not args.data_type:
            raise UsageError("rm needs RUN DATA_TYPE [HASH_PREFIX], or --failed")
        run_id = _check_run_id(args.run)
        if args.all:
            victims = sorted(
                {
                    i.key
                    for i in store.list(run_id=run_id, data_type=args.data_type)
                    if args.hash is None or i.key.lineage_hash.startswith(args.hash)
                }
            )
            if not victims:
                _find_one(store, run_id, args.data_type, args.hash)  # raises DataNotFound
        else:
            victims = [_find_one(store, run_id, args.data_type, args.hash).key]
    for key in dict.fromkeys(victims):
        if args.dry_run:
            print(f"would remove {key}")
            continue
        if not args.failed:
            store.remove(key)  # ClaimHeld (an error naming the writer) if it is being written
        elif not store.remove_failed(key):  # keeps complete data sets and live writers' work
            print(f"skipped {key}: a live writer took it meanwhile", file=sys.stderr)
            continue
        print(f"removed {key}")
    return 0


# --------------------------------------------------------------------------- parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Declarative streaming plugins for chunked, time-ordered data in Zarr.",
        epilog="Run 'strax-decl COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {sd.__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")

    common = _Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors"
    )
    storage = _Parser(add_help=False)
    storage.add_argument(
        "--storage",
        "-s",
        default=DEFAULT_STORAGE,
        metavar="PATH",
        help=f"store location: directory or fsspec URL (default {DEFAULT_STORAGE}, or "
        "$STRAX_DECL_STORAGE)",
    )
    plugins = _Parser(add_help=False)
    plugins.add_argument(
        "--plugins",
        "-p",
        action="append",
        required=True,
        metavar="MODULE_OR_FILE",
        help="plugin module name or .py file (repeatable); uses its PLUGINS list if defined",
    )
    plugins.add_argument(
        "--config",
        "-c",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set an option (repeatable); VALUE is parsed as JSON if it can be",
    )

    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser(
        "run",
        parents=[common, storage, plugins],
        help="compute and store targets for one or more runs",
        description="Compute and store TARGETs (default: every data type no "
        "plugin reads) for each run; stored data is loaded, not recomputed.",
    )
    p.add_argument("runs", metavar="RUN[,RUN...]", help="run id(s), comma-separated")
    p.add_argument("targets", nargs="*", metavar="TARGET", help="data types to make")
    p.add_argument(
        "--processor",
        choices=["threaded", "serial"],
        default="threaded",
        help="executor (serial: one thread, for debugging)",
    )
    p.add_argument(
        "--max-workers",
        type=_positive_int,
        default=2,
        metavar="N",
        help="workers of parallel plugins (default 2)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: only on a terminal)",
    )
    p.add_argument(
        "--timing",
        action="store_true",
        help="print where the time went: per plugin, loader and saver",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="Dask scheduler (tcp://host:8786): one task per run on its workers, which need "
        "the plugins and the store (a shared path or object-store URL); needs strax-decl[dask]",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "plan",
        parents=[common, storage, plugins],
        help="show what would be loaded or computed, and why",
    )
    p.add_argument("runs", metavar="RUN[,RUN...]", help="run id(s), comma-separated")
    p.add_argument(
        "targets", nargs="*", metavar="TARGET", help="data types (default: all saved by default)"
    )
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("ls", parents=[common, storage], help="list stored data sets")
    p.add_argument("run", nargs="?", metavar="RUN", help="only this run")
    p.add_argument("--data-type", "-t", metavar="DATA_TYPE", help="only this data type")
    p.add_argument(
        "--status", choices=["complete", "failed", "writing"], help="only data sets in this status"
    )
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser(
        "info",
        parents=[common, storage],
        help="metadata, fields and lineage of one stored data set",
    )
    p.add_argument("run", metavar="RUN")
    p.add_argument("data_type", metavar="DATA_TYPE")
    p.add_argument(
        "hash", nargs="?", metavar="HASH_PREFIX", help="lineage hash (prefix) if several are stored"
    )
    p.add_argument("--json", action="store_true", help="print the raw group attributes")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "graph", parents=[common, plugins], help="the plugin DAG as text, Graphviz DOT or Mermaid"
    )
    p.add_argument(
        "targets", nargs="*", metavar="TARGET", help="only these data types and what they need"
    )
    p.add_argument("--format", "-f", choices=["text", "dot", "mermaid"], default="text")
    p.set_defaults(func=cmd_graph, storage=None)

    p = sub.add_parser("rm", parents=[common, storage], help="remove stored data sets")
    p.add_argument("run", nargs="?", metavar="RUN")
    p.add_argument("data_type", nargs="?", metavar="DATA_TYPE")
    p.add_argument("hash", nargs="?", metavar="HASH_PREFIX")
    p.add_argument(
        "--failed",
        action="store_true",
        help=(
            "remove every failed data set and dead writers' leftovers (of RUN, if given); "
            "data sets being written are left alone"
        ),
    )
    p.add_argument(
        "--all",
        action="store_true",
        help="remove every lineage of RUN DATA_TYPE (else exactly one must match)",
    )
    p.add_argument("--dry-run", "-n", action="store_true", help="only say what would go")
    p.set_defaults(func=cmd_rm)
    return parser


# --------------------------------------------------------------------------- main

_USAGE_ERRORS = (UsageError, InvalidOption)
_OURS = (*_USAGE_ERRORS, sd.RegistrationError, sd.PluginDeclarationError, OSError, LookupError)


def _one_line(exc: BaseException) -> tuple[str, bool]:
    """The error as one line, and whether it is one of ours (no type name, no hint needed)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    text = " ".join(part.strip() for part in text.strip().splitlines() if part.strip())
    ours = isinstance(exc, _OURS)
    ours = ours or type(exc).__module__.split(".")[0] in ("strax_storage", "strax_decl")
    if not text:
        return type(exc).__name__, ours
    return (text if ours else f"{type(exc).__name__}: {text}"), ours


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``strax-decl`` and ``python -m strax_decl``; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    try:
        args = build_parser().parse_args(args_list)
        debug = bool(getattr(args, "debug", False))
        status: int = args.func(args)
        return status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `strax-decl ls | head`
        sys.stderr.close()
        return 0
    except Exception as e:
        if debug:
            traceback.print_exc()
        usage = isinstance(e, _USAGE_ERRORS)
        text, ours = _one_line(e)
        hint = "" if ours or debug else " (--debug shows the traceback)"
        print(f"{PROG}: error: {text}{hint}", file=sys.stderr)
        return 2 if usage else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
