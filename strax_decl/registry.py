"""The plugin registry: who provides what, of which kind, and the checks made at registration.

Every mistake in how plugins fit together is reported here, when the context is built, with
the names of the plugins involved: an unknown input, two providers of one data type, a
dependency cycle, a provider whose output lacks fields a consumer declares, one option name
declared with different types (each plugin may have its own default), and one field coming
from two same-kind inputs with different dtypes. Output schemas resolved when the context is
built (``strax_decl.output_schemas``) are checked again once they are (``with_resolved``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from strax_decl.errors import StraxDeclError
from strax_decl.plugin import OptionSpec, OutputSpec, Plugin

__all__ = ["RegistrationError", "Registry"]


class RegistrationError(StraxDeclError, ValueError):
    """Plugins do not fit together; the message names the plugins involved."""


@dataclass(frozen=True)
class Registry:
    """An immutable, checked set of plugin classes."""

    plugins: dict[str, type[Plugin]]  # by plugin name
    providers: dict[str, type[Plugin]]  # by data type
    options: dict[str, OptionSpec]  # by option name (one spec; consistency checked)
    option_users: dict[str, tuple[str, ...]]  # option name -> plugin names
    #: Output specs whose schema was resolved when the context was built (option-dependent
    #: or derived from inputs), by data type; see ``strax_decl.output_schemas``.
    resolved: Mapping[str, OutputSpec] = dataclasses.field(default_factory=dict)

    @classmethod
    def build(cls, plugins: Iterable[type[Plugin]]) -> Registry:
        by_name: dict[str, type[Plugin]] = {}
        providers: dict[str, type[Plugin]] = {}
        for p in plugins:
            if not (isinstance(p, type) and issubclass(p, Plugin)) or p.__dict__.get(
                "abstract", False
            ):
                raise RegistrationError(f"{p!r} is not a concrete sd.Plugin subclass")
            if p.name in by_name and by_name[p.name] is not p:
                raise RegistrationError(
                    f"two different plugin classes are named {p.name} "
                    f"({by_name[p.name].__module__} and {p.__module__}); names must be unique"
                )
            by_name[p.name] = p
            for data_type in p.outputs:
                other = providers.get(data_type)
                if other is not None and other is not p:
                    raise RegistrationError(
                        f"data type {data_type!r} is provided by two plugins: {other.name} "
                        f"and {p.name}"
                    )
                providers[data_type] = p
        options, users = _check_options(by_name.values())
        registry = cls(by_name, providers, options, users)
        registry._check_inputs()
        registry._check_cycles()
        registry._check_kinds()
        return registry

    # ------------------------------------------------------------------ queries

    def provider(self, data_type: str) -> type[Plugin]:
        try:
            return self.providers[data_type]
        except KeyError:
            known = ", ".join(sorted(self.providers)) or "none"
            raise KeyError(
                f"unknown data type {data_type!r}; registered data types: {known}"
            ) from None

    def output_spec(self, data_type: str) -> OutputSpec:
        """The output's spec, with its schema as resolved for this configuration."""
        spec = self.resolved.get(data_type)
        return spec if spec is not None else self.provider(data_type).outputs[data_type]

    def outputs_of(self, plugin: type[Plugin]) -> dict[str, OutputSpec]:
        """``plugin.outputs`` with the schemas resolved for this configuration."""
        return {d: self.output_spec(d) for d in plugin.outputs}

    def schema_known(self, data_type: str) -> bool:
        """False for a schema resolved at context build that has not been resolved yet."""
        return data_type in self.resolved or not self.output_spec(data_type).resolved_at_build

    def with_resolved(self, resolved: Mapping[str, OutputSpec]) -> Registry:
        """This registry with resolved output schemas, checked again for every consumer."""
        registry = dataclasses.replace(self, resolved=dict(resolved))
        registry._check_inputs()
        registry._check_kinds()
        return registry

    def kind(self, data_type: str) -> str:
        return self.output_spec(data_type).kind

    def dtype(self, data_type: str) -> np.dtype:
        return self.output_spec(data_type).dtype

    def input_kinds(self, plugin: type[Plugin]) -> dict[str, str]:
        return {d: self.kind(d) for d in plugin.inputs}

    def dependencies(self, data_type: str) -> list[str]:
        """Data types the provider of ``data_type`` reads."""
        return list(self.provider(data_type).inputs)

    # ------------------------------------------------------------------ checks

    def _check_inputs(self) -> None:
        for p in self.plugins.values():
            for data_type, spec in p.inputs.items():
                provider = self.providers.get(data_type)
                if provider is None:
                    raise RegistrationError(
                        f"plugin {p.name} needs input {data_type!r}, which no registered "
                        f"plugin provides (registered: {', '.join(sorted(self.providers))})"
                    )
                required = spec.fields
                if required is None or not self.schema_known(data_type):
                    continue
                provided = self.dtype(data_type)
                for field in required.names or ():
                    have = provided.fields.get(field) if provided.fields else None
                    if have is None:
                        raise RegistrationError(
                            f"plugin {p.name} expects field {field!r} in input {data_type!r}, "
                            f"but its provider {provider.name} declares no such field"
                        )
                    if have[0] != required.fields[field][0]:  # type: ignore[index]
                        raise RegistrationError(
                            f"plugin {p.name} expects field {field!r} of input {data_type!r} "
                            f"as {required.fields[field][0]}, but its provider "  # type: ignore[index]
                            f"{provider.name} declares {have[0]}"
                        )

    def _check_cycles(self) -> None:
        state: dict[str, int] = {}  # 1 visiting, 2 done

        def visit(p: type[Plugin], path: list[str]) -> None:
            if state.get(p.name) == 2:
                return
            if state.get(p.name) == 1:
                cycle = [*path[path.index(p.name) :], p.name]
                raise RegistrationError(f"dependency cycle: {' -> '.join(cycle)}")
            state[p.name] = 1
            for data_type in p.inputs:
                visit(self.providers[data_type], [*path, p.name])
            state[p.name] = 2

        for p in self.plugins.values():
            visit(p, [])

    def _check_kinds(self) -> None:
        """Same-kind inputs may share fields (they are merged row by row, the later input's
        values winning; time fields must agree row by row), but not with different dtypes."""
        for p in self.plugins.values():
            seen: dict[tuple[str, str], tuple[str, np.dtype]] = {}
            for data_type in p.inputs:
                if not self.schema_known(data_type):
                    continue
                kind = self.kind(data_type)
                dtype = self.dtype(data_type)
                for field in dtype.names or ():
                    sub = dtype[field]
                    other = seen.get((kind, field))
                    if other is not None and other[1] != sub:
                        raise RegistrationError(
                            f"plugin {p.name}: field {field!r} is {other[1]} in {other[0]!r} "
                            f"({self.providers[other[0]].name}) but {sub} in {data_type!r} "
                            f"({self.providers[data_type].name}); both are of kind {kind!r} "
                            "and are merged row by row, so a shared field needs one dtype "
                            "(change one, or rename it)"
                        )
                    seen[(kind, field)] = (data_type, sub)


def _check_options(
    plugins: Iterable[type[Plugin]],
) -> tuple[dict[str, OptionSpec], dict[str, tuple[str, ...]]]:
    options: dict[str, OptionSpec] = {}
    users: dict[str, list[str]] = {}
    for p in plugins:
        for name, spec in p.option_specs.items():
            first = options.get(name)
            if first is None:
                options[name] = spec
            else:
                if first.annotation != spec.annotation:
                    raise RegistrationError(
                        f"option {name!r} is declared by plugins {first.plugin} and {p.name} "
                        f"with different types ({first.type_name} vs {spec.type_name})"
                    )
                if first.per_run != spec.per_run:
                    raise RegistrationError(
                        f"option {name!r} is declared per_run by one of plugins {first.plugin} "
                        f"and {p.name} but not by the other"
                    )
                # different defaults are fine: each plugin has its own (a child plugin's
                # variant of its parent's option); config values apply to every plugin
                # taking the option unless scoped ("Plugin.option")
            users.setdefault(name, []).append(p.name)
    return options, {k: tuple(v) for k, v in users.items()}
