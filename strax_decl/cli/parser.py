"""The command line's grammar: one ``argparse`` parser with a sub-parser per command.

The command functions are imported when their command runs (``_lazy``): building the parser
imports no numba, zarr or pydantic, so ``--help``, ``--version`` and the store commands start
at once (tests/cli/test_cli_lookup.py measures it). A command module imported here for its
``add_*_parser`` must keep its own heavy imports inside its functions.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import Any

from strax_decl.cli.commands_corrections import add_corrections_parser
from strax_decl.cli.commands_lookup import add_lookup_parsers
from strax_decl.cli.commands_runs import add_runs_parsers
from strax_decl.cli.common import DEFAULT_STORAGE, PROG, Parser, storage_path

__all__ = ["build_parser"]


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """``strax_decl.cli.<module>.<name>``, imported when the command runs."""

    def run(args: argparse.Namespace) -> int:
        func: Any = getattr(importlib.import_module(f"strax_decl.cli.{module}"), name)
        return int(func(args))

    run.__name__ = name
    return run


cmd_verify = _lazy("commands_check", "cmd_verify")
cmd_graph = _lazy("commands_compute", "cmd_graph")
cmd_plan = _lazy("commands_compute", "cmd_plan")
cmd_run = _lazy("commands_compute", "cmd_run")
cmd_info = _lazy("commands_store", "cmd_info")
cmd_ls = _lazy("commands_store", "cmd_ls")
cmd_rm = _lazy("commands_store", "cmd_rm")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


class _Version(argparse.Action):
    """``--version``: the installed version, read (``importlib.metadata``, ~10-30 ms) only
    when asked, not by every command's start-up."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from strax_decl.version import __version__

        print(f"{parser.prog} {__version__}", file=sys.stdout)  # on stdout, as argparse's
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Declarative streaming plugins for chunked, time-ordered data in Zarr.",
        epilog="Run 'strax-decl COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action=_Version, help="show program's version number and exit")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")

    common = Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors"
    )
    storage = Parser(add_help=False)
    storage.add_argument(
        "--storage",
        "-s",
        default=DEFAULT_STORAGE,
        type=storage_path,
        metavar="PATH",
        help=f"store location: directory or fsspec URL (default {DEFAULT_STORAGE}, or "
        "$STRAX_DECL_STORAGE)",
    )
    plugins = Parser(add_help=False)
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

    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
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
        "--timeout",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="longest any single wait may last (mailboxes, computations, another process's "
        "claim) before the run fails naming what it waited for (default: no limit)",
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
    p.add_argument(
        "--fuzzy-for",
        action="append",
        default=[],
        metavar="PLUGIN[,PLUGIN...]",
        help="plugins (or data types) whose version and options may differ in loaded data "
        "(repeatable; see docs/processing.md)",
    )
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser(
        "verify",
        parents=[common, storage, plugins],
        help="recompute stored data from its stored inputs and compare, field by field",
        description="Recompute the stored DATA_TYPE of RUN from its stored inputs (in memory, "
        "saving nothing), with the inputs in their stored chunks and cut otherwise, and "
        "compare with what is stored: reports corruption, unversioned code changes, other "
        "differences and chunk-dependent plugins, naming plugin, chunk and field. Exit "
        "status 1 if a problem is found.",
    )
    p.add_argument("run", metavar="RUN")
    p.add_argument("data_type", metavar="DATA_TYPE")
    p.add_argument(
        "--sample",
        type=_positive_int,
        default=None,
        metavar="N",
        help="compare N stored chunks: the first, the last and random others (default: all)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the sample and of the other chunking"
    )
    p.add_argument(
        "--no-rechunk",
        dest="rechunk",
        action="store_false",
        help="only recompute with the inputs in their stored chunks",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("ls", parents=[common, storage], help="list stored data sets")
    p.add_argument("run", nargs="?", metavar="RUN", help="only this run")
    p.add_argument("--data-type", "-t", metavar="DATA_TYPE", help="only this data type")
    p.add_argument(
        "--status",
        choices=["complete", "failed", "writing", "partial"],
        help="only data sets in this status",
    )
    p.add_argument("--json", action="store_true", help="print the data sets as a JSON list")
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
    p.add_argument(
        "--yes",
        "-y",
        action="store_true",
        help="rm RUN: remove the whole run (data sets, run document, tags, folder) without asking",
    )
    p.set_defaults(func=cmd_rm)

    add_corrections_parser(sub, common)
    add_lookup_parsers(sub, common, storage, plugins)
    add_runs_parsers(sub, common, storage)
    return parser
