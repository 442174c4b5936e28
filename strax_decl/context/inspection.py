"""Looking things up: the part of ``Context`` that describes data types and stored data.

A mixin of :class:`~strax_decl.context.Context` (kept apart so each module has one job)::

    ctx.data_info("peaks")                  # DataFrame: field, dtype, unit, description
    ctx.search_field("area*")               # which data types (and plugins) have such fields
    ctx.compare_lineage(other_ctx, "peaks") # option, version and input differences
    ctx.get_source("run_1", "events")       # the stored data a request would start from
    ctx.accumulate("run_1", "peaks", ["area"], function=None)  # streaming sums
    ctx.to_xarray("run_1", "peaks")         # a lazy xarray.Dataset over the stored data
    ctx.copy("run_1", "peaks", to="/shared/strax_data")        # keeps lineage and checks

Nothing here computes anything except ``accumulate`` (which gets its data like
``iter_chunks``, so it may compute what is not stored). pandas (``strax-decl[pandas]``) and
xarray (``strax-decl[xarray]``) are imported only by the methods that return them.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from strax_decl.context.getters import Targets
from strax_decl.copying import copy_data_set, find_stored
from strax_decl.lineage import diff
from strax_decl.registry import Registry
from strax_decl.request_args import check_targets
from strax_storage import DataKey, DataNotFound, DataSetInfo, Store, open_store
from strax_storage.codec_choice import CodecChoice

if TYPE_CHECKING:  # pragma: no cover - typing only; pandas and xarray are optional extras
    import pandas as pd
    import xarray as xr

    from strax_decl.context.context import Context

__all__ = ["Inspection", "LineageComparison"]


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError as e:  # pragma: no cover - pandas is an optional extra
        raise ImportError("this needs pandas: pip install 'strax-decl[pandas]'") from e
    return pd


@dataclass(frozen=True)
class LineageComparison:
    """The differences between two lineages of one data type (``ctx.compare_lineage``).

    ``differences``: every difference as ``path: old -> new`` (``path`` through the inputs,
    e.g. ``inputs.records.options.seed: 0 -> 1``); grouped into ``options``, ``versions``
    and ``inputs`` (an input added or removed, or another plugin) for reading. Prints as a
    list, or ``same lineage``. Falsy when the lineages are the same.
    """

    data_type: str
    left: str
    right: str
    left_hash: str
    right_hash: str
    differences: list[str] = field(default_factory=list)
    owners: dict[str, str] = field(default_factory=dict)  # difference -> plugin it is of

    def _grouped(self, word: str) -> list[str]:
        return [d for d in self.differences if _kind(d) == word]

    @property
    def options(self) -> list[str]:
        return self._grouped("options")

    @property
    def versions(self) -> list[str]:
        return self._grouped("versions")

    @property
    def inputs(self) -> list[str]:
        return self._grouped("inputs")

    @property
    def same(self) -> bool:
        return not self.differences

    def __bool__(self) -> bool:
        return not self.same

    def __str__(self) -> str:
        head = (
            f"{self.data_type}: {self.left} ({self.left_hash}) vs {self.right} ({self.right_hash})"
        )
        if self.same:
            return f"{head}: same lineage"
        lines = [head]
        for word in ("versions", "options", "inputs", "other"):
            group = [d for d in self.differences if _kind(d) == word]
            if group:
                lines.append(f"  {word}:")
                lines += [f"    {d}{_of(self.owners.get(d))}" for d in group]
        return "\n".join(lines)


def _of(plugin: str | None) -> str:
    return f"  [plugin {plugin}]" if plugin else ""


def _owner(lineages: tuple[dict[str, Any], ...], difference: str) -> str | None:
    """The plugin whose lineage level holds ``difference`` (``inputs.peaks.version``: the
    plugin of ``peaks``; ``inputs.records: removed``: the plugin that no longer reads it)."""
    parts = difference.split(":", 1)[0].split(".")
    if parts[-1] == "plugin":  # names both plugins already
        return None
    for node in lineages:
        owner = node.get("plugin")
        i = 0
        while i + 2 < len(parts) and parts[i] == "inputs":
            below = node.get("inputs", {}).get(parts[i + 1])
            if not isinstance(below, dict):
                break
            node, owner, i = below, below.get("plugin", owner), i + 2
        else:
            if isinstance(owner, str):
                return owner
    return None


def _kind(difference: str) -> str:
    path = difference.split(":", 1)[0].split(".")
    if "options" in path:
        return "options"
    if path[-1] in ("version", "code_hash"):
        return "versions"
    if path[-1] == "plugin" or ("inputs" in path and difference.endswith((": added", ": removed"))):
        return "inputs"
    return "other"


class Inspection:
    """``data_info``, ``search_field``, ``compare_lineage``, ``get_source``, ``accumulate``,
    ``to_xarray`` and ``copy``."""

    registry: Registry
    stores: list[Store]

    def _me(self) -> Context:
        return cast("Context", self)  # an Inspection is always a Context (its only user)

    # ------------------------------------------------------------------ data types

    def data_info(self, data_type: str) -> pd.DataFrame:
        """The fields of ``data_type`` (registered; stored or not) as a pandas DataFrame:
        ``field``, ``dtype`` (with a sub-array's shape), ``unit``, ``description``."""
        check_targets(self.registry.providers, [data_type])
        spec = self.registry.output_spec(data_type)
        docs = spec.schema.field_docs()
        dtype = spec.dtype
        rows = []
        for name in dtype.names or ():
            sub = dtype[name]
            doc = docs.get(name, {})
            rows.append(
                {
                    "field": name,
                    "dtype": str(sub.base) + (str(list(sub.shape)) if sub.shape else ""),
                    "unit": doc.get("unit") or "",
                    "description": doc.get("description") or "",
                }
            )
        return _pandas().DataFrame(rows, columns=["field", "dtype", "unit", "description"])

    def search_field(self, pattern: str, *, case_sensitive: bool = False) -> pd.DataFrame:
        """Which data types have fields matching ``pattern`` (fnmatch: ``area*``,
        ``*time``, ``peak_?``), and which plugins declare them: a DataFrame with columns
        ``field``, ``data_type``, ``plugin``, ``dtype``, ``unit``, ``description``, sorted by
        field then data type (empty if nothing matches)."""
        if not isinstance(pattern, str) or not pattern:
            raise TypeError(f"search_field takes a pattern string, got {pattern!r}")
        match = fnmatch.fnmatchcase if case_sensitive else _match_nocase
        rows = []
        for data_type in sorted(self.registry.providers):
            info = self.data_info(data_type)
            plugin = self.registry.provider(data_type).name
            for row in info.to_dict("records"):
                if match(row["field"], pattern):
                    rows.append(
                        {"field": row["field"], "data_type": data_type, "plugin": plugin}
                        | {k: row[k] for k in ("dtype", "unit", "description")}
                    )
        columns = ["field", "data_type", "plugin", "dtype", "unit", "description"]
        frame = _pandas().DataFrame(rows, columns=columns)
        return frame.sort_values(["field", "data_type"], ignore_index=True)

    # ------------------------------------------------------------------ lineages

    def compare_lineage(
        self, other: Context | DataKey | str, data_type: str, run_id: str | None = None
    ) -> LineageComparison:
        """How ``data_type``'s lineage in this context differs from ``other``'s.

        ``other``: another Context; a ``DataKey`` of a stored data set; or a lineage hash
        (or a unique prefix) of a data set of ``data_type`` stored in this context's stores
        (of ``run_id`` if given). ``run_id``: for per-run options, the run whose lineage is
        meant. Returns a :class:`LineageComparison` (differences in versions, options and
        inputs, recursively through the inputs).
        """
        check_targets(self.registry.providers, [data_type])
        mine = self._me().lineage(data_type, run_id)
        here = self._me().key_for(run_id or "x", data_type).lineage_hash
        if isinstance(other, Inspection):
            theirs = other._me().lineage(data_type, run_id)
            there = other._me().key_for(run_id or "x", data_type).lineage_hash
            what = "the other context"
        else:
            info = self._stored_info(other, data_type, run_id)
            theirs = info.metadata.get("lineage") or {}
            there = info.key.lineage_hash
            what = f"stored {info.key}"
        differences = diff(mine, theirs)
        owners = {d: o for d in differences if (o := _owner((mine, theirs), d)) is not None}
        return LineageComparison(data_type, "this context", what, here, there, differences, owners)

    def _stored_info(self, which: DataKey | str, data_type: str, run_id: str | None) -> DataSetInfo:
        """The stored data set ``which`` names (a key, or a lineage hash prefix)."""
        if isinstance(which, DataKey):
            for store in self.stores:
                try:
                    return store.info(which)
                except DataNotFound:
                    continue
            raise DataNotFound(f"no data set {which} in {_where(self.stores)}")
        if not isinstance(which, str):
            raise TypeError(f"compare with a Context, DataKey or lineage hash, not {which!r}")
        found = {
            (i.key.run_id, i.key.lineage_hash): i
            for s in self.stores
            for i in s.list(run_id, data_type)
            if i.key.lineage_hash.startswith(which)
        }
        hashes = sorted({h for _, h in found})
        if not hashes:
            raise DataNotFound(
                f"no stored {data_type} with lineage hash {which}* in {_where(self.stores)}"
            )
        if len(hashes) > 1:
            raise ValueError(f"lineage hash prefix {which!r} of {data_type} is ambiguous: {hashes}")
        return next(iter(found.values()))

    def get_source(self, run_id: str, targets: Targets) -> dict[str, DataSetInfo]:
        """The stored data a request of ``targets`` would start from: for each data type it
        would load, the stored data set's info (``.key``, ``.location``, rows, time span).
        Empty if everything would be computed from scratch; reads only (``plan``)."""
        plan = self._me().plan(run_id, targets)
        return {d: s.info for d, s in plan.steps.items() if s.action == "load" and s.info}

    # ------------------------------------------------------------------ stored data

    def accumulate(
        self,
        run_id: str,
        data_type: Targets,
        fields: Sequence[str] | str | None = None,
        function: Callable[[np.ndarray], Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Sums over the rows of ``data_type``, one chunk at a time (the whole data type is
        never in memory): ``{field: sum, ..., "n_rows", "n_chunks", "start", "end"}``.

        ``fields``: which fields to sum (default every numeric field; sub-array fields sum
        to an array of their shape). ``function(rows) -> array or dict``: applied to each
        chunk's rows first (after ``selection``), its fields or keys summed instead (strax's
        ``accumulate``). Other keywords as ``iter_chunks`` (``selection``, ``time_range``,
        ``seconds_range``, ``forbid_creation_of``, ...). ``start``/``end``: the span of the
        chunks read (None without chunks).
        """
        wanted = [fields] if isinstance(fields, str) else None if fields is None else list(fields)
        totals: dict[str, Any] = {}
        n_rows = n_chunks = 0
        start: int | None = None
        end: int | None = None
        chunks = self._me().iter_chunks(run_id, data_type, **kwargs)
        try:
            for chunk in chunks:
                rows = chunk.data
                n_rows += len(rows)
                n_chunks += 1
                start = chunk.start if start is None else start
                end = chunk.end
                result = rows if function is None else function(rows)
                for name, values in _columns(result, wanted).items():
                    part = np.sum(values, axis=0)
                    totals[name] = part if name not in totals else totals[name] + part
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if wanted is not None:
            for name in wanted:
                totals.setdefault(name, 0)
        return {**totals, "n_rows": n_rows, "n_chunks": n_chunks, "start": start, "end": end}

    def to_xarray(
        self,
        run_id: str,
        data_type: str,
        *,
        fields: Sequence[str] | None = None,
        chunks: Any = None,
    ) -> xr.Dataset:
        """The stored ``data_type`` of ``run_id`` as an ``xarray.Dataset``, opened lazily.

        One variable per field along the dimension ``row`` (a sub-array field has its own
        named extra dimensions, e.g. ``data_sample``), ``time`` (and ``endtime``) as
        coordinates, each field's ``unit`` (also as CF's ``units``) and ``description`` as
        attributes, and the data set's run, data type, lineage hash, plugin, version and
        lineage (JSON) as the Dataset's attributes. Nothing is read until values are used;
        ``chunks``: as ``xarray.open_zarr`` (None: lazy numpy, no Dask; ``{}``: Dask arrays
        per stored chunk). Works for local, in-memory and fsspec stores. DataNotFound if it
        is not stored under this context's lineage (``make`` it first). Needs
        ``strax-decl[xarray]``.
        """
        try:
            import xarray as xr
        except ImportError as e:  # pragma: no cover - xarray is an optional extra
            raise ImportError("to_xarray needs xarray: pip install 'strax-decl[xarray]'") from e
        check_targets(self.registry.providers, [data_type])
        key = self._me().key_for(run_id, data_type)
        store = self._stored_in(key)
        info = store.find(key)
        assert info is not None
        store.zarr_group(key)  # refuses symbolic links and damaged metadata, naming them
        ds = xr.open_zarr(
            store.zarr_store, group=key.path, consolidated=False, chunks=chunks, zarr_format=3
        )
        names = list(info.dtype.names or ()) if info.dtype is not None else list(ds.data_vars)
        if fields is not None:
            unknown = [f for f in fields if f not in names]
            if unknown:
                raise KeyError(f"{data_type} has no field(s) {unknown}; its fields: {names}")
            names = list(dict.fromkeys([*fields]))
        ds = ds[[n for n in names if n in ds.variables]]
        for name in ds.variables:
            unit = ds[name].attrs.get("unit")
            if unit:
                ds[name].attrs.setdefault("units", unit)
        coords = [c for c in ("time", "endtime") if c in ds.variables]
        ds = ds.set_coords(coords)
        meta = info.metadata
        ds.attrs = {
            "run_id": run_id,
            "data_type": data_type,
            "lineage_hash": key.lineage_hash,
            "plugin": str(meta.get("plugin", "")),
            "version": str(meta.get("version", "")),
            "lineage": json.dumps(meta.get("lineage", {}), sort_keys=True),
            "store": store.url,
        }
        return ds

    def copy(
        self,
        run_id: str,
        data_type: str,
        to: str | Store,
        *,
        recompress: CodecChoice = None,
        rechunk_mb: float | None = None,
        overwrite: bool = False,
    ) -> DataSetInfo:
        """Copy the stored ``data_type`` of ``run_id`` (this context's lineage) to the store
        ``to`` (a path, URL or Store), e.g. from a scratch disk to a shared one.

        The copy is written by ``to``'s own saver from the verified loaded chunks: same key,
        lineage and metadata, claimed while written, published only when complete.
        ``recompress``: a codec choice for the copy (e.g. ``"zstd:9"``; None: the default
        rule); ``rechunk_mb``: combine or split chunks toward this size (None: keep the
        stored chunks). DataExistsError if ``to`` has it complete already (``overwrite``).
        Returns the copy's info.
        """
        check_targets(self.registry.providers, [data_type])
        dest = open_store(to)
        key = self._me().key_for(run_id, data_type)
        source = find_stored(self.stores, key, exclude=dest)
        return copy_data_set(
            source, dest, key, codec=recompress, rechunk_mb=rechunk_mb, overwrite=overwrite
        )

    def _stored_in(self, key: DataKey) -> Store:
        for store in self.stores:
            if store.find(key) is not None:
                return store
        raise DataNotFound(
            f"{key.data_type} of run {key.run_id!r} is not stored under this context's lineage "
            f"(hash {key.lineage_hash}) in {_where(self.stores)}; make it first"
        )


def _where(stores: Sequence[Store]) -> str:
    return ", ".join(s.url for s in stores) or "no store"


def _match_nocase(name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name.lower(), pattern.lower())


def _columns(result: Any, wanted: list[str] | None) -> Mapping[str, Any]:
    """The columns of one chunk's (or ``function``'s) result to sum."""
    if isinstance(result, Mapping):
        names = list(result) if wanted is None else wanted
        return {n: np.asarray(result[n]) for n in names if n in result}
    arr = np.asarray(result)
    if arr.dtype.names is None:
        raise TypeError(
            "accumulate's function must return a structured array or a dict of arrays, got "
            f"{type(result).__name__}"
        )
    if wanted is None:
        names = [n for n in arr.dtype.names if arr.dtype[n].base.kind in "biuf"]
    else:
        missing = [n for n in wanted if n not in arr.dtype.names]
        if missing:
            raise KeyError(f"accumulate: no field(s) {missing}; fields: {list(arr.dtype.names)}")
        names = wanted
    return {n: arr[n] for n in names}
