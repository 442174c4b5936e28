"""Fuzzy loading, ``fuzzy_for=[...]``: strax's escape hatch for data made with another version
or other options of named plugins.

A request (``get_array(..., fuzzy_for=["PeakFinder"])``) or a context (``Context(...,
fuzzy_for=[...])``) names plugins, by class name or by a data type they provide. When the
exact lineage of a data type is not stored, the resolver asks ``Fuzzy.match`` for a complete
data set of it whose stored lineage differs from the requested one *only* in those plugins'
``version``, ``options`` and ``option_sources``, for the plugin itself or anywhere upstream;
every other part (the plugins, the data types, the other plugins' versions and options, the
dtype) must agree. Such a data set is loaded, loudly: the plan says ``load (FUZZY: ...
differs in PeakFinder.version '1' -> '2')`` and a ``FuzzyLoadWarning`` is emitted. Nothing
computed from fuzzy-loaded data is saved (the plan says so): it would be stored under a key
claiming a lineage its data does not have. A fuzzy-loaded data set is a load, and loads are
never saved, so it is never re-saved under the exact key either.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from strax_decl.lineage import diff
from strax_decl.request_args import did_you_mean

if TYPE_CHECKING:  # pragma: no cover - typing only
    from strax_decl.registry import Registry
    from strax_storage import DataSetInfo, Store

__all__ = ["FUZZY_KEYS", "Fuzzy", "FuzzyLoadWarning", "check_fuzzy_for", "fuzzy_differences"]

FUZZY_KEYS = ("version", "options", "option_sources")
"""The parts of a named plugin's lineage entry that may differ in a fuzzy match."""


class FuzzyLoadWarning(UserWarning):
    """Data was loaded whose lineage differs from the requested one (``fuzzy_for``)."""


def check_fuzzy_for(registry: Registry, names: object) -> tuple[str, ...]:
    """The plugin names ``names`` mean (plugin class names or data types they provide), sorted.

    KeyError, with ``did you mean ...?``, naming an unknown one; TypeError if ``names`` is not
    a list of strings.
    """
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list | tuple | set | frozenset):
        raise TypeError(f"fuzzy_for takes a list of plugin names or data types, got {names!r}")
    plugins: set[str] = set()
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"fuzzy_for: names are str, got {type(name).__name__} {name!r}")
        if name in registry.plugins:
            plugins.add(name)
        elif name in registry.providers:
            plugins.add(registry.providers[name].name)
        else:
            known = [*registry.plugins, *registry.providers]
            raise KeyError(
                f"fuzzy_for: {name!r} is neither a registered plugin nor a data type; "
                f"{did_you_mean(name, known)}plugins: {', '.join(sorted(registry.plugins))}"
            )
    return tuple(sorted(plugins))


def fuzzy_differences(
    stored: object, wanted: Mapping[str, Any], plugins: Collection[str]
) -> list[str] | None:
    """How ``stored`` differs from ``wanted`` if only in the ``FUZZY_KEYS`` of ``plugins``'
    entries (anywhere in the tree), e.g. ``["PeakFinder.version '1' -> '2'"]``; else None."""
    if not isinstance(stored, Mapping):
        return None
    if any(stored.get(k) != wanted.get(k) for k in ("output", "plugin")):
        return None
    fuzzy = wanted.get("plugin") in plugins
    found: list[str] = []
    for part in sorted(set(stored) | set(wanted)):
        if part == "inputs":
            continue
        if fuzzy and part in FUZZY_KEYS:
            lines = diff(stored.get(part), wanted.get(part), part)
            found += [f"{wanted['plugin']}.{line.replace(': ', ' ', 1)}" for line in lines]
        elif stored.get(part) != wanted.get(part):
            return None
    old, new = stored.get("inputs"), wanted.get("inputs")
    if not isinstance(old, Mapping) or not isinstance(new, Mapping) or set(old) != set(new):
        return None
    for name in sorted(new):
        below = fuzzy_differences(old[name], new[name], plugins)
        if below is None:
            return None
        found += below
    return list(dict.fromkeys(found))  # an upstream plugin reached by two paths: once


class Fuzzy:
    """One request's fuzzy matching: the plugins named, and what came from a fuzzy load."""

    def __init__(self, plugins: Iterable[str] = ()) -> None:
        self.plugins = frozenset(plugins)
        self.origin: dict[str, str] = {}
        """Data type -> the fuzzy-loaded data type it is (or is computed from)."""

    def __bool__(self) -> bool:
        return bool(self.plugins)

    def match(
        self,
        data_type: str,
        candidates: Sequence[tuple[Store, DataSetInfo]],
        wanted: Mapping[str, Any],
    ) -> tuple[tuple[Store, DataSetInfo], str, tuple[str, ...]] | None:
        """The newest complete candidate whose lineage differs from ``wanted`` only within
        the named plugins: ((store, info), the plan's reason, the differences); warns."""
        hits = []
        for store, info in candidates:
            meta = info.metadata if isinstance(info.metadata, dict) else {}
            found = fuzzy_differences(meta.get("lineage"), wanted, self.plugins)
            if info.complete and found:
                hits.append((info.created or "", store, info, found))
        if not hits:
            return None
        _, store, info, found = max(hits, key=lambda h: h[0])
        self.origin[data_type] = data_type
        reason = (
            f"FUZZY: stored in {store.url} with lineage hash {info.key.lineage_hash}, which "
            f"differs in {'; '.join(found)}"
        )
        warnings.warn(
            f"run {info.key.run_id!r}: loading {data_type!r} made with another lineage "
            f"(fuzzy_for={sorted(self.plugins)}): {reason[len('FUZZY: ') :]}; nothing "
            "computed from it is saved",
            FuzzyLoadWarning,
            stacklevel=4,
        )
        return (store, info), reason, tuple(found)

    def tainted(self, outputs: Iterable[str], inputs: Iterable[str]) -> str | None:
        """Why outputs computed from ``inputs`` must not be saved (None: they may be);
        records them as coming from the fuzzy load too."""
        origin = next((self.origin[i] for i in inputs if i in self.origin), None)
        if origin is None:
            return None
        for out in outputs:
            self.origin[out] = origin
        return f"computed from fuzzy-loaded {origin!r} (fuzzy_for): never saved"
