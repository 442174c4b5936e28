"""Output schemas resolved when the context is built: from options, or derived from inputs.

A plugin declares most output schemas in its ``Outputs`` class. Two kinds are known only
once the configuration and the providers are:

- ``sd.output(fields_from="<input>")``: every field of that input's schema (as its provider,
  resolved first, declares it), then the fields of the annotated schema;
- ``Plugin.output_schemas(cls, options[, inputs])``: any schema computed from the plugin's
  validated options (a channel count, a waveform length) and its inputs' schemas
  (``inputs["peaks"].derive(fields=[...], add=...)``).

:func:`resolve_output_schemas` resolves them in dependency order (a derived schema of a
derived schema follows both), checks each against the output's declared base, and returns
the registry with the resolved specs, in which every consumer is checked again
(``Registry.with_resolved``). Every error names the plugin and the output or field. A
resolved output's dtype enters its lineage (``strax_decl.lineage``), so a change upstream
or of an option changes the data's identity.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

from strax_decl.plugin import Options, OutputSpec, Plugin
from strax_decl.registry import RegistrationError, Registry
from strax_decl.schema import Schema, SchemaError

__all__ = ["resolve_output_schemas"]


def resolve_output_schemas(registry: Registry, options: Mapping[str, Options]) -> Registry:
    """``registry`` with every build-time output schema resolved for ``options`` (validated
    options per plugin name), checked for every consumer; the same registry if none."""
    if not any(s.resolved_at_build for p in registry.plugins.values() for s in p.outputs.values()):
        return registry
    resolved: dict[str, OutputSpec] = {}

    def schema_of(data_type: str) -> type[Schema]:
        spec = resolved.get(data_type)
        return (spec or registry.output_spec(data_type)).schema

    for plugin in _dependency_order(registry):
        specs = plugin.outputs
        if not any(s.resolved_at_build for s in specs.values()):
            continue
        inputs = {d: schema_of(d) for d in plugin.inputs}
        from_hook = {}
        if plugin.has_schema_hook():
            from_hook = _call_hook(plugin, options[plugin.name], inputs)
        for name, spec in specs.items():
            schema = from_hook.get(name)
            if schema is None and spec.fields_from is not None:
                schema = _fields_from(plugin, spec, inputs[spec.fields_from])
            if schema is None:
                if spec.schema is Schema or "abstract" in spec.schema.__dict__:
                    raise RegistrationError(
                        f"plugin {plugin.name}: output_schemas() gave no schema for output "
                        f"{name!r}, whose declared schema {spec.schema.__name__} is abstract"
                    )
                continue
            _check_base(plugin, spec, schema)
            resolved[name] = dataclasses.replace(spec, schema=schema)
    return registry.with_resolved(resolved)


def _dependency_order(registry: Registry) -> list[type[Plugin]]:
    order: list[type[Plugin]] = []
    done: set[str] = set()

    def visit(p: type[Plugin]) -> None:  # the registry has checked there is no cycle
        if p.name in done:
            return
        done.add(p.name)
        for data_type in p.inputs:
            visit(registry.provider(data_type))
        order.append(p)

    for p in registry.plugins.values():
        visit(p)
    return order


def _call_hook(
    plugin: type[Plugin], options: Options, inputs: dict[str, type[Schema]]
) -> dict[str, type[Schema]]:
    hook = plugin.output_schemas
    takes_inputs = len(inspect.signature(hook).parameters) >= 2
    try:
        got: Any = hook(options, inputs) if takes_inputs else hook(options)  # type: ignore[call-arg]
    except Exception as e:
        raise RegistrationError(
            f"plugin {plugin.name}: output_schemas() failed: {type(e).__name__}: {e}"
        ) from e
    if isinstance(got, type) and issubclass(got, Schema):
        if len(plugin.outputs) != 1:
            raise RegistrationError(
                f"plugin {plugin.name}: output_schemas() returned one schema, but the plugin "
                f"has outputs {sorted(plugin.outputs)}: return {{output: schema}}"
            )
        got = {next(iter(plugin.outputs)): got}
    if not isinstance(got, Mapping):
        raise RegistrationError(
            f"plugin {plugin.name}: output_schemas() must return {{output: sd.Schema "
            f"subclass}} (or one schema for a single output), got {got!r:.200}"
        )
    unknown = sorted(set(got) - set(plugin.outputs))
    if unknown:
        raise RegistrationError(
            f"plugin {plugin.name}: output_schemas() returned schemas for {unknown}, which are "
            f"not outputs (outputs: {sorted(plugin.outputs)})"
        )
    for name, schema in got.items():
        if not (isinstance(schema, type) and issubclass(schema, Schema)) or schema is Schema:
            raise RegistrationError(
                f"plugin {plugin.name}: output_schemas() gave {schema!r:.200} for output "
                f"{name!r}; expected a sd.Schema subclass"
            )
        if schema.__dict__.get("abstract", False):
            raise RegistrationError(
                f"plugin {plugin.name}: output_schemas() gave abstract schema "
                f"{schema.__name__} for output {name!r}"
            )
    return dict(got)


def _fields_from(plugin: type[Plugin], spec: OutputSpec, source: type[Schema]) -> type[Schema]:
    add = None if spec.schema is Schema else spec.schema
    try:
        return source.derive(f"{plugin.name}_{spec.name}", add=add)
    except SchemaError as e:
        raise RegistrationError(
            f"plugin {plugin.name}: output {spec.name!r} takes its fields from input "
            f"{spec.fields_from!r}: {e}"
        ) from None


def _check_base(plugin: type[Plugin], spec: OutputSpec, schema: type[Schema]) -> None:
    """The resolved schema holds every field of the declared one, with the same dtype."""
    base = spec.schema
    if base is Schema:
        return
    got = schema.dtype
    for field in base.dtype.names or ():
        if field not in (got.names or ()):
            raise RegistrationError(
                f"plugin {plugin.name}: the schema resolved for output {spec.name!r} "
                f"({schema.__name__}) lacks field {field!r} of its declared schema "
                f"{base.__name__}"
            )
        if got[field] != base.dtype[field]:
            raise RegistrationError(
                f"plugin {plugin.name}: the schema resolved for output {spec.name!r} "
                f"({schema.__name__}) has field {field!r} as {got[field]}, but its declared "
                f"schema {base.__name__} as {base.dtype[field]}"
            )
