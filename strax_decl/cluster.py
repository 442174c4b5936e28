"""Dask distributed: many runs on a cluster, parallel chunks on it, reading into Dask.

Everything that needs Dask imports it inside the function that needs it, so importing this
module works without Dask installed; only calling something that talks to a cluster or builds
a Dask collection needs ``strax-decl[dask]``. Tasks refer to this module's functions by name:
a worker imports ``strax_decl`` (and ``strax_storage``) like any other package.

Three things:

- **Many runs** (:func:`make_runs`, behind ``Context.make(run_ids, targets, client=...)``): one
  Dask task per run. The task rebuilds the context on the worker from its picklable
  :class:`~strax_decl.spec.ContextSpec` and runs the normal pipeline for its run, writing to
  the shared store. Each task catches its own errors, so one failing run cancels nothing; a
  :class:`~strax_decl.runs.MultiRunResult` says which runs succeeded and which failed, and why.
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
import itertools
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

import strax_storage.pool
from strax_decl.cluster_prefix import prefix_arrays
from strax_decl.context import Context
from strax_decl.engine.futures import then
from strax_decl.progress import enabled as progress_enabled
from strax_decl.runner import PluginRunner, runner_for
from strax_decl.runs import (
    MultiRunResult,
    RunOutcome,
    failure,
    make_one,
    make_runs_here,
    report,
    run_list,
)
from strax_decl.spec import ContextSpec, PluginRef, SpecError
from strax_decl.stats import call_timed
from strax_storage import DataKey, DataNotFound, Store

if TYPE_CHECKING:  # pragma: no cover - typing only
    import dask.array as da
    import dask.dataframe as dd
    from distributed import Client

    from strax_decl.context import Processor

__all__ = [
    "CHUNK_TASK_PRIORITY",
    "ClientSubmit",
    "make_runs",
    "to_dask_arrays",
    "to_dask_dataframe",
]

DASK_HINT = "this needs Dask distributed: pip install 'strax-decl[dask]'"

CHUNK_TASK_PRIORITY = 10
"""Dask priority of chunk tasks: above run tasks (0), so started runs finish before new ones."""


def _require(module: str) -> Any:
    """Import ``module`` (a Dask module), or raise ImportError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{DASK_HINT} ({e})") from e


# ============================================================================ many runs


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
    if client is None:
        if parallel_on_client:
            raise ValueError("parallel_on_client=True needs a client")
        return make_runs_here(
            ctx, run_ids, targets, save=save, processor=processor, progress=progress
        )
    runs = run_list(run_ids)
    t0 = time.perf_counter()
    shown = progress_enabled(progress)
    outcomes: dict[str, RunOutcome] = {}
    distributed = _require("distributed")
    own_client = isinstance(client, str)
    dask_client: Client = distributed.Client(client) if isinstance(client, str) else client
    try:
        spec = ctx.spec()
        _check_shared_storage(spec, dask_client)
        token = uuid.uuid4().hex[:8]
        futures = {
            dask_client.submit(
                _run_task,
                spec,
                run_id,
                tuple(targets),
                tuple(save),
                processor,
                parallel_on_client,
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
                report(shown, n, len(runs), outcome)
        except BaseException:  # interrupted: do not leave the runs going on the cluster
            with contextlib.suppress(Exception):
                dask_client.cancel(list(futures))
            raise
    finally:
        if own_client:
            dask_client.close()
    ordered = {r: outcomes[r] for r in runs}
    return MultiRunResult(ordered, time.perf_counter() - t0)


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
        ctx = Context.from_spec(spec)
    except Exception as e:
        return failure(run_id, e, time.perf_counter() - t0, where)
    if not parallel_on_client:
        return make_one(ctx, run_id, targets, save, processor, None, where)
    # This task waits for its chunk tasks: leave the worker's thread pool while it does, or
    # runs occupying every worker thread would wait forever for chunk tasks that cannot start.
    submit = ClientSubmit(get_client(), key_prefix=f"sd-chunk-{run_id}")
    secede()
    try:
        return make_one(ctx, run_id, targets, save, processor, submit, where)
    finally:
        rejoin()


def _collect(fut: Any, run_id: str) -> RunOutcome:
    """The outcome a run task returned, or a failure for a task that died (KilledWorker...)."""
    try:
        outcome = fut.result()
    except BaseException as e:  # the worker died, the task was cancelled, ...
        return failure(run_id, e, 0.0, "cluster")
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


_worker_runners: OrderedDict[str, PluginRunner] = OrderedDict()
_worker_runners_lock = threading.Lock()
_WORKER_RUNNER_CACHE = 64


@dataclass(frozen=True)
class _RunnerHandle:
    """A plugin's runner described for a worker: rebuilt there once, then reused (by token)."""

    token: str
    plugin: PluginRef
    options: dict[str, Any]
    run_id: str
    input_kinds: dict[str, str]
    input_dtypes: dict[str, np.dtype]
    outputs: dict[str, Any]  # the instance's output specs (schemas resolved at build)

    @classmethod
    def of(cls, runner: PluginRunner) -> _RunnerHandle:
        plugin = runner.plugin
        options: Any = plugin.options  # a pydantic model (the plugin's Options)
        return cls(
            token=uuid.uuid4().hex,
            plugin=PluginRef.of(type(plugin)),
            options=options.model_dump(mode="python"),
            run_id=plugin.run_id,
            input_kinds=dict(plugin.input_kinds),
            input_dtypes=dict(plugin.input_dtypes),
            outputs=dict(plugin.outputs),
        )

    def instance(self) -> PluginRunner:
        with _worker_runners_lock:
            found = _worker_runners.get(self.token)
            if found is not None:
                _worker_runners.move_to_end(self.token)
                return found
        cls = self.plugin.resolve()
        plugin = cls(cls.Options.model_validate(self.options), self.run_id, self.input_kinds)
        plugin.input_dtypes = dict(self.input_dtypes)
        plugin.__dict__["outputs"] = dict(self.outputs)  # the schemas resolved at build
        runner = runner_for(plugin)  # nobody to report to here: the client times the call
        with _worker_runners_lock:
            _worker_runners[self.token] = runner
            while len(_worker_runners) > _WORKER_RUNNER_CACHE:
                _worker_runners.popitem(last=False)
        return runner


@dataclass(frozen=True)
class _RunnerMethod:
    """A picklable stand-in for ``runner.<method>`` (its plugin and hooks hold locks...)."""

    handle: _RunnerHandle
    method: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.handle.instance(), self.method)(*args, **kwargs)


class ClientSubmit:
    """``submit(fn, *args)`` onto a Dask client, returning ``concurrent.futures.Future``.

    Give it where the pipeline expects a pool's ``submit`` (``Context.make(..., submit=...)``
    or ``run_threaded(graph, submit=...)``). A bound method of a plugin's runner
    (``compute_step``) is not pickled with its instance: the worker rebuilds the plugin from
    its class and options once and reuses it. Each call becomes one Dask task with priority
    :data:`CHUNK_TASK_PRIORITY`; its compute time is reported to the run's hooks.

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
        self._handles: dict[int, tuple[PluginRunner, _RunnerHandle]] = {}
        self._live: set[Any] = set()  # Dask futures: released (and forgotten) if dropped
        self._counter = itertools.count()
        self.submitted = 0
        self.peak_in_flight = 0

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._live)

    def _portable(self, obj: Any) -> Any:
        runner = getattr(obj, "__self__", None)
        if isinstance(runner, PluginRunner) and callable(obj):
            with self._lock:
                entry = self._handles.get(id(runner))
                if entry is None:
                    entry = self._handles[id(runner)] = (runner, _RunnerHandle.of(runner))
            return _RunnerMethod(entry[1], obj.__name__)
        return obj

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        runner = getattr(fn, "__self__", None)
        # the task's name: the plugin's, also when the call wraps its method (fn(method, ...))
        named = next(
            (
                r
                for r in (runner, *(getattr(a, "__self__", None) for a in args))
                if isinstance(r, PluginRunner)
            ),
            None,
        )
        name = named.name if named is not None else getattr(fn, "__name__", "call")
        call = self._portable(fn)
        portable_args = tuple(self._portable(a) for a in args)
        key = f"{self.key_prefix}-{name}-{next(self._counter)}-{uuid.uuid4().hex[:8]}"
        dask_future = self.client.submit(
            functools.partial(call_timed, call, **kwargs),
            *portable_args,
            key=key,
            pure=False,
            priority=self.priority,
        )
        with self._lock:
            self._live.add(dask_future)
            self.submitted += 1
            self.peak_in_flight = max(self.peak_in_flight, len(self._live))

        def record(timed: tuple[Any, float]) -> Any:  # in Dask's callback thread
            if not isinstance(runner, PluginRunner):
                return timed[0]
            return runner.add_timed(timed)  # reported as the runner's own computation

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
    allow_incomplete: bool = False,
) -> dict[str, da.Array]:
    """One lazy Dask array per field of the stored ``data_type`` of ``run_ids``.

    Runs are concatenated in the order given; each array has one block per Zarr chunk of each
    run's data set (``da.from_zarr`` on the field's Zarr array), sub-array fields keep their
    extra dimensions, and values equal ``ctx.get_array``'s field by field. The data sets must
    be complete in one of the context's stores (``ctx.make`` them first), or with
    ``allow_incomplete`` have a final prefix (read as it is now: ``cluster_prefix``).
    """
    dask_array = _require("dask.array")
    runs = run_list(run_ids)
    names = _fields(ctx, data_type, fields)
    per_field: dict[str, list[da.Array]] = {n: [] for n in names}
    for run_id in runs:
        key = ctx.key_for(run_id, data_type)
        if allow_incomplete and all(s.find(key) is None for s in ctx.stores):
            found = prefix_arrays(ctx.stores, key, names, ctx.registry.dtype(data_type))
            for n in names:
                per_field[n].append(found[n])
            continue
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


def _frame_partition(part: tuple[dict[str, Any], int, int, str | None]) -> Any:
    """One DataFrame partition: rows ``lo:hi`` of the fields' Zarr arrays (run on a worker)."""
    import pandas as pd

    arrays, lo, hi, run_id = part
    columns = {name: np.asarray(a[lo:hi]) for name, a in arrays.items()}
    frame = pd.DataFrame(columns, index=pd.RangeIndex(lo, hi))
    if run_id is not None:
        frame["run_id"] = pd.Series([run_id] * (hi - lo), index=frame.index, dtype=object)
    return frame


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
