"""What every command shares: usage errors, plugins and config from the command line, the
context, targets and run ids."""

from __future__ import annotations

import argparse
import difflib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from strax_decl.errors import StraxDeclError

if TYPE_CHECKING:  # pragma: no cover - imported where used, so the CLI starts at once
    from strax_decl.context import Context
    from strax_decl.plugin import Plugin
    from strax_decl.registry import Registry
    from strax_storage import Store

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
    "storage_path",
]

PROG = "strax-decl"
DEFAULT_STORAGE = os.environ.get("STRAX_DECL_STORAGE") or "./strax_data"


def storage_path(text: str) -> str:
    """``--storage``'s value: a local path with ``~`` expanded, or a URL as given."""
    return text if "://" in text else os.path.expanduser(text)


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
    from strax_decl import loading

    try:
        return loading.load_plugins(spec)
    except loading.PluginLoadError as e:
        raise UsageError(str(e)) from None


def parse_config(items: Sequence[str], registry: Registry | None = None) -> dict[str, Any]:
    """``["gap=300", "name=x"]`` -> ``{"gap": 300, "name": "x"}``.

    With the ``registry``, each VALUE is read by the type its option declares
    (``strax_decl.cli.config_values``: a ``str`` option takes ``2024`` as text, a tuple
    ``5,95``), and an unknown KEY says ``did you mean ...?``; without it, or for an option
    of no simple type, VALUE is JSON if it parses, else the text.
    """
    from strax_decl.cli.config_values import parse_value

    config: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--config expects KEY=VALUE, got {item!r}")
        annotation = None if registry is None else _annotation(registry, key)
        if annotation is not None:
            try:
                config[key] = parse_value(raw, annotation)
            except ValueError as e:
                raise UsageError(f"--config {key}: {e}") from None
            continue
        try:
            config[key] = json.loads(raw)
        except json.JSONDecodeError:
            config[key] = raw
    return config


def _annotation(registry: Registry, key: str) -> Any:
    """The declared type of option ``key`` (``option`` or ``Plugin.option``); UsageError
    with ``did you mean`` for an unknown one."""
    plugin, _, option = key.rpartition(".")
    if plugin in registry.plugins:
        specs = registry.plugins[plugin].option_specs
        if option in specs:
            return specs[option].annotation
        known = sorted(specs)
        where = f"plugin {plugin} takes no option {option!r}"
    elif not plugin and key in registry.options:
        return registry.options[key].annotation
    else:
        known = sorted(registry.options)
        where = f"unknown option {key!r}"
    close = difflib.get_close_matches(option or key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UsageError(f"--config: {where} ({hint}options: {', '.join(known) or 'none'})")


def make_context(args: argparse.Namespace, **settings: Any) -> Context:
    """The context of ``--plugins``, ``--config`` and ``--storage``."""
    from strax_decl.config import InvalidOption
    from strax_decl.context import Context

    plugins: list[type[Plugin]] = []
    for spec in args.plugins:
        for p in load_plugins(spec):
            if p not in plugins:
                plugins.append(p)
    from strax_decl.registry import Registry

    try:
        registry = Registry.build(plugins)
    except Exception:
        registry = None  # Context reports what is wrong with the plugins
    try:
        return Context(
            storage=args.storage,
            plugins=plugins,
            config=parse_config(args.config, registry),
            **settings,
        )
    except InvalidOption as e:
        raise UsageError(str(e)) from None


def check_run_id(run_id: str) -> str:
    from strax_storage import validate_name

    try:
        return validate_name("run_id", run_id)
    except ValueError as e:
        raise UsageError(str(e)) from None


def default_targets(registry: Registry) -> list[str]:
    """What ``run`` makes when no target is given: every data type stored when requested.

    That is every output with ``save='always'`` or ``save='target'``, in registration order
    (merge-only data, saved only when listed explicitly, is left out: it is made on the fly).
    """
    from strax_decl.plugin import SaveWhen

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
    from strax_storage import DataNotFound, open_store

    if "://" not in args.storage and not Path(args.storage).is_dir():
        raise DataNotFound(f"no store at {args.storage} (the directory does not exist)")
    return open_store(args.storage)
