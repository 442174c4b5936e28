"""Lineage: the identity of a data type's contents, and its hash (the only place computing it).

A lineage is a nested dict::

    {"output": "peaks", "plugin": "PeakFinder", "version": "0.1.0",
     "options": {"gap": 300}, "inputs": {"records": {...lineage of records...}}}

It is serialised as canonical JSON (sorted keys, no whitespace, ASCII), hashed with sha256
and shortened to base32, so it is stable across processes, platforms and ``PYTHONHASHSEED``.
Option values enter *after* pydantic validation, so ``1`` and ``1.0`` for a float option give
one hash, and sets are sorted so their iteration order cannot leak into the hash.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    from strax_decl.plugin import Options
    from strax_decl.registry import Registry

__all__ = [
    "HASH_LENGTH",
    "Lineages",
    "canonical",
    "canonical_json",
    "diff",
    "lineage_hash",
    "make_lineage",
]

HASH_LENGTH = 16  # base32 characters: 80 bits, plenty against accidental collisions


def canonical(value: Any) -> Any:
    """Turn a validated option value into plain, order-independent JSON data."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, enum.Enum):
        return canonical(value.value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        if not math.isfinite(f):
            raise ValueError(f"option value {value!r} is not finite and cannot enter a lineage")
        return f
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        items = [canonical(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, list | tuple | np.ndarray):
        return [canonical(v) for v in value]
    if hasattr(value, "model_dump"):
        return canonical(value.model_dump(mode="python"))
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(
        f"option value {value!r} of type {type(value).__name__} cannot enter a lineage; "
        "use JSON-like values (numbers, strings, lists, dicts, sets)"
    )


def canonical_json(lineage: Mapping[str, Any]) -> str:
    return json.dumps(canonical(lineage), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def lineage_hash(lineage: Mapping[str, Any]) -> str:
    """Short, lower-case base32 sha256 of the canonical JSON of ``lineage``."""
    digest = hashlib.sha256(canonical_json(lineage).encode("ascii")).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:HASH_LENGTH]


def make_lineage(
    output: str,
    plugin: str,
    version: str,
    options: Mapping[str, Any],
    inputs: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The lineage dict of one output of one plugin, given its inputs' lineages."""
    return {
        "output": output,
        "plugin": plugin,
        "version": version,
        "options": canonical(dict(options)),
        "inputs": {name: dict(inputs[name]) for name in sorted(inputs)},
    }


def diff(old: Any, new: Any, path: str = "") -> list[str]:
    """Human-readable differences between two lineages, e.g. ``peaks.options.gap: 300 -> 200``."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else str(key)
            if key not in old:
                out.append(f"{sub}: added")
            elif key not in new:
                out.append(f"{sub}: removed")
            else:
                out.extend(diff(old[key], new[key], sub))
        return out
    if old != new:
        return [f"{path}: {old!r} -> {new!r}"]
    return []


class Lineages:
    """Lineage dict and hash per data type for one validated configuration (memoised)."""

    def __init__(self, registry: Registry, options: Mapping[str, Options]) -> None:
        self.registry = registry
        self.options = options
        self._lineage: dict[str, dict[str, Any]] = {}
        self._hash: dict[str, str] = {}

    def lineage(self, data_type: str) -> dict[str, Any]:
        if data_type not in self._lineage:
            plugin = self.registry.provider(data_type)
            opts = self.options[plugin.name]
            tracked = {
                name: getattr(opts, name)
                for name, spec in plugin.option_specs.items()
                if spec.track
            }
            inputs = {d: self.lineage(d) for d in plugin.inputs}
            self._lineage[data_type] = make_lineage(
                data_type, plugin.name, plugin.version, tracked, inputs
            )
        return self._lineage[data_type]

    def hash(self, data_type: str) -> str:
        if data_type not in self._hash:
            self._hash[data_type] = lineage_hash(self.lineage(data_type))
        return self._hash[data_type]
