"""What every command shares: usage errors, plugins and config from the command line, the
context, targets and run ids."""

from __future__ import annotations

import argparse
import difflib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from strax_decl import loading
from strax_decl.config import InvalidOption
from strax_decl.context import Context
from strax_decl.errors import StraxDeclError
from strax_decl.plugin import Plugin, SaveWhen
from strax_decl.registry import Registry
from strax_storage import DataNotFound, Store, open_store, validate_name

__all__ = [
    "DEFAULT_STORAGE",
    "PROG",
    "Parser",
    "UsageError",
    "check_run_id",
    "default_targets",
    "load_plugins",
    "make_context",
    "open_existing_store",
    "parse_config",
    "parse_runs",
    "parse_targets",
]

PROG = "strax-decl"
DEFAULT_STORAGE = os.environ.get("STRAX_DECL_STORAGE", "./strax_data")


class UsageError(StraxDeclError):
    """The command line is wrong: exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but errors raise UsageError (printed as one line by ``main``)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def load_plugins(spec: str) -> list[type[Plugin]]:
    """Plugin classes of a module name or a ``.py`` file path (``strax_decl.loading``).

    The module's ``PLUGINS`` list if it defines one, else every concrete plugin class defined
    in the module itself (not imported into it), in definition order.
    """
    try:
        return loading.load_plugins(spec)
    except loading.PluginLoadError as e:
        raise UsageError(str(e)) from None


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


def make_context(args: argparse.Namespace, **settings: Any) -> Context:
    """The context of ``--plugins``, ``--config`` and ``--storage``."""
    plugins: list[type[Plugin]] = []
    for spec in args.plugins:
        for p in load_plugins(spec):
            if p not in plugins:
                plugins.append(p)
    try:
        return Context(
            storage=args.storage,
            plugins=plugins,
            config=parse_config(args.config),
            **settings,
        )
    except InvalidOption as e:
        raise UsageError(str(e)) from None


def check_run_id(run_id: str) -> str:
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


def parse_targets(registry: Registry, given: Sequence[str]) -> list[str]:
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


def parse_runs(text: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``, each checked."""
    runs = [r.strip() for r in text.split(",") if r.strip()]
    if not runs:
        raise UsageError("no run id given")
    return [check_run_id(r) for r in runs]


def open_existing_store(args: argparse.Namespace) -> Store:
    """The store of ``--storage``; a local directory must exist (no store is made by reading)."""
    if "://" not in args.storage and not Path(args.storage).is_dir():
        raise DataNotFound(f"no store at {args.storage} (the directory does not exist)")
    return open_store(args.storage)
