"""Lineage: the identity of a data type's contents, and its hash (the only place computing it).

A lineage is a nested dict::

    {"output": "peaks", "plugin": "PeakFinder", "version": "0.1.0",
     "options": {"gap": 300}, "inputs": {"records": {...lineage of records...}}}

It is serialised as canonical JSON (sorted keys, no whitespace, ASCII), hashed with sha256
and shortened to base32, so it is stable across processes, platforms and ``PYTHONHASHSEED``.
Option values enter *after* pydantic validation, so ``1`` and ``1.0`` for a float option give
one hash, and sets are sorted so their iteration order cannot leak into the hash. Values whose
type changes their meaning (tuples, sets, bytes, arrays, dicts with non-string keys) enter in a
tagged form (see :func:`canonical`), so they never share a hash with the list, string or
str-keyed dict that JSON would turn them into; plain JSON values keep the form they always had.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import math
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from strax_decl.errors import StraxDeclError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from strax_decl.plugin import Options
    from strax_decl.registry import Registry

__all__ = [
    "HASH_LENGTH",
    "TYPE_TAG",
    "Lineages",
    "OptionNotHashable",
    "PerRunLineage",
    "canonical",
    "canonical_json",
    "diff",
    "lineage_hash",
    "make_lineage",
]

HASH_LENGTH = 16  # base32 characters: 80 bits, plenty against accidental collisions


class OptionNotHashable(StraxDeclError, TypeError, ValueError):
    """An option value that the lineage cannot represent faithfully (names the option)."""


class PerRunLineage(StraxDeclError, LookupError):
    """A lineage asked for without a run, of a data type whose options vary by run."""


TYPE_TAG = "__sd_type__"
"""Key of the tagged form of values JSON cannot tell apart from another type (tuples, sets,
bytes, arrays, dicts with keys other than strings). Plain JSON values (str, int, float,
bool, None, lists, dicts with str keys) keep their form, so their hashes never changed; a
user dict may therefore not use this key itself."""


def _tagged(kind: str, **fields: Any) -> dict[str, Any]:
    return {TYPE_TAG: kind, **fields}


def _sort_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def canonical(value: Any, where: str = "option value") -> Any:
    """Turn a validated option value into plain, order-independent JSON data.

    Values whose type changes their meaning keep it: ``(1, 2)``, ``[1, 2]`` and ``{1, 2}``,
    ``b"ab"`` and ``"6162"``, ``{0: x}`` and ``{"0": x}`` all differ. Types it cannot represent
    faithfully raise :class:`OptionNotHashable` naming ``where``.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, enum.Enum):
        return canonical(value.value, where)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        if not math.isfinite(f):
            raise OptionNotHashable(f"{where}: {value!r} is not finite and cannot enter a lineage")
        return f
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            if TYPE_TAG in value:
                raise OptionNotHashable(
                    f"{where}: the dict key {TYPE_TAG!r} is reserved for the lineage's own "
                    "tagged values; rename it"
                )
            return {str(k): canonical(v, f"{where}[{k!r}]") for k, v in value.items()}
        items = [
            [canonical(k, f"{where} (a key)"), canonical(v, f"{where}[{k!r}]")]
            for k, v in value.items()
        ]
        return _tagged("dict", items=sorted(items, key=lambda kv: _sort_key(kv[0])))
    if isinstance(value, set | frozenset):
        members = [canonical(v, f"{where} (a member)") for v in value]
        return _tagged("set", items=sorted(members, key=_sort_key))
    if isinstance(value, list):
        return [canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return _tagged("tuple", items=[canonical(v, f"{where}[{i}]") for i, v in enumerate(value)])
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise OptionNotHashable(
                f"{where}: a numpy array of dtype {value.dtype} cannot enter a lineage "
                "faithfully; use an array of numbers, or a list"
            )
        return _tagged(
            "ndarray",
            dtype=value.dtype.str,
            shape=list(value.shape),
            items=[canonical(v, where) for v in value.ravel().tolist()],
        )
    if hasattr(value, "model_dump"):
        return canonical(value.model_dump(mode="python"), where)
    if isinstance(value, bytes | bytearray):
        return _tagged("bytes", hex=bytes(value).hex())
    raise OptionNotHashable(
        f"{where}: {value!r:.200} of type {type(value).__name__} cannot enter a lineage; "
        "use JSON-like values (numbers, strings, lists, tuples, dicts, sets, bytes)"
    )


def _plain(value: Any, path: str = "lineage") -> Any:
    """``value`` if it is already plain JSON data (a lineage is built from canonical parts)."""
    if value is None or isinstance(value, str | int):  # bool is an int
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise OptionNotHashable(f"{path}: {value!r} is not finite")
        return value
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise OptionNotHashable(
        f"{path}: {value!r:.200} ({type(value).__name__}) is not canonical JSON data; build "
        "lineages with make_lineage"
    )


def canonical_json(lineage: Mapping[str, Any]) -> str:
    """The canonical JSON text of a lineage made by :func:`make_lineage` (no re-encoding:
    its option values are canonical already, so a tagged value is not mistaken for a user
    dict)."""
    return json.dumps(
        _plain(dict(lineage)), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )


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
    sources: Mapping[str, Mapping[str, str]] | None = None,
    dtype: np.dtype | None = None,
) -> dict[str, Any]:
    """The lineage dict of one output of one plugin, given its inputs' lineages.

    ``sources``: for options resolved per run from a correction, ``{option: {"correction":
    name, "version": version, ...}}``: the correction's name enters as ``option_sources`` (only
    when there are any, so lineages without per-run options keep their hashes); the version
    does not: the resolved value is in ``options``, so a new version that leaves a run's value
    alone leaves that run's data valid (the version is provenance: in the data set's metadata
    and the plan). ``dtype``: the row dtype of
    an output whose schema is resolved when the context is built (from options or inputs),
    as ``[[field, type, shape], ...]``; declared schemas are fixed by the plugin's version and
    stay out, so their hashes do not change."""
    lineage = {
        "output": output,
        "plugin": plugin,
        "version": version,
        "options": {
            str(name): canonical(value, f"plugin {plugin}, option {name!r}")
            for name, value in options.items()
        },
        "inputs": {name: dict(inputs[name]) for name in sorted(inputs)},
    }
    named = {k: dict(v) for k, v in (sources or {}).items() if "correction" in v}
    if named:
        lineage["option_sources"] = {
            k: {"correction": str(v["correction"])} for k, v in sorted(named.items())
        }
    if dtype is not None:
        fields: Any = [[n, dtype[n].base.str, list(dtype[n].shape)] for n in dtype.names or ()]
        lineage["dtype"] = fields
    return lineage


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
    if _sort_key(old) != _sort_key(new):  # as the hash encodes them: 2 and 2.0 differ
        return [f"{path}: {old!r} -> {new!r}"]
    return []


def _resolved_dtype(registry: Registry, data_type: str) -> np.dtype | None:
    spec = registry.output_spec(data_type)
    return spec.dtype if spec.resolved_at_build else None


class Lineages:
    """Lineage dict and hash per data type for one validated configuration (memoised)."""

    def __init__(
        self,
        registry: Registry,
        options: Mapping[str, Options],
        sources: Mapping[str, Mapping[str, Mapping[str, str]]] | None = None,
        unresolved: Mapping[str, Collection[str]] | None = None,
    ) -> None:
        """``sources``: per plugin, where its per-run option values came from (see
        ``config.RunOptions``). ``unresolved``: plugins whose per-run options these
        lineages do not know (a context's run-independent view): asking for a lineage that
        depends on them raises PerRunLineage instead of hashing a default."""
        self.registry = registry
        self.options = options
        self.sources = sources or {}
        self.unresolved = unresolved or {}
        self._lineage: dict[str, dict[str, Any]] = {}
        self._hash: dict[str, str] = {}

    def lineage(self, data_type: str) -> dict[str, Any]:
        if data_type not in self._lineage:
            plugin = self.registry.provider(data_type)
            if self.unresolved:
                self._refuse_per_run(data_type)
            opts = self.options[plugin.name]
            tracked = {
                name: getattr(opts, name)
                for name, spec in plugin.option_specs.items()
                if spec.track
            }
            inputs = {d: self.lineage(d) for d in plugin.inputs}
            self._lineage[data_type] = make_lineage(
                data_type,
                plugin.name,
                plugin.version,
                tracked,
                inputs,
                self.sources.get(plugin.name),
                _resolved_dtype(self.registry, data_type),
            )
        return self._lineage[data_type]

    def _refuse_per_run(self, data_type: str) -> None:
        """PerRunLineage if ``data_type`` or anything it is computed from takes per-run
        options these lineages do not know."""
        todo, seen = [data_type], set()
        while todo:
            d = todo.pop()
            plugin = self.registry.provider(d)
            if plugin.name in self.unresolved:
                options = ", ".join(map(repr, sorted(self.unresolved[plugin.name])))
                via = "" if d == data_type else f" (through {d!r})"
                raise PerRunLineage(
                    f"the lineage of {data_type!r} depends on the run{via}: plugin "
                    f"{plugin.name} takes per-run option(s) {options}; ask for one run's "
                    f"(e.g. ctx.lineage({data_type!r}, run_id=...), ctx.key_for(run_id, ...))"
                )
            seen.add(d)
            todo.extend(i for i in plugin.inputs if i not in seen)

    def hash(self, data_type: str) -> str:
        if data_type not in self._hash:
            self._hash[data_type] = lineage_hash(self.lineage(data_type))
        return self._hash[data_type]
