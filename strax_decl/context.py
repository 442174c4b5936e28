"""Context: the user's entry point. Register plugins, configure, get data.

::

    ctx = sd.Context(storage="./strax_data", plugins=[RecordSource, PeakFinder],
                     config={"gap": 200})
    peaks = ctx.get_array("run_1", "peaks")
    print(ctx.plan("run_1", "peaks"))
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from storage import DataKey, Store, open_store, validate_name
from strax_decl.chunk import Chunk, endtimes
from strax_decl.config import validate_config
from strax_decl.graph import build_graph
from strax_decl.plugin import Plugin
from strax_decl.registry import Registry
from strax_decl.resolver import Lineages, Plan, resolve
from strax_decl.serial import run_serial

__all__ = ["Context", "OptionTable"]

StorageArg = str | Store | Sequence[str | Store] | None
Targets = str | Sequence[str]
Processor = Literal["threaded", "serial"]


class OptionTable(list[dict[str, Any]]):
    """Rows of ``show_config``; prints as an aligned table."""

    def __str__(self) -> str:
        cols = ["option", "plugins", "type", "default", "current", "description"]
        cells = [[str(r[c]) for c in cols] for r in self]
        widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
        lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                  for row in cells]
        return "\n".join(lines)


class Context:
    """Plugins + configuration + storage. Immutable once built: derive with ``new_context``."""

    def __init__(
        self,
        storage: StorageArg = "./strax_data",
        plugins: Sequence[type[Plugin]] = (),
        config: Mapping[str, Any] | None = None,
        *,
        processor: Processor = "threaded",
        max_workers: int = 2,
        max_messages: int = 4,
        timeout: float | None = None,
    ) -> None:
        if processor not in ("threaded", "serial"):
            raise ValueError(f"processor must be 'threaded' or 'serial', got {processor!r}")
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self._storage_arg = storage
        if storage is None:
            storage = []
        elif isinstance(storage, str | Store):
            storage = [storage]
        self.stores: list[Store] = [open_store(s) for s in storage]
        self.plugins = tuple(plugins)
        self.registry = Registry.build(self.plugins)
        self.config: dict[str, Any] = dict(config or {})
        self.options = validate_config(self.registry, self.config)
        self.lineages = Lineages(self.registry, self.options)
        self.processor: Processor = processor
        self.max_workers = max_workers
        self.max_messages = max_messages
        self.timeout = timeout

    def new_context(
        self,
        *,
        storage: StorageArg = None,
        plugins: Sequence[type[Plugin]] | None = None,
        config: Mapping[str, Any] | None = None,
        replace_config: bool = False,
        **settings: Any,
    ) -> Context:
        """A derived context: config is merged (or replaced), plugins replace same-named ones."""
        merged_plugins = {p.name: p for p in self.plugins}
        for p in plugins or ():
            for old in list(merged_plugins.values()):
                if set(old.outputs) & set(p.outputs):
                    del merged_plugins[old.name]
            merged_plugins[p.name] = p
        new_config = dict(config or {}) if replace_config else {**self.config, **(config or {})}
        kwargs: dict[str, Any] = {
            "processor": self.processor,
            "max_workers": self.max_workers,
            "max_messages": self.max_messages,
            "timeout": self.timeout,
            **settings,
        }
        return Context(
            storage=self.stores if storage is None else storage,
            plugins=list(merged_plugins.values()),
            config=new_config,
            **kwargs,
        )

    # ------------------------------------------------------------------ introspection

    def lineage(self, data_type: str) -> dict[str, Any]:
        return self.lineages.lineage(data_type)

    def key_for(self, run_id: str, data_type: str) -> DataKey:
        return DataKey(run_id=run_id, data_type=data_type, lineage_hash=self.lineages.hash(data_type))

    def is_stored(self, run_id: str, data_type: str) -> bool:
        key = self.key_for(run_id, data_type)
        return any(s.status(key) == "complete" for s in self.stores)

    def plan(self, run_id: str, targets: Targets, save: Sequence[str] = ()) -> Plan:
        validate_name("run_id", run_id)
        return resolve(self.registry, self.lineages, self.stores, run_id, _as_list(targets), save)

    def show_config(self, data_type: str | None = None) -> OptionTable:
        """Every option: who takes it, type, default, current value, description."""
        plugins = (
            [self.registry.provider(data_type)] if data_type else list(self.registry.plugins.values())
        )
        rows = OptionTable()
        for name, spec in sorted(self.registry.options.items()):
            users = [p for p in self.registry.option_users[name] if any(q.name == p for q in plugins)]
            if not users:
                continue
            rows.append({
                "option": name,
                "plugins": ",".join(users),
                "type": spec.type_name,
                "default": "<required>" if spec.required else repr(spec.default),
                "current": repr(getattr(self.options[users[0]], name)),
                "description": spec.description,
            })
        return rows

    # ------------------------------------------------------------------ getting data

    def iter_chunks(
        self,
        run_id: str,
        targets: Targets,
        *,
        save: Sequence[str] = (),
        time_range: tuple[int, int] | None = None,
        processor: Processor | None = None,
    ) -> Iterator[Chunk]:
        """Stream the chunks of ``targets`` (same-kind targets are merged field-wise)."""
        target_list = _as_list(targets)
        kinds = {self.registry.kind(t) for t in target_list}
        if len(kinds) > 1:
            raise ValueError(
                f"targets {target_list} are of different kinds {sorted(kinds)}; request them "
                "separately (rows of different kinds are different things)"
            )
        plan = self.plan(run_id, target_list, save)
        graph = build_graph(
            plan, self.registry, self.options, self.stores, target_list, time_range
        )
        chunks = self._execute(graph, processor)
        if time_range is None:
            return chunks
        return _trim(chunks, time_range)

    def get_array(
        self,
        run_id: str,
        targets: Targets,
        *,
        save: Sequence[str] = (),
        time_range: tuple[int, int] | None = None,
        processor: Processor | None = None,
    ) -> np.ndarray:
        """All rows of ``targets`` in ``run_id`` as one numpy structured array."""
        parts = [c.data for c in self.iter_chunks(
            run_id, targets, save=save, time_range=time_range, processor=processor)]
        if parts:
            return np.concatenate(parts) if len(parts) > 1 else parts[0]
        target_list = _as_list(targets)
        from strax_decl.chunk import merged_dtype

        return np.zeros(0, dtype=merged_dtype(tuple(self.registry.dtype(t) for t in target_list)))

    def get_df(self, run_id: str, targets: Targets, **kwargs: Any) -> Any:
        """``get_array`` as a pandas DataFrame (sub-array fields become lists per row)."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - pandas is an optional extra
            raise ImportError("get_df needs pandas: pip install 'strax-decl[pandas]'") from e
        arr = self.get_array(run_id, targets, **kwargs)
        columns: dict[str, Any] = {}
        for name in arr.dtype.names or ():
            col = arr[name]
            columns[name] = list(col) if col.ndim > 1 else col
        return pd.DataFrame(columns)

    def make(
        self,
        run_id: str,
        targets: Targets,
        *,
        save: Sequence[str] = (),
        processor: Processor | None = None,
    ) -> None:
        """Compute and store ``targets`` (and what they need); return nothing."""
        target_list = _as_list(targets)
        plan = self.plan(run_id, target_list, save)
        if all(plan.steps[t].action == "load" for t in target_list):
            return
        graph = build_graph(plan, self.registry, self.options, self.stores, None)
        for _ in self._execute(graph, processor):
            pass

    def _execute(self, graph: Any, processor: Processor | None) -> Iterator[Chunk]:
        mode = processor or self.processor
        if mode == "serial":
            return run_serial(graph)
        from strax_decl.pipeline import run_threaded

        return run_threaded(
            graph,
            max_workers=self.max_workers,
            max_messages=self.max_messages,
            timeout=self.timeout,
        )


def _as_list(targets: Targets) -> list[str]:
    if isinstance(targets, str):
        return [targets]
    out = list(targets)
    if not out:
        raise ValueError("no targets given")
    return out


def _trim(chunks: Iterator[Chunk], time_range: tuple[int, int]) -> Iterator[Chunk]:
    """Rows fully inside ``[t0, t1)``; chunk bounds clipped to the range."""
    t0, t1 = time_range
    for c in chunks:
        if c.end <= t0 and not (c.start == c.end == t0):
            continue
        if c.start >= t1:
            break
        data = c.data
        if len(data):
            mask = (data["time"] >= t0) & (endtimes(data) <= t1)
            data = data[mask]
        yield Chunk(max(c.start, t0), min(c.end, t1), data)
