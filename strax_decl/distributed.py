"""Scaling past one machine with Dask distributed: many runs, parallel chunks, Dask reading.

Everything here that needs Dask imports it inside the function that needs it, so importing
this module (and the rest of ``strax_decl``) works without Dask installed; only calling
something that talks to a cluster or builds a Dask collection needs ``strax-decl[dask]``.

Three things:

- **Many runs** (``make_runs``, behind ``Context.make(run_ids, targets, client=...)``): one
  Dask task per run. The task rebuilds the context on the worker from a picklable
  :class:`ContextSpec` (plugin classes by import path, stores by location, config, processor
  settings) and runs the normal pipeline for its run, writing to the shared store. Each task
  catches its own errors, so one failing run cancels nothing; a :class:`MultiRunResult` says
  which runs succeeded and which failed, and why.
- **Parallel chunks on the cluster** (:class:`ClientSubmit`): a ``submit`` callable, like
  ``Executor.submit``, that runs a ``parallel`` plugin's chunk computations as Dask tasks and
  returns ``concurrent.futures.Future`` objects, so the pipeline's mailboxes deliver the
  results in order and bound how many are in flight, exactly as with a local pool.
- **Reading into Dask** (``to_dask_arrays``/``to_dask_dataframe``, behind
  ``Context.to_dask``/``Context.to_dask_dataframe``): lazy Dask collections over stored data
  sets, one block/partition per Zarr chunk.

No scheduling of our own: Dask decides where tasks run; we only describe them.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import itertools
import os
import pickle
import sys
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

import strax_storage.pool
from strax_decl.context import run_list
from strax_decl.engine.futures import then
from strax_decl.plugin import Plugin, Submit
from strax_decl.progress import enabled as progress_enabled
from strax_decl.stats import call_timed
from strax_storage import DataKey, DataNotFound, Store, open_store

if TYPE_CHECKING:  # pragma: no cover - typing only
    import dask.array as da
    import dask.dataframe as dd
    from distributed import Client

    from strax_decl.context import Context, Processor

__all__ = [
    "ClientSubmit",
    "ContextSpec",
    "MultiRunResult",
    "PluginRef",
    "RunOutcome",
    "RunsFailed",
    "StoreSpec",
    "make_runs",
    "to_dask_arrays",
    "to_dask_dataframe",
]

DASK_HINT = "this needs Dask distributed: pip install 'strax-decl[dask]'"

CHUNK_TASK_PRIORITY = 10
"""Dask priority of chunk tasks: above run tasks (0), so started runs finish before new ones."""


# ============================================================================ worker-side entry

# What Dask workers execute first is defined here as source and pickled *by value* (its
# ``__module__`` is ``__main__``), so that unpickling a task never imports strax_decl. Why: a
# Dask worker puts its local directory first on ``sys.path`` and keeps spilled data in a
# subdirectory named ``storage``. Unless our ``storage`` package is itself on ``sys.path`` (an
# editable install is not: its import hook comes after the path search), ``import storage``
# then finds that directory as an empty namespace package, and unpickling any task that refers
# to strax_decl fails on a worker that has not imported it yet, leaving the task hanging.
# ``run_call`` imports the real package first (skipping such directories), then unpickles and
# runs the call it was given as bytes; ``frame_partition`` (DataFrame partitions) needs no
# strax_decl at all.
_WORKER_SOURCE = """
def run_call(payload):
    import importlib, os, pickle, sys

    module = sys.modules.get("storage")
    if module is None or getattr(module, "__file__", None) is None:
        sys.modules.pop("storage", None)

        def shadows(entry):
            where = os.path.join(entry or os.curdir, "storage")
            return os.path.isdir(where) and not os.path.isfile(os.path.join(where, "__init__.py"))

        saved = list(sys.path)
        sys.path[:] = [entry for entry in saved if not shadows(entry)]
        try:
            importlib.import_module("storage")
        finally:
            sys.path[:] = saved + [entry for entry in sys.path if entry not in saved]
    fn, args = pickle.loads(payload)
    return fn(*args)


def frame_partition(part):
    import numpy as np
    import pandas as pd

    arrays, lo, hi, run_id = part
    columns = {name: np.asarray(a[lo:hi]) for name, a in arrays.items()}
    frame = pd.DataFrame(columns, index=pd.RangeIndex(lo, hi))
    if run_id is not None:
        frame["run_id"] = pd.Series([run_id] * (hi - lo), index=frame.index, dtype=object)
    return frame
"""
_worker_code: dict[str, Any] = {"__name__": "__main__"}
exec(compile(_WORKER_SOURCE, "<strax_decl.distributed worker code>", "exec"), _worker_code)
_run_call: Callable[[bytes], Any] = _worker_code["run_call"]
_frame_partition: Callable[[tuple[dict[str, Any], int, int, str | None]], Any] = _worker_code[
    "frame_partition"
]


def _payload(fn: Callable[..., Any], *args: Any) -> bytes:
    """``fn(*args)`` as bytes for ``_run_call`` (so the task itself refers to no module)."""
    return pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)


def _require(module: str) -> Any:
    """Import ``module`` (a Dask module), or raise ImportError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{DASK_HINT} ({e})") from e


# ============================================================================ context specs


class SpecError(ValueError):
    """A context cannot be described for (or rebuilt on) another process."""


@dataclass(frozen=True)
class PluginRef:
    """Where a plugin class can be imported from: module, qualified name, source file.

    Classes travel by reference, never by value: a worker imports the module (or, if that
    fails, executes the source file, which must then be visible at the same path, e.g. on a
    shared filesystem) and looks the class up. The worker's class must give the same lineage
    as the client's; :meth:`ContextSpec.build` checks that.
    """

    module: str
    qualname: str
    file: str | None = None

    @classmethod
    def of(cls, plugin: type[Plugin]) -> PluginRef:
        module = sys.modules.get(plugin.__module__)
        file = getattr(module, "__file__", None)
        return cls(plugin.__module__, plugin.__qualname__, os.path.abspath(file) if file else None)

    def resolve(self) -> type[Plugin]:
        """The plugin class, imported in this process."""
        module = self._module()
        found = _lookup(module, self.qualname)
        if found is None:
            raise SpecError(
                f"plugin {self.qualname}: module {module.__name__!r} has no plugin class of "
                "that name (plugin classes must be reachable by name from their module)"
            )
        return found

    def _module(self) -> Any:
        if self.module != "__main__":
            loaded = sys.modules.get(self.module)
            if loaded is not None:
                return loaded
            try:
                return importlib.import_module(self.module)
            except ImportError as e:
                if self.file is None or not os.path.isfile(self.file):
                    raise SpecError(
                        f"plugin {self.qualname}: cannot import module {self.module!r} here "
                        f"({e}); install it where the work runs, or put its file on a "
                        "filesystem every worker sees"
                    ) from e
        elif self.file is None or not os.path.isfile(self.file):
            raise SpecError(
                f"plugin {self.qualname} is defined in __main__ (a script or notebook) and its "
                "source file is not available here; move plugins into an importable module"
            )
        return _module_from_file(self.module, self.file)


def _module_from_file(name: str, file: str) -> Any:
    """Execute ``file`` as a module (once per process); ``__main__`` is loaded under a new name.

    As with multiprocessing's spawn, a script loaded this way runs its top level again: keep
    work under ``if __name__ == "__main__":``.
    """
    modname = "__strax_decl_main__" if name == "__main__" else name
    loaded = sys.modules.get(modname)
    if loaded is not None and os.path.abspath(getattr(loaded, "__file__", "") or "") == file:
        return loaded
    spec = importlib.util.spec_from_file_location(modname, file)
    if spec is None or spec.loader is None:
        raise SpecError(f"cannot load plugin module {name!r} from {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module  # registered first: classes find their source ("auto")
    parent = str(Path(file).parent)
    if parent not in sys.path:
        sys.path.append(parent)  # sibling imports, as when the file was run
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(modname, None)
        raise
    return module


def _lookup(module: Any, qualname: str) -> type[Plugin] | None:
    """``module.<qualname>``; else a plugin class of that name in a module-level container."""
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            break
    if isinstance(obj, type) and issubclass(obj, Plugin):
        return obj
    # Plugins made by factories (``type(...)`` in a loop) are often kept in lists or dicts.
    for value in list(vars(module).values()):
        items = value.values() if isinstance(value, dict) else value
        if isinstance(value, list | tuple | dict):
            for item in items:
                if (
                    isinstance(item, type)
                    and issubclass(item, Plugin)
                    and item.__qualname__ == qualname
                ):
                    return item
    return None


@dataclass(frozen=True)
class StoreSpec:
    """How to reopen a store elsewhere: its location and tuning (no open handles)."""

    location: str
    readonly: bool = False
    rows_per_chunk: int | None = None
    zstd_level: int | None = None
    storage_options: dict[str, Any] | None = None

    @classmethod
    def of(cls, store: Store) -> StoreSpec:
        url = store.url
        if url.startswith("memory://anonymous-"):
            raise SpecError(
                f"store {url} is an anonymous in-memory store: it exists only in this process "
                "and cannot be reopened elsewhere; use a directory, an object-store URL, or a "
                "named store (memory://NAME, shared only within one process)"
            )
        fs = getattr(store.zarr_store, "fs", None)
        options = getattr(fs, "storage_options", None) if "://" in url else None
        return cls(
            url,
            store.readonly,
            store.rows_per_chunk,
            store.zstd_level,
            dict(options) if options else None,
        )

    @property
    def is_memory(self) -> bool:
        return self.location.startswith("memory://")

    def open(self) -> Store:
        kwargs: dict[str, Any] = {"readonly": self.readonly, "rows_per_chunk": self.rows_per_chunk}
        if self.zstd_level is not None:
            kwargs["zstd_level"] = self.zstd_level
        if self.storage_options:
            kwargs["storage_options"] = self.storage_options
        return open_store(self.location, **kwargs)


@dataclass(frozen=True)
class ContextSpec:
    """Everything needed to rebuild a :class:`~strax_decl.context.Context` in another process.

    Picklable by construction (strings, numbers, the user's config). ``lineage_hashes`` are the
    client's: :meth:`build` refuses to run if the rebuilt context disagrees (different plugin
    code or versions installed on the worker), rather than store data under other keys.
    """

    plugins: tuple[PluginRef, ...]
    storage: tuple[StoreSpec, ...]
    config: dict[str, Any]
    settings: dict[str, Any]
    lineage_hashes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, ctx: Context) -> ContextSpec:
        hashes = {d: ctx.lineages.hash(d) for p in ctx.plugins for d in p.outputs}
        return cls(
            plugins=tuple(PluginRef.of(p) for p in ctx.plugins),
            storage=tuple(StoreSpec.of(s) for s in ctx.stores),
            config=dict(ctx.config),
            settings=ctx.settings(),
            lineage_hashes=hashes,
        )

    def build(self) -> Context:
        from strax_decl.context import Context

        plugins = [ref.resolve() for ref in self.plugins]
        ctx = Context(
            storage=[s.open() for s in self.storage],
            plugins=plugins,
            config=self.config,
            **self.settings,
        )
        for data_type, expected in self.lineage_hashes.items():
            here = ctx.lineages.hash(data_type)
            if here != expected:
                plugin = ctx.registry.provider(data_type)
                raise SpecError(
                    f"data type {data_type!r} has lineage hash {here} here but {expected} where "
                    f"the work was submitted: plugin {plugin.name} (version {plugin.version}, "
                    f"module {plugin.__module__}) differs; install the same plugin code on "
                    "every worker"
                )
        return ctx


# ============================================================================ many runs


@dataclass
class RunOutcome:
    """What happened to one run."""

    run_id: str
    ok: bool
    error: str | None = None  # "ExceptionType: message" (with notes), None if ok
    traceback: str | None = None
    seconds: float = 0.0
    where: str | None = None  # worker address (or "local")
    stats: str | None = None  # RunStats.summary() of the run, if it ran

    def __str__(self) -> str:
        if self.ok:
            return f"ok      {self.run_id}  ({self.seconds:.2f} s on {self.where})"
        return f"FAILED  {self.run_id}: {self.error}"


@dataclass
class MultiRunResult:
    """Per-run results of ``make`` over several runs; printed as a readable summary.

    ``outcomes`` keeps the order in which the runs were given.
    """

    outcomes: dict[str, RunOutcome]
    seconds: float = 0.0

    @property
    def succeeded(self) -> list[str]:
        return [r for r, o in self.outcomes.items() if o.ok]

    @property
    def failed(self) -> dict[str, str]:
        """``{run_id: "ExceptionType: message"}`` of the runs that failed."""
        return {r: o.error or "failed" for r, o in self.outcomes.items() if not o.ok}

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes.values())

    def raise_if_failed(self) -> None:
        """Raise :class:`RunsFailed` (listing every failed run) if any run failed."""
        if not self.ok:
            raise RunsFailed(self)

    def __str__(self) -> str:
        n, bad = len(self.outcomes), len(self.failed)
        head = f"{n} run{'s' if n != 1 else ''}: {n - bad} succeeded, {bad} failed"
        lines = [f"{head} in {self.seconds:.2f} s"]
        # failures first: they are what the reader is looking for
        ordered = sorted(self.outcomes.values(), key=lambda o: o.ok)
        lines += [f"  {o}" for o in ordered]
        return "\n".join(lines)


class RunsFailed(RuntimeError):
    """Some runs of a multi-run ``make`` failed; ``.result`` has the details."""

    def __init__(self, result: MultiRunResult) -> None:
        super().__init__(str(result))
        self.result = result


def _failure(run_id: str, exc: BaseException, seconds: float, where: str) -> RunOutcome:
    error = "".join(traceback.format_exception_only(exc)).strip()
    tb = "".join(traceback.format_exception(exc))
    return RunOutcome(run_id, False, error, tb, seconds, where)


def _make_one(
    ctx: Context,
    run_id: str,
    targets: Sequence[str],
    save: Sequence[str],
    processor: Processor | None,
    submit: Submit | None,
    where: str,
) -> RunOutcome:
    t0 = time.perf_counter()
    try:
        ctx.make(run_id, targets, save=save, processor=processor, progress=False, submit=submit)
    except Exception as e:  # reported per run; the other runs go on
        return _failure(run_id, e, time.perf_counter() - t0, where)
    stats = ctx.last_stats.summary() if ctx.last_stats is not None else None
    return RunOutcome(run_id, True, None, None, time.perf_counter() - t0, where, stats)


def _run_task(
    spec: ContextSpec,
    run_id: str,
    targets: tuple[str, ...],
    save: tuple[str, ...],
    processor: Processor | None,
    parallel_on_client: bool,
) -> RunOutcome:
    """One run, on a Dask worker. Never raises: errors come back in the outcome."""
    from distributed import get_client, get_worker, rejoin, secede

    try:
        worker = get_worker()
    except ValueError:  # pragma: no cover - not on a worker (e.g. a synchronous scheduler)
        where = "unknown worker"
    else:
        where = str(worker.address)
        if worker.state.nthreads == 1 and worker.nanny is not None:
            # A one-thread worker in a process of its own (started by a nanny, never the
            # client's process): the deployment gave it one core, so compress and write in
            # the run's thread rather than in 2 more ($STORAGE_THREADS still wins).
            strax_storage.pool.set_default_threads(0)
    t0 = time.perf_counter()
    try:
        ctx = spec.build()
    except Exception as e:
        return _failure(run_id, e, time.perf_counter() - t0, where)
    if not parallel_on_client:
        return _make_one(ctx, run_id, targets, save, processor, None, where)
    # This task waits for its chunk tasks: leave the worker's thread pool while it does, or
    # runs occupying every worker thread would wait forever for chunk tasks that cannot start.
    submit = ClientSubmit(get_client(), key_prefix=f"sd-chunk-{run_id}")
    secede()
    try:
        return _make_one(ctx, run_id, targets, save, processor, submit, where)
    finally:
        rejoin()


def _report(shown: bool, done: int, total: int, outcome: RunOutcome) -> None:
    if shown:
        print(f"[{done}/{total}] {outcome}", file=sys.stderr, flush=True)


def make_runs(
    ctx: Context,
    run_ids: Sequence[str],
    targets: Sequence[str],
    *,
    save: Sequence[str] = (),
    processor: Processor | None = None,
    progress: bool | None = None,
    client: Client | str | None = None,
    parallel_on_client: bool = False,
) -> MultiRunResult:
    """Make ``targets`` for every run: one Dask task per run with ``client``, else here in turn.

    ``client``: a ``distributed.Client`` or a scheduler address (connected for this call).
    ``parallel_on_client``: ``parallel`` plugins submit their chunk computations to the same
    cluster (from the run's worker) instead of a pool on that worker.
    ``progress``: one line per finished run on stderr (None: only if stderr is a terminal).
    """
    runs = run_list(run_ids)
    t0 = time.perf_counter()
    shown = progress_enabled(progress)
    outcomes: dict[str, RunOutcome] = {}
    if client is None:
        if parallel_on_client:
            raise ValueError("parallel_on_client=True needs a client")
        for i, run_id in enumerate(runs):
            outcome = _make_one(ctx, run_id, targets, save, processor, None, "local")
            outcomes[run_id] = outcome
            _report(shown, i + 1, len(runs), outcome)
        return MultiRunResult(outcomes, time.perf_counter() - t0)
    distributed = _require("distributed")
    own_client = isinstance(client, str)
    dask_client: Client = distributed.Client(client) if isinstance(client, str) else client
    try:
        spec = ctx.spec()
        _check_shared_storage(spec, dask_client)
        token = uuid.uuid4().hex[:8]
        futures = {
            dask_client.submit(
                _run_call,
                _payload(
                    _run_task,
                    spec,
                    run_id,
                    tuple(targets),
                    tuple(save),
                    processor,
                    parallel_on_client,
                ),
                key=f"sd-make-{run_id}-{token}",
                pure=False,
                retries=0,
            ): run_id
            for run_id in runs
        }
        try:
            for n, fut in enumerate(distributed.as_completed(list(futures)), start=1):
                run_id = futures[fut]
                outcome = _collect(fut, run_id)
                outcomes[run_id] = outcome
                _report(shown, n, len(runs), outcome)
        except BaseException:  # interrupted: do not leave the runs going on the cluster
            with contextlib.suppress(Exception):
                dask_client.cancel(list(futures))
            raise
    finally:
        if own_client:
            dask_client.close()
    ordered = {r: outcomes[r] for r in runs}
    return MultiRunResult(ordered, time.perf_counter() - t0)


def _collect(fut: Any, run_id: str) -> RunOutcome:
    """The outcome a run task returned, or a failure for a task that died (KilledWorker...)."""
    try:
        outcome = fut.result()
    except BaseException as e:  # the worker died, the task was cancelled, ...
        return _failure(run_id, e, 0.0, "cluster")
    if not isinstance(outcome, RunOutcome):  # pragma: no cover - defensive
        return RunOutcome(run_id, False, f"unexpected task result {outcome!r:.200}")
    return outcome


def _check_shared_storage(spec: ContextSpec, client: Client) -> None:
    """In-memory stores are per process: refuse them unless every worker is in this process."""
    if not any(s.is_memory for s in spec.storage):
        return
    pids = set(client.run(os.getpid).values())
    if pids != {os.getpid()}:
        names = ", ".join(s.location for s in spec.storage if s.is_memory)
        raise SpecError(
            f"store {names} is in this process's memory, but the cluster's workers are other "
            "processes: they would write where nobody can read; use a shared directory or an "
            "object-store URL"
        )


# ============================================================================ chunks on a cluster


_worker_plugins: OrderedDict[str, Plugin] = OrderedDict()
_worker_plugins_lock = threading.Lock()
_WORKER_PLUGIN_CACHE = 64


@dataclass(frozen=True)
class _PluginHandle:
    """A plugin instance described for a worker: rebuilt there once, then reused (by token)."""

    token: str
    plugin: PluginRef
    options: dict[str, Any]
    run_id: str
    input_kinds: dict[str, str]
    input_dtypes: dict[str, np.dtype]

    @classmethod
    def of(cls, plugin: Plugin) -> _PluginHandle:
        options: Any = plugin.options  # a pydantic model (the plugin's Options)
        return cls(
            token=uuid.uuid4().hex,
            plugin=PluginRef.of(type(plugin)),
            options=options.model_dump(mode="python"),
            run_id=plugin.run_id,
            input_kinds=dict(plugin.input_kinds),
            input_dtypes=dict(plugin.input_dtypes),
        )

    def instance(self) -> Plugin:
        with _worker_plugins_lock:
            found = _worker_plugins.get(self.token)
            if found is not None:
                _worker_plugins.move_to_end(self.token)
                return found
        cls = self.plugin.resolve()
        plugin = cls(cls.Options.model_validate(self.options), self.run_id, self.input_kinds)
        plugin.input_dtypes = dict(self.input_dtypes)
        with _worker_plugins_lock:
            _worker_plugins[self.token] = plugin
            while len(_worker_plugins) > _WORKER_PLUGIN_CACHE:
                _worker_plugins.popitem(last=False)
        return plugin


@dataclass(frozen=True)
class _PluginMethod:
    """A picklable stand-in for ``plugin.<method>`` (the instance holds locks, stats...)."""

    handle: _PluginHandle
    method: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.handle.instance(), self.method)(*args, **kwargs)


class ClientSubmit:
    """``submit(fn, *args)`` onto a Dask client, returning ``concurrent.futures.Future``.

    Give it where the pipeline expects a pool's ``submit`` (``Context.make(..., submit=...)``
    or ``run_threaded(graph, submit=...)``). A bound method of a plugin (``compute_step``) is
    not pickled with its instance: the worker rebuilds the plugin from its class and options
    once and reuses it. Each call becomes one Dask task with priority
    :data:`CHUNK_TASK_PRIORITY`; its compute time is added to the plugin's run statistics.

    Cancelling a returned future (the pipeline does, on failure) cancels the Dask task. How
    many calls are in flight is bounded by the caller (the pipeline's mailboxes count pending
    futures); ``in_flight``/``peak_in_flight`` report it.
    """

    def __init__(
        self, client: Client, *, key_prefix: str = "sd-chunk", priority: int = CHUNK_TASK_PRIORITY
    ) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.priority = priority
        self._lock = threading.Lock()
        self._handles: dict[int, tuple[Plugin, _PluginHandle]] = {}
        self._live: set[Any] = set()  # Dask futures: released (and forgotten) if dropped
        self._counter = itertools.count()
        self.submitted = 0
        self.peak_in_flight = 0

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._live)

    def _portable(self, obj: Any) -> Any:
        plugin = getattr(obj, "__self__", None)
        if isinstance(plugin, Plugin) and callable(obj):
            with self._lock:
                entry = self._handles.get(id(plugin))
                if entry is None:
                    entry = self._handles[id(plugin)] = (plugin, _PluginHandle.of(plugin))
            return _PluginMethod(entry[1], obj.__name__)
        return obj

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        plugin = getattr(fn, "__self__", None)
        stats = plugin.stats if isinstance(plugin, Plugin) else None
        # the task's name: the plugin's, also when the call wraps its method (fn(method, ...))
        named = next(
            (
                p
                for p in (plugin, *(getattr(a, "__self__", None) for a in args))
                if isinstance(p, Plugin)
            ),
            None,
        )
        name = named.name if named is not None else getattr(fn, "__name__", "call")
        call = self._portable(fn)
        portable_args = tuple(self._portable(a) for a in args)
        key = f"{self.key_prefix}-{name}-{next(self._counter)}-{uuid.uuid4().hex[:8]}"
        payload = _payload(functools.partial(call_timed, call, **kwargs), *portable_args)
        dask_future = self.client.submit(
            _run_call, payload, key=key, pure=False, priority=self.priority
        )
        with self._lock:
            self._live.add(dask_future)
            self.submitted += 1
            self.peak_in_flight = max(self.peak_in_flight, len(self._live))

        def record(timed: tuple[Any, float]) -> Any:  # in Dask's callback thread
            if stats is None or not isinstance(plugin, Plugin):
                return timed[0]
            return stats.add_timed(plugin.name, timed)

        def forget() -> None:
            with self._lock:
                self._live.discard(dask_future)

        out = then(dask_future, record, cleanup=forget)

        def cancel_task(o: Future[Any]) -> None:
            if o.cancelled():
                with contextlib.suppress(Exception):
                    dask_future.cancel()

        out.add_done_callback(cancel_task)
        return out


# ============================================================================ reading into Dask


def _complete_store(ctx: Context, key: DataKey) -> Store:
    for store in ctx.stores:
        if store.status(key) == "complete":
            # Opening a loader verifies the data set (attributes, array metadata, chunk index)
            # before we hand its arrays to Dask; the generator itself is never started.
            chunks = store.load(key)
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            return store
    raise DataNotFound(
        f"{key.data_type} of run {key.run_id} (lineage {key.lineage_hash}) is not stored in "
        f"{[s.url for s in ctx.stores]}; make it first: ctx.make({key.run_id!r}, "
        f"{key.data_type!r})"
    )


def _field_array(group: Any, name: str) -> zarr.Array:
    array = group[name]
    if not isinstance(array, zarr.Array):  # pragma: no cover - the loader checked the layout
        raise DataNotFound(f"{name} in {group} is not a Zarr array")
    return array


def _fields(ctx: Context, data_type: str, fields: Sequence[str] | None) -> list[str]:
    names = list(ctx.registry.dtype(data_type).names or ())
    if fields is None:
        return names
    unknown = [f for f in fields if f not in names]
    if unknown:
        raise KeyError(f"{data_type} has no field(s) {unknown}; its fields: {names}")
    return list(fields)


def to_dask_arrays(
    ctx: Context,
    run_ids: str | Sequence[str],
    data_type: str,
    *,
    fields: Sequence[str] | None = None,
) -> dict[str, da.Array]:
    """One lazy Dask array per field of the stored ``data_type`` of ``run_ids``.

    Runs are concatenated in the order given; each array has one block per Zarr chunk of each
    run's data set (``da.from_zarr`` on the field's Zarr array), sub-array fields keep their
    extra dimensions, and values equal ``ctx.get_array``'s field by field. The data sets must
    be complete in one of the context's stores (``ctx.make`` them first).
    """
    dask_array = _require("dask.array")
    runs = run_list(run_ids)
    names = _fields(ctx, data_type, fields)
    per_field: dict[str, list[da.Array]] = {n: [] for n in names}
    for run_id in runs:
        key = ctx.key_for(run_id, data_type)
        group = _complete_store(ctx, key).zarr_group(key)
        for n in names:
            array = _field_array(group, n)
            per_field[n].append(
                dask_array.from_zarr(array, name=f"strax-{run_id}-{key.dirname}-{n}")
            )
    return {
        n: parts[0] if len(parts) == 1 else dask_array.concatenate(parts, axis=0)
        for n, parts in per_field.items()
    }


def to_dask_dataframe(
    ctx: Context,
    run_ids: str | Sequence[str],
    data_type: str,
    *,
    fields: Sequence[str] | None = None,
) -> dd.DataFrame:
    """A lazy Dask DataFrame of the scalar fields of the stored ``data_type`` of ``run_ids``.

    One partition per Zarr chunk of each run's data set; the index is the row number within
    its run. With several runs a ``run_id`` column says which run a row is from (as strax
    does); with one run the divisions are known. Sub-array fields (waveforms) are left out
    unless asked for, which raises: use ``to_dask_arrays`` for them.
    """
    dask_dataframe = _require("dask.dataframe")
    runs = run_list(run_ids)
    dtype = ctx.registry.dtype(data_type)
    assert dtype.fields is not None
    if fields is None:
        names = [n for n in dtype.names or () if dtype.fields[n][0].shape == ()]
    else:
        names = _fields(ctx, data_type, fields)
        multi = [n for n in names if dtype.fields[n][0].shape != ()]
        if multi:
            raise ValueError(
                f"fields {multi} of {data_type} are sub-arrays, which a DataFrame column cannot "
                "hold; use ctx.to_dask(...) for them"
            )
    parts: list[tuple[dict[str, Any], int, int, str | None]] = []
    divisions: list[int] = []
    for run_id in runs:
        key = ctx.key_for(run_id, data_type)
        group = _complete_store(ctx, key).zarr_group(key)
        arrays = {n: _field_array(group, n) for n in names}
        n_rows = int(arrays[names[0]].shape[0]) if names else 0
        step = int(arrays[names[0]].chunks[0]) if names else 1
        label = run_id if len(runs) > 1 else None
        bounds = list(range(0, n_rows, step)) or [0]
        for lo in bounds:
            parts.append((arrays, lo, min(lo + step, n_rows), label))
        divisions = [*bounds, max(n_rows - 1, 0)]
    meta = _frame_partition((parts[0][0], 0, 0, parts[0][3]))
    return dask_dataframe.from_map(
        _frame_partition,
        parts,
        meta=meta,
        divisions=tuple(divisions) if len(runs) == 1 else None,
        label=f"strax-{data_type}",
        enforce_metadata=False,
    )
