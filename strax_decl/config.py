"""Validating the user's configuration against every plugin's Options model.

The context holds one ``{option name: value}`` dict, as strax does; each plugin takes the
options it declares. Two refinements:

- **Scoped values**: ``"PeakletsHE.hit_threshold": 30`` (or ``{"PeakletsHE": {"hit_threshold":
  30}}``) sets an option for one plugin only; it wins over the unscoped value. A child plugin
  (a subclass providing other data types) thereby runs with its own value of an option it
  shares with its parent.
- **Per-run values**, for options declared ``sd.option(..., per_run=True)``:
  ``sd.by_run({"r1": 1.2, "r2": 1.3}, default=1.0)`` or ``sd.correction("electron_lifetime")``
  (a value from the context's corrections table, the version pinned by the context's
  ``global_version`` or given). They are resolved per run when a plan is made; the resolved
  value, and for a correction its name and version, enter that run's lineage.

Validation happens when the context is configured, before any data is touched, and errors
name the option and the plugin (and the run and source for per-run values).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from strax_decl.corrections import CorrectionNotFound, CorrectionsSource
from strax_decl.errors import StraxDeclError
from strax_decl.plugin import Options, Plugin
from strax_decl.registry import Registry

__all__ = [
    "ByRun",
    "Configuration",
    "Correction",
    "InvalidOption",
    "RunOptions",
    "by_run",
    "correction",
    "flatten_scoped",
    "validate_config",
]


class InvalidOption(StraxDeclError, ValueError):
    """An option value is unknown, of the wrong type or out of bounds (pydantic-backed)."""


@dataclass(frozen=True)
class ByRun:
    """A per-run value given as a mapping ``run id -> value`` (``default`` for other runs)."""

    values: Mapping[str, Any]
    default: Any = None
    has_default: bool = False

    def describe(self) -> str:
        return f"by_run({len(self.values)} runs{', default' if self.has_default else ''})"


_NO_DEFAULT = object()


def by_run(values: Mapping[str, Any], default: Any = _NO_DEFAULT) -> ByRun:
    """A per-run option value: ``values[run_id]``, else ``default`` (error if none)."""
    if not isinstance(values, Mapping) or not all(isinstance(k, str) for k in values):
        raise TypeError(f"by_run takes a mapping of run ids (strings) to values, got {values!r}")
    has = default is not _NO_DEFAULT
    return ByRun(dict(values), default if has else None, has)


@dataclass(frozen=True)
class Correction:
    """A per-run value from the context's corrections source: ``name`` at ``version`` (None:
    the version the context's ``global_version`` pins)."""

    name: str
    version: str | None = None

    def describe(self) -> str:
        return f"correction {self.name} {self.version or '(global version)'}"


def correction(name: str, version: str | None = None) -> Correction:
    """A per-run option value taken from the corrections table (see ``strax_decl.corrections``)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"correction name must be a non-empty string, got {name!r}")
    return Correction(name, version)


PerRun = ByRun | Correction


@dataclass
class RunOptions:
    """The options of every plugin for one run, and where per-run values came from."""

    options: dict[str, Options]
    #: plugin -> option -> {"source": ..., plus "correction"/"version" for corrections}
    sources: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)


def flatten_scoped(config: Mapping[str, Any], plugins: Collection[str]) -> dict[str, Any]:
    """``config`` with every ``{"Plugin": {"option": v}}`` spelled ``"Plugin.option": v``, so
    configs merge option by option and a later value wins whichever spelling it uses."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(key, str) and key in plugins and isinstance(value, Mapping):
            for option, v in value.items():
                flat.pop(f"{key}.{option}", None)  # the later spelling wins
                flat[f"{key}.{option}"] = v
        else:
            flat.pop(key, None)
            flat[key] = value
    return flat


def split_config(
    registry: Registry, config: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``config`` as (unscoped values, {plugin: scoped values}); unknown names refused."""
    unscoped: dict[str, Any] = {}
    scoped: dict[str, dict[str, Any]] = {}
    for key, value in config.items():
        if not isinstance(key, str):
            raise InvalidOption(f"config keys must be strings, got {key!r}")
        if key in registry.plugins and isinstance(value, Mapping):
            scoped.setdefault(key, {}).update(value)
        elif "." in key and key.split(".", 1)[0] in registry.plugins:
            plugin, option = key.split(".", 1)
            scoped.setdefault(plugin, {})[option] = value
        else:
            unscoped[key] = value
    unknown = sorted(set(unscoped) - set(registry.options))
    if unknown:
        known = ", ".join(sorted(registry.options)) or "none"
        hints = "".join(
            f"{name!r}: did you mean {close[0]!r}? "
            for name in unknown
            if (close := difflib.get_close_matches(name, sorted(registry.options), n=1))
        )
        raise InvalidOption(
            f"unknown option(s) {', '.join(map(repr, unknown))}: no registered plugin takes "
            f"them ({hints}known options: {known}; scope one to a plugin as 'Plugin.option')"
        )
    for plugin, values in scoped.items():
        takes = registry.plugins[plugin].option_specs
        bad = sorted(set(values) - set(takes))
        if bad:
            raise InvalidOption(
                f"plugin {plugin} takes no option(s) {', '.join(map(repr, bad))} (it takes: "
                f"{', '.join(sorted(takes)) or 'none'})"
            )
    return unscoped, scoped


class Configuration:
    """A context's validated configuration: options per plugin, per run where they vary."""

    def __init__(
        self,
        registry: Registry,
        config: Mapping[str, Any],
        corrections: CorrectionsSource | None = None,
        global_version: str | None = None,
    ) -> None:
        self.registry = registry
        self.corrections = corrections
        self.global_version = global_version
        unscoped, scoped = split_config(registry, config)
        #: plugin -> option -> value as given (constants and per-run sources)
        self.given: dict[str, dict[str, Any]] = {}
        #: plugin -> option -> per-run source
        self.per_run: dict[str, dict[str, PerRun]] = {}
        for name, plugin in registry.plugins.items():
            values = {k: unscoped[k] for k in plugin.option_specs if k in unscoped}
            values.update(scoped.get(name, {}))
            self.given[name] = values
            sources = {k: v for k, v in values.items() if isinstance(v, ByRun | Correction)}
            for option in sources:
                if not plugin.option_specs[option].per_run:
                    raise InvalidOption(
                        f"option {option!r} of plugin {name} is given per run "
                        f"({sources[option].describe()}), but is not declared "
                        "sd.option(..., per_run=True)"
                    )
                if isinstance(sources[option], Correction) and corrections is None:
                    raise InvalidOption(
                        f"option {option!r} of plugin {name} takes "
                        f"{sources[option].describe()}, but the context has no corrections "
                        "(Context(corrections=...))"
                    )
            if sources:
                self.per_run[name] = sources
        #: options with every per-run value at its default: for views that know no run
        self.static = RunOptions({name: self._static(name) for name in registry.plugins})
        for name, sources in self.per_run.items():
            # values by run are all known now: check each run's together, now
            by_run = {o: src for o, src in sources.items() if isinstance(src, ByRun)}
            for run in sorted({r for src in by_run.values() for r in src.values}):
                values = {o: src.values[run] for o, src in by_run.items() if run in src.values}
                self._checked(name, run, values, construct=False)

    def _static(self, name: str) -> Options:
        """The options of plugin ``name`` with per-run values at their defaults. A required
        per-run option without a default stays unset here (resolved per run only)."""
        return self._checked(name, None, {}, construct=True)

    def _checked(
        self, name: str, run_id: str | None, resolved: Mapping[str, Any], *, construct: bool
    ) -> Options:
        """``_validate``, except that required per-run options neither ``resolved`` nor
        defaulted may be missing (they are resolved per run); with ``construct``, the
        options are built even so (for views that know no run), else validated in full."""
        plugin = self.registry.plugins[name]
        values = self._values(name, resolved)
        unset = {
            o
            for o in self.per_run.get(name, {})
            if o not in values and plugin.option_specs[o].required
        }
        if not unset:
            return self._validate(name, run_id, resolved)
        try:
            plugin.Options.model_validate(values)
        except ValidationError as e:
            if any(err["type"] != "missing" or err["loc"][:1] not in [(o,) for o in unset]
                   for err in e.errors()):  # fmt: skip
                run = "" if run_id is None else f" for run {run_id!r}"
                _validate_plugin(plugin, values, run)  # raises, naming the problem
        return plugin.Options.model_construct(**values)

    def depends_on_run(self, plugin: str) -> bool:
        return plugin in self.per_run

    def for_run(self, run_id: str, run_start: int | None = None) -> RunOptions:
        """Every plugin's options for ``run_id``; InvalidOption naming option, run and source
        when a per-run value cannot be resolved (before anything runs)."""
        if not self.per_run:
            return self.static
        options = dict(self.static.options)
        sources: dict[str, dict[str, dict[str, str]]] = {}
        for name, per_run in self.per_run.items():
            resolved: dict[str, Any] = {}
            for option, src in per_run.items():
                resolved[option], sources.setdefault(name, {})[option] = self._resolve(
                    name, option, src, run_id, run_start
                )
            options[name] = self._validate(name, run_id, resolved)
        return RunOptions(options, sources)

    def _resolve(
        self, plugin: str, option: str, src: PerRun, run_id: str, run_start: int | None
    ) -> tuple[Any, dict[str, str]]:
        where = f"option {option!r} of plugin {plugin} for run {run_id!r}"
        if isinstance(src, ByRun):
            if run_id in src.values:
                return src.values[run_id], {"source": "by_run"}
            if src.has_default:
                return src.default, {"source": "by_run default"}
            raise InvalidOption(f"{where}: {src.describe()} has no value for this run")
        assert self.corrections is not None
        try:
            version = src.version
            if version is None:
                if self.global_version is None:
                    raise InvalidOption(
                        f"{where}: {src.describe()} needs a version or the context's global_version"
                    )
                version = self.corrections.version_for(src.name, self.global_version)
            value = self.corrections.value(src.name, version, run_id, run_start)
        except CorrectionNotFound as e:
            raise InvalidOption(f"{where}: {e}") from e
        return value, {"source": "correction", "correction": src.name, "version": version}

    def _values(self, name: str, resolved: Mapping[str, Any]) -> dict[str, Any]:
        """Plugin ``name``'s given constants, with per-run values ``resolved`` or defaulted."""
        values = {
            k: v for k, v in self.given[name].items() if not isinstance(v, ByRun | Correction)
        }
        for option, src in self.per_run.get(name, {}).items():
            if option in resolved:
                values[option] = resolved[option]
            elif isinstance(src, ByRun) and src.has_default:
                values[option] = src.default
        return values

    def _validate(self, name: str, run_id: str | None, resolved: Mapping[str, Any]) -> Options:
        run = "" if run_id is None else f" for run {run_id!r}"
        return _validate_plugin(self.registry.plugins[name], self._values(name, resolved), run)


def validate_config(registry: Registry, config: Mapping[str, Any]) -> dict[str, Options]:
    """Validated Options instance per plugin name; raises InvalidOption on the first problem."""
    return Configuration(registry, config).static.options


def _validate_plugin(plugin: type[Plugin], values: Mapping[str, Any], run: str = "") -> Options:
    try:
        return plugin.Options.model_validate(dict(values))
    except ValidationError as e:
        problems = []
        for err in e.errors():
            option = ".".join(str(x) for x in err["loc"]) or "?"
            name = str(err["loc"][0]) if err["loc"] else None
            spec = plugin.option_specs.get(name) if name is not None else None
            given: Any = "?"
            if name is not None and name in values:
                given = values[name]
            elif spec is not None and spec.per_run:
                given = "<missing: a per-run value with no default, resolved per run>"
            elif (
                name in plugin.Options.model_fields
                and not (field := plugin.Options.model_fields[name]).is_required()
            ):
                given = f"<the plugin's default, {field.default!r}>"  # the declaration is wrong
            elif name is not None:
                given = "<missing>"
            problems.append(
                f"option {option!r} of plugin {plugin.name}{run}: {err['msg']} (got {given!r})"
            )
        raise InvalidOption("; ".join(problems)) from e
