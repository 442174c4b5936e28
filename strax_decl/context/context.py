"""Context: the user's entry point. Register plugins, configure, get data.

::

    ctx = sd.Context(storage="./strax_data", plugins=[RecordSource, PeakFinder],
                     config={"gap": 200})
    peaks = ctx.get_array("run_1", "peaks")
    print(ctx.plan("run_1", "peaks"))
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import EllipsisType, ModuleType
from typing import TYPE_CHECKING, Any, cast

from strax_decl.config import Configuration, flatten_scoped
from strax_decl.context.catalog import RunCatalog
from strax_decl.context.checking import Checking
from strax_decl.context.getters import Getters, Processor, Targets, as_list
from strax_decl.context.inspection import Inspection
from strax_decl.corrections import CorrectionsSource, open_corrections
from strax_decl.fuzzy import check_fuzzy_for
from strax_decl.lineage import Lineages
from strax_decl.loading import expand_plugins
from strax_decl.output_schemas import resolve_output_schemas
from strax_decl.plugin import Plugin
from strax_decl.registry import Registry
from strax_decl.resolver import Plan
from strax_decl.rows import OptionTable, option_table
from strax_decl.session import OnConflict, OnCorrupted, Request, RunConfig, Session
from strax_decl.stats import RunStats
from strax_storage import DataKey, Store, open_store

if TYPE_CHECKING:  # pragma: no cover - typing only
    from strax_decl.render import GraphFormat
    from strax_decl.spec import ContextSpec

__all__ = ["Context", "StorageArg"]

log = logging.getLogger(__name__)

StorageArg = str | os.PathLike[str] | Store | Sequence[str | os.PathLike[str] | Store] | None


def default_storage() -> str:
    """``$STRAX_DECL_STORAGE`` if set (and not empty), else ``./strax_data``: the store a
    ``Context()`` without ``storage`` and the command line without ``--storage`` use."""
    return os.environ.get("STRAX_DECL_STORAGE") or "./strax_data"


class Context(RunCatalog, Getters, Checking, Inspection):
    """Plugins + configuration + storage. Immutable once built: derive with ``new_context``.

    Getting data (``iter_chunks``, ``get_array``, ``make``, ...) is in ``getters.py``.
    """

    def __init__(
        self,
        storage: StorageArg | EllipsisType = ...,
        plugins: Sequence[type[Plugin] | ModuleType] | ModuleType = (),
        config: Mapping[str, Any] | None = None,
        *,
        processor: Processor = "threaded",
        max_workers: int = 2,
        max_messages: int = 4,
        timeout: float | None = None,
        on_conflict: OnConflict = "wait",
        on_corrupted: OnCorrupted = "raise",
        keep_finished: bool = True,
        corrections: str | Path | CorrectionsSource | None = None,
        global_version: str | None = None,
        fuzzy_for: Sequence[str] = (),
    ) -> None:
        """``storage``: where data is stored and looked for (a path, URL, Store, a list of
        them, or None; default ``$STRAX_DECL_STORAGE``, else ``./strax_data``; ``~`` is
        expanded). ``on_conflict``: when another process is writing a data set this one would save,
        ``"wait"`` for it and load it, or ``"fail"`` at once (ClaimHeld naming the data set
        and the writer). ``on_corrupted``: when stored data turns out corrupted while loading,
        ``"raise"`` DataCorrupted, or ``"recompute"``: mark it failed, compute and save it again
        (see ``iter_chunks`` for streams that already yielded rows). ``keep_finished``: when a
        plugin fails, the data types that do not depend on it still run to their end and are
        saved, so the rerun after the fix loads them and computes only what failed (False:
        everything stops at once). ``timeout``: seconds any single wait may last (mailboxes,
        pool computations, the winding down after a stop) before the run fails naming what
        it waited for; None: no limit. ``corrections``: where ``sd.correction(...)`` option
        values come from (a path to a corrections table, see ``strax_decl.corrections``);
        ``global_version``: the version tag pinning every correction not given a version.
        ``fuzzy_for``: plugins (names or data types) whose version and options may differ in
        loaded data when the exact lineage is not stored, for every request (the getters'
        ``fuzzy_for`` adds to it; see docs/processing.md)."""
        if processor not in ("threaded", "serial"):
            raise ValueError(f"processor must be 'threaded' or 'serial', got {processor!r}")
        if on_conflict not in ("wait", "fail"):
            raise ValueError(f"on_conflict must be 'wait' or 'fail', got {on_conflict!r}")
        if on_corrupted not in ("raise", "recompute"):
            raise ValueError(f"on_corrupted must be 'raise' or 'recompute', got {on_corrupted!r}")
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        if storage is ...:  # the default: the same store as the command line's
            storage = default_storage()
        self._storage_arg = storage
        if storage is None:
            storage = []
        elif isinstance(storage, str | os.PathLike | Store):
            storage = [storage]
        self.stores: list[Store] = [open_store(s) for s in storage]
        # modules register every plugin in them (strax's register_all)
        self.plugins = tuple(
            expand_plugins([plugins] if isinstance(plugins, ModuleType) else plugins)
        )
        self.registry = Registry.build(self.plugins)
        # scoped values spelled "Plugin.option", so derived contexts merge them one by one
        self.config: dict[str, Any] = flatten_scoped(config or {}, self.registry.plugins)
        self.corrections = open_corrections(corrections)
        self.global_version = global_version
        self.configuration = Configuration(
            self.registry, self.config, self.corrections, global_version
        )
        self.options = self.configuration.static.options
        # option-dependent and input-derived output schemas, checked for every consumer
        self.registry = resolve_output_schemas(self.registry, self.options)
        #: lineages that hold for every run (a type depending on per-run options raises)
        self.lineages = Lineages(
            self.registry,
            self.options,
            unresolved={p: set(v) for p, v in self.configuration.per_run.items()},
        )
        self._runs: dict[str, RunConfig] = {}
        self.processor: Processor = processor
        self.max_workers = max_workers
        self.max_messages = max_messages
        self.timeout = timeout
        self.on_conflict: OnConflict = on_conflict
        self.on_corrupted: OnCorrupted = on_corrupted
        self.keep_finished = bool(keep_finished)
        self.fuzzy_for = check_fuzzy_for(self.registry, fuzzy_for)
        self._session = Session(
            self.registry,
            self.lineages,
            self.options,
            self.stores,
            processor=processor,
            max_workers=max_workers,
            max_messages=max_messages,
            timeout=timeout,
            on_conflict=on_conflict,
            on_corrupted=on_corrupted,
            keep_finished=self.keep_finished,
            for_run=self.run_config if self.configuration.per_run else None,
        )

    @property
    def last_stats(self) -> RunStats | None:
        """Statistics of the latest get/make (``last_stats.summary()``: where time went)."""
        return self._session.last_stats

    @property
    def last_plan(self) -> Plan | None:
        """The plan the latest get/make executed (made while holding its claims)."""
        return self._session.last_plan

    def new_context(
        self,
        *,
        storage: StorageArg = None,
        plugins: Sequence[type[Plugin] | ModuleType] | ModuleType | None = None,
        config: Mapping[str, Any] | None = None,
        replace_config: bool = False,
        remove: Sequence[str] = (),
        **settings: Any,
    ) -> Context:
        """A derived context: config is merged (or replaced), plugins replace same-named ones
        (or ones providing the same data types); ``remove``: plugins to deregister, by name
        or by a data type they provide."""
        merged_plugins = {p.name: p for p in self.plugins}
        for name in [remove] if isinstance(remove, str) else remove:
            gone = [p for p in merged_plugins.values() if p.name == name or name in p.outputs]
            if not gone:
                raise KeyError(
                    f"remove: no registered plugin is named {name!r} or provides it "
                    f"(plugins: {', '.join(sorted(merged_plugins))})"
                )
            for p in gone:
                del merged_plugins[p.name]
        added = [plugins] if isinstance(plugins, ModuleType) else plugins or ()
        for p in expand_plugins(added):
            for old in list(merged_plugins.values()):
                if set(old.outputs) & set(p.outputs):
                    del merged_plugins[old.name]
            merged_plugins[p.name] = p
        names = set(merged_plugins)
        new = flatten_scoped(config or {}, names)
        new_config = new if replace_config else {**flatten_scoped(self.config, names), **new}
        return Context(
            storage=self.stores if storage is None else storage,
            plugins=list(merged_plugins.values()),
            config=new_config,
            **{**self.settings(), **settings},
        )

    def settings(self) -> dict[str, Any]:
        """The keyword-only settings (processor, max_workers, on_conflict, ...) as a dict.

        Read from ``__init__``'s signature, so a setting added there is carried by
        ``new_context`` and to other processes too; each is kept as an attribute of its name.
        """
        names = [
            p.name
            for p in inspect.signature(Context.__init__).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        return {n: getattr(self, n) for n in names}

    # ------------------------------------------------------------------ other processes

    def spec(self) -> ContextSpec:
        """A picklable description to rebuild this context elsewhere (``from_spec``).

        Plugins by import path (they must be importable there), stores by location (a path
        every process sees, or an object-store URL), config and processor settings.
        """
        from strax_decl.spec import ContextSpec

        return ContextSpec.of(self)

    @classmethod
    def from_spec(cls, spec: ContextSpec) -> Context:
        """Rebuild a context from ``spec``; refuses if its plugins give other lineages."""
        ctx = cls(**spec.arguments())
        spec.check(ctx)
        return ctx

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickled as its spec (open stores and registries are rebuilt, not copied).
        return (Context.from_spec, (self.spec(),))

    # ------------------------------------------------------------------ introspection

    def run_config(self, run_id: str) -> RunConfig:
        """Lineages, options and per-run values of ``run_id`` (per-run options resolved once
        per run and context; InvalidOption naming option, run and source if one cannot be)."""
        if run_id not in self._runs:
            resolved = self.configuration.for_run(run_id, self._run_start(run_id))
            lineages = Lineages(self.registry, resolved.options, resolved.sources)
            described = {
                plugin: {
                    option: {"value": getattr(resolved.options[plugin], option), **src}
                    for option, src in sources.items()
                }
                for plugin, sources in resolved.sources.items()
            }
            if len(self._runs) > 1000:
                self._runs.clear()
            self._runs[run_id] = (lineages, resolved.options, described)
        return self._runs[run_id]

    def _run_start(self, run_id: str) -> int | None:
        """The run's start time (ns) from its run document in the first store that has one,
        for corrections valid by time interval (None: not known)."""
        for store in self.stores:
            doc = store.run_doc(run_id)
            start = None if doc is None else doc.get("start")
            if isinstance(start, int) and not isinstance(start, bool):
                return start
        return None

    def lineage(self, data_type: str, run_id: str | None = None) -> dict[str, Any]:
        """The lineage of ``data_type`` (of ``run_id``'s data, needed when it depends on
        per-run options)."""
        if run_id is None or not self.configuration.per_run:
            return self.lineages.lineage(data_type)
        return self.run_config(run_id)[0].lineage(data_type)

    def key_for(self, run_id: str, data_type: str) -> DataKey:
        lineages = self.run_config(run_id)[0] if self.configuration.per_run else self.lineages
        return DataKey(run_id=run_id, data_type=data_type, lineage_hash=lineages.hash(data_type))

    def is_stored(self, run_id: str, data_type: str) -> bool:
        key = self.key_for(run_id, data_type)
        return any(s.status(key) == "complete" for s in self.stores)

    def plan(
        self,
        run_id: str,
        targets: Targets,
        save: Sequence[str] = (),
        *,
        fuzzy_for: Sequence[str] = (),
    ) -> Plan:
        """What a get/make of ``targets`` would load, compute and save, and why (reads only).
        For a superrun, a ``SuperrunPlan`` (a plan per subrun, or the superrun-level one).
        ``fuzzy_for``: as for ``get_array``."""
        superrun = self._superrun_plan(run_id, targets, save, fuzzy_for)
        if superrun is not None:
            return cast(Plan, superrun)
        fuzzy = self._fuzzy(fuzzy_for)
        return self._session.resolve(
            Request(run_id, tuple(as_list(targets)), tuple(save), fuzzy_for=fuzzy)
        )

    def show_config(self, data_type: str | None = None) -> OptionTable:
        """Every option: who takes it, type, default, current value, description."""
        return option_table(self.registry, self.options, data_type, self.configuration.per_run)

    def graph(self, format: GraphFormat = "text", targets: Targets | None = None) -> str:
        """The plugin DAG (of ``targets`` and what they need; None: all) as ``"text"``,
        Graphviz ``"dot"`` or ``"mermaid"``, as ``strax-decl graph`` prints it."""
        from strax_decl.render import render_graph

        return render_graph(self.registry, format, None if targets is None else as_list(targets))
