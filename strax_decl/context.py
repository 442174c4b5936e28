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
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from strax_decl.chunk import Chunk
from strax_decl.config import validate_config
from strax_decl.lineage import Lineages
from strax_decl.plugin import Plugin, Submit
from strax_decl.registry import Registry
from strax_decl.resolver import Plan
from strax_decl.rows import OptionTable, option_table, select, sub_dtype, tag_runs, trim
from strax_decl.runs import run_list
from strax_decl.selection import Selection, make_mask, project
from strax_decl.session import OnConflict, OnCorrupted, Request, Session
from strax_decl.stats import RunStats
from strax_storage import DataKey, Store, open_store

if TYPE_CHECKING:  # pragma: no cover - typing only; Dask is an optional extra
    import dask.array as da
    import dask.dataframe as dd
    from distributed import Client

    from strax_decl.render import GraphFormat
    from strax_decl.runs import MultiRunResult
    from strax_decl.spec import ContextSpec

__all__ = ["Context", "OptionTable"]

log = logging.getLogger(__name__)

StorageArg = str | Store | Sequence[str | Store] | None
RunIds = list[str] | tuple[str, ...]
Targets = str | Sequence[str]
Processor = Literal["threaded", "serial"]


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
        on_conflict: OnConflict = "wait",
        on_corrupted: OnCorrupted = "raise",
        keep_finished: bool = True,
    ) -> None:
        """``on_conflict``: when another process is writing a data set this one would save,
        ``"wait"`` for it and load it, or ``"fail"`` at once (ClaimHeld naming the data set
        and the writer). ``on_corrupted``: when stored data turns out corrupted while loading,
        ``"raise"`` DataCorrupted, or ``"recompute"``: mark it failed, compute and save it again
        (see ``iter_chunks`` for streams that already yielded rows). ``keep_finished``: when a
        plugin fails, the data types that do not depend on it still run to their end and are
        saved, so the rerun after the fix loads them and computes only what failed (False:
        everything stops at once). ``timeout``: seconds any single wait may last (mailboxes,
        pool computations, the winding down after a stop) before the run fails naming what
        it waited for; None: no limit."""
        if processor not in ("threaded", "serial"):
            raise ValueError(f"processor must be 'threaded' or 'serial', got {processor!r}")
        if on_conflict not in ("wait", "fail"):
            raise ValueError(f"on_conflict must be 'wait' or 'fail', got {on_conflict!r}")
        if on_corrupted not in ("raise", "recompute"):
            raise ValueError(f"on_corrupted must be 'raise' or 'recompute', got {on_corrupted!r}")
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
        self.on_conflict: OnConflict = on_conflict
        self.on_corrupted: OnCorrupted = on_corrupted
        self.keep_finished = bool(keep_finished)
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

    def lineage(self, data_type: str) -> dict[str, Any]:
        return self.lineages.lineage(data_type)

    def key_for(self, run_id: str, data_type: str) -> DataKey:
        return DataKey(
            run_id=run_id, data_type=data_type, lineage_hash=self.lineages.hash(data_type)
        )

    def is_stored(self, run_id: str, data_type: str) -> bool:
        key = self.key_for(run_id, data_type)
        return any(s.status(key) == "complete" for s in self.stores)

    def plan(self, run_id: str, targets: Targets, save: Sequence[str] = ()) -> Plan:
        """What a get/make of ``targets`` would load, compute and save, and why (reads only)."""
        return self._session.resolve(Request(run_id, tuple(_as_list(targets)), tuple(save)))

    def show_config(self, data_type: str | None = None) -> OptionTable:
        """Every option: who takes it, type, default, current value, description."""
        return option_table(self.registry, self.options, data_type)

    def graph(self, format: GraphFormat = "text", targets: Targets | None = None) -> str:
        """The plugin DAG (of ``targets`` and what they need; None: all) as ``"text"``,
        Graphviz ``"dot"`` or ``"mermaid"``, as ``strax-decl graph`` prints it."""
        from strax_decl.render import render_graph

        return render_graph(self.registry, format, None if targets is None else _as_list(targets))

    # ------------------------------------------------------------------ getting data

    def iter_chunks(
        self,
        run_id: str,
        targets: Targets,
        *,
        save: Sequence[str] = (),
        time_range: tuple[int, int] | None = None,
        selection: Selection | None = None,
        keep_columns: Sequence[str] | None = None,
        drop_columns: Sequence[str] | None = None,
        processor: Processor | None = None,
        progress: bool | None = None,
    ) -> Iterator[Chunk]:
        """Stream the chunks of ``targets`` (same-kind targets are merged field-wise).

        ``time_range``: ``(t0, t1)`` in ns; only rows fully inside it.
        ``selection``: only the rows for which it holds: a string such as
        ``"(area > 100) & (width < 500)"``, a list of strings (all must hold) or a callable
        ``f(rows) -> boolean mask`` (see ``strax_decl.selection``).
        ``keep_columns`` / ``drop_columns``: only these fields / all but these.
        None of these changes what is stored: whole data types are, as always. Stopping
        early (``break``, ``close()``, dropping the iterator) stops the pipeline and discards
        the data sets it had not finished (absent, not failed); a ``time_range`` on data not
        stored yet stops that way once the range is covered.
        ``progress``: show a progress bar on stderr (None: only if stderr is a terminal).

        With ``on_corrupted="recompute"``, corruption found before the first chunk is
        yielded is recovered transparently; found later, the data set is marked failed and
        DataCorrupted is raised (rows already yielded cannot be taken back): iterating again
        recomputes it.
        """
        target_list = _as_list(targets)
        kinds = {self.registry.kind(t) for t in target_list}
        if len(kinds) > 1:
            raise ValueError(
                f"targets {target_list} are of different kinds {sorted(kinds)}; request them "
                "separately (rows of different kinds are different things)"
            )
        request = Request(
            run_id,
            tuple(target_list),
            tuple(save),
            time_range=time_range,
            processor=processor,
            progress=progress,
        )
        # Errors in the request surface here, not at the first chunk; the same plan runs.
        plan = self._session.resolve(request)
        what = f"{'+'.join(target_list)} of run {run_id!r}"
        dtype = self._dtype(target_list)
        mask = None if selection is None else make_mask(selection, dtype, what)
        fields = project(dtype, keep_columns, drop_columns, what)
        chunks = self._session.run(request, plan)
        if time_range is not None:
            chunks = trim(chunks, time_range)
        if mask is not None or fields is not None:
            chunks = select(chunks, mask, fields)
        return chunks

    def get_array(
        self,
        run_id: str | RunIds,
        targets: Targets,
        *,
        save: Sequence[str] = (),
        time_range: tuple[int, int] | None = None,
        selection: Selection | None = None,
        keep_columns: Sequence[str] | None = None,
        drop_columns: Sequence[str] | None = None,
        processor: Processor | None = None,
        progress: bool | None = None,
    ) -> np.ndarray:
        """All rows of ``targets`` in ``run_id`` as one numpy structured array.

        The keywords are ``iter_chunks``'s. Several runs (a list or tuple of run ids): their
        rows one run after the other, in the order given, with a ``run_id`` field added (as
        strax does; ``drop_columns=["run_id"]`` leaves it out). The runs are got one after
        another; an error gets a note naming the run it came from. Sets are refused (no order).
        """
        options: dict[str, Any] = {
            "save": save,
            "time_range": time_range,
            "selection": selection,
            "keep_columns": keep_columns,
            "drop_columns": drop_columns,
            "processor": processor,
            "progress": progress,
        }
        if not isinstance(run_id, str):
            return self._get_runs(run_list(run_id), targets, **options)
        chunks = self.iter_chunks(run_id, targets, **options)
        try:
            parts = [c.data for c in chunks]
        finally:
            # At once, also on Ctrl-C: the traceback (kept by a notebook) would keep the
            # stream, and so its pipeline, alive.
            _close(chunks)
        if parts:
            return np.concatenate(parts) if len(parts) > 1 else parts[0]
        dtype = self._dtype(_as_list(targets))
        fields = project(dtype, keep_columns, drop_columns, f"{targets} of run {run_id!r}")
        return np.zeros(0, dtype=dtype if fields is None else sub_dtype(dtype, fields))

    def _get_runs(self, runs: list[str], targets: Targets, **kwargs: Any) -> np.ndarray:
        """``get_array`` of several runs, tagged with a ``run_id`` field."""
        target_list = _as_list(targets)
        keep, drop = kwargs.pop("keep_columns", None), kwargs.pop("drop_columns", None)

        def get(run: str, keep: list[str] | None, drop: list[str] | None) -> np.ndarray:
            return self.get_array(run, target_list, keep_columns=keep, drop_columns=drop, **kwargs)

        return tag_runs(runs, target_list, self._dtype(target_list), get, keep, drop)

    def _dtype(self, target_list: list[str]) -> np.dtype:
        """The dtype of the rows of ``target_list`` (same-kind targets merged)."""
        from strax_decl.chunk import merged_dtype

        return merged_dtype(tuple(self.registry.dtype(t) for t in target_list))

    def get_df(self, run_id: str | RunIds, targets: Targets, **kwargs: Any) -> Any:
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

    @overload
    def make(
        self,
        run_id: str,
        targets: Targets,
        *,
        save: Sequence[str] = (),
        processor: Processor | None = None,
        progress: bool | None = None,
        client: None = None,
        parallel_on_client: bool = False,
        submit: Submit | None = None,
    ) -> None: ...

    @overload
    def make(
        self,
        run_id: str | RunIds,
        targets: Targets,
        *,
        save: Sequence[str] = (),
        processor: Processor | None = None,
        progress: bool | None = None,
        client: Client | str,
        parallel_on_client: bool = False,
        submit: None = None,
    ) -> MultiRunResult: ...

    @overload
    def make(
        self,
        run_id: RunIds,
        targets: Targets,
        *,
        save: Sequence[str] = (),
        processor: Processor | None = None,
        progress: bool | None = None,
        client: Client | str | None = None,
        parallel_on_client: bool = False,
        submit: None = None,
    ) -> MultiRunResult: ...

    def make(
        self,
        run_id: str | RunIds,
        targets: Targets,
        *,
        save: Sequence[str] = (),
        processor: Processor | None = None,
        progress: bool | None = None,
        client: Client | str | None = None,
        parallel_on_client: bool = False,
        submit: Submit | None = None,
    ) -> MultiRunResult | None:
        """Compute and store ``targets`` (and what they need).

        One run (a string, no ``client``): returns nothing, raises what went wrong.

        Several runs (a list or tuple of run ids) or a ``client`` (a ``distributed.Client`` or
        a scheduler address): every run is made - one Dask task per run on the cluster with a
        client, else here one after the other - and a :class:`MultiRunResult` is returned
        instead of raising: ``.succeeded``, ``.failed`` (run id -> error), ``raise_if_failed()``.
        A failing run does not stop the others. With a client the store must be visible to
        every worker (a shared path or an object-store URL) and the plugins importable there.

        ``parallel_on_client``: ``parallel`` plugins submit their chunk computations to the
        cluster too, instead of a pool on the run's worker.
        ``submit``: where ``parallel`` plugins' chunk computations go (a callable like
        ``Executor.submit``; default a pool of ``max_workers``); threaded processor only.
        ``progress``: show a progress bar (one line per finished run for several runs) on
        stderr (None: only if stderr is a terminal).
        """
        if client is not None or not isinstance(run_id, str):
            if submit is not None:
                raise ValueError("submit= applies to one run made here, not to several runs")
            from strax_decl.cluster import make_runs

            runs = run_list(run_id)
            return make_runs(
                self,
                runs,
                _as_list(targets),
                save=save,
                processor=processor,
                progress=progress,
                client=client,
                parallel_on_client=parallel_on_client,
            )
        if parallel_on_client:
            raise ValueError("parallel_on_client=True needs a client")
        self._make_one(
            run_id, targets, save=save, processor=processor, progress=progress, submit=submit
        )
        return None

    def _make_one(
        self,
        run_id: str,
        targets: Targets,
        *,
        save: Sequence[str],
        processor: Processor | None,
        progress: bool | None,
        submit: Submit | None,
    ) -> None:
        request = Request(
            run_id,
            tuple(_as_list(targets)),
            tuple(save),
            output=False,
            processor=processor,
            progress=progress,
            submit=submit,
        )
        chunks = self._session.run(request)
        try:
            for _ in chunks:
                pass
        finally:
            _close(chunks)

    # ------------------------------------------------------------------ Dask

    def to_dask(
        self, run_ids: str | Sequence[str], data_type: str, *, fields: Sequence[str] | None = None
    ) -> dict[str, da.Array]:
        """Lazy Dask arrays, one per field, over the stored ``data_type`` of ``run_ids``.

        Runs are concatenated in the order given; one block per Zarr chunk; sub-array fields
        keep their extra dimensions. Values equal ``get_array``'s. Needs ``strax-decl[dask]``
        and the data stored (``make`` it first). See ``to_dask_dataframe`` for a DataFrame.
        """
        from strax_decl.cluster import to_dask_arrays

        return to_dask_arrays(self, run_ids, data_type, fields=fields)

    def to_dask_dataframe(
        self, run_ids: str | Sequence[str], data_type: str, *, fields: Sequence[str] | None = None
    ) -> dd.DataFrame:
        """A lazy Dask DataFrame of the scalar fields of the stored ``data_type`` of ``run_ids``.

        One partition per Zarr chunk; index = row number within the run; a ``run_id`` column
        when several runs are given. Needs ``strax-decl[dask]`` and the data stored.
        """
        from strax_decl.cluster import to_dask_dataframe

        return to_dask_dataframe(self, run_ids, data_type, fields=fields)


def _close(chunks: Iterator[Chunk]) -> None:
    """Stop the stream ``chunks`` now (its pipeline stops, its savers end, its claims go)."""
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def _as_list(targets: Targets) -> list[str]:
    if isinstance(targets, str):
        return [targets]
    out = list(targets)
    if not out:
        raise ValueError("no targets given")
    return out
