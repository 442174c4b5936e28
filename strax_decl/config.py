"""Validating the user's configuration against every plugin's Options model.

The context holds one flat ``{option name: value}`` dict (as strax does); each plugin takes
the options it declares. Validation happens when the context is configured, before any data
is touched, and errors name the option and the plugin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from strax_decl.errors import StraxDeclError
from strax_decl.plugin import Options, Plugin
from strax_decl.registry import Registry

__all__ = ["InvalidOption", "validate_config"]


class InvalidOption(StraxDeclError, ValueError):
    """An option value is unknown, of the wrong type or out of bounds (pydantic-backed)."""


def validate_config(registry: Registry, config: Mapping[str, Any]) -> dict[str, Options]:
    """Validated Options instance per plugin name; raises InvalidOption on the first problem."""
    unknown = sorted(set(config) - set(registry.options))
    if unknown:
        known = ", ".join(sorted(registry.options)) or "none"
        raise InvalidOption(
            f"unknown option(s) {', '.join(map(repr, unknown))}: no registered plugin takes "
            f"them (known options: {known})"
        )
    validated: dict[str, Options] = {}
    for name, plugin in registry.plugins.items():
        validated[name] = _validate_plugin(plugin, config)
    return validated


def _validate_plugin(plugin: type[Plugin], config: Mapping[str, Any]) -> Options:
    values = {k: config[k] for k in plugin.option_specs if k in config}
    try:
        return plugin.Options.model_validate(values)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            option = ".".join(str(x) for x in err["loc"]) or "?"
            given = values.get(str(err["loc"][0]), "<missing>") if err["loc"] else "?"
            problems.append(
                f"option {option!r} of plugin {plugin.name}: {err['msg']} (got {given!r})"
            )
        raise InvalidOption("; ".join(problems)) from e
