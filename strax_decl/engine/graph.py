"""Plan -> Graph: the producers (loaders and plugins), savers and output of one request.

The graph is what every executor (``strax_decl.engine.executors``) runs; building it is
shared so that the modes cannot differ in what they compute or store. It holds no run
state: a producer gets the run's hooks when it starts, and the executor keeps its own
mailboxes and savers, so one graph describes a run without being one.
"""

from __future__ import annotations

import datetime
import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from strax_decl.chunk import Chunk, merge
from strax_decl.engine.futures import then
from strax_decl.engine.hooks import Hooks
from strax_decl.plugin import Options, Plugin, Submit
from strax_decl.registry import Registry
from strax_decl.resolver import Plan, Step
from strax_decl.resuming import ResumeFrom, from_watermark, keeps_prefix
from strax_decl.runner import runner_for
from strax_decl.stats import call_timed
from strax_decl.sync import aligned
from strax_decl.version import __version__
from strax_storage import DataKey, DataSetInfo, Saver, Store
from strax_storage.codec_choice import CodecChoice
from strax_storage.loader import DataSetReader
from strax_storage.partial import prefix_chunks

__all__ = ["Graph", "Producer", "build_graph"]

LIVE_FLUSH_EVERY = 0.0
"""Seconds between flushes of a saver downstream of a live source (0: every chunk is made
final at once, for readers of the growing data set; see ``Store.saver(flush_every=...)``)."""
_FOREVER = 2**62

Outputs = dict[str, Chunk]
#: ``start(inputs, submit, hooks)``: a producer's iterator of outputs for one run.
StartFn = Callable[[Mapping[str, Iterator[Chunk]], Submit | None, Hooks], Iterator[Any]]


@dataclass
class Producer:
    """Something that yields ``{output: chunk}`` dicts (or futures of them), in order."""

    name: str  # e.g. "load peaks" or "PeakFinder"
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    start: StartFn
    parallel: bool | str = False
    max_messages: int | None = None


@dataclass
class Graph:
    """What runs and where its outputs go; run state (mailboxes, savers, statistics) lives in
    the executor's run and its hooks, so one graph can be run again."""

    producers: list[Producer]  # dependency order
    savers: dict[str, list[Callable[[], Saver]]] = field(default_factory=dict)
    output: str | None = None  # the data type the caller iterates (None: make only)
    dtypes: dict[str, np.dtype] = field(default_factory=dict)
    keep_partial: set[str] = field(default_factory=set)
    """Saved data types whose unfinished write a stop keeps as a resumable ``partial``
    (``resuming.keeps_prefix``); the others' are discarded."""

    def producer_of(self, data_type: str) -> Producer:
        for p in self.producers:
            if data_type in p.outputs:
                return p
        raise KeyError(data_type)

    def readers_of(self, data_type: str) -> list[Producer]:
        return [p for p in self.producers if data_type in p.inputs]


def saver_metadata(plan: Plan, registry: Registry, data_type: str) -> dict[str, Any]:
    plugin = registry.provider(data_type)
    spec = registry.output_spec(data_type)  # the schema resolved for this configuration
    return {
        "run_id": plan.run_id,
        "data_type": data_type,
        "data_kind": spec.kind,
        "plugin": plugin.name,
        "version": plugin.version,
        "code_hash": plugin.code_hash,
        "lineage": plan.lineages[data_type],
        "lineage_hash": plan.steps[data_type].key.lineage_hash,
        "description": spec.description,
        "fields": spec.schema.field_docs(),
        # per-run option values of this run and their sources (correction versions)
        "per_run_options": plan.options.get(plugin.name, {}),
        "strax_decl_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(),
    }


def build_graph(
    plan: Plan,
    registry: Registry,
    options: Mapping[str, Options],
    stores: Sequence[Store],
    output: str | Sequence[str] | None,
    time_range: tuple[int, int] | None = None,
    combine_loaded: bool = False,
) -> Graph:
    """Wire loaders, plugin instances and savers for ``plan``.

    ``combine_loaded``: the caller concatenates the output (``get_array``), so a loaded
    target read whole that no plugin reads may come in runs of stored chunks (see ``_loader``).
    """
    producers: list[Producer] = []
    savers: dict[str, list[Callable[[], Saver]]] = {}
    dtypes: dict[str, np.dtype] = {}
    computed: set[str] = set()
    keep_partial: set[str] = set()
    consumed_by_compute = {
        dep for s in plan.steps.values() if s.action == "compute" for dep in s.inputs
    }
    targets = {output} if isinstance(output, str) else set(output or ())
    live = _live_types(plan, registry)
    for data_type, step in plan.steps.items():
        dtypes[data_type] = registry.dtype(data_type)
        if step.action == "load":
            if step.store is None:  # the resolver records where every load comes from
                raise ValueError(f"plan step {data_type!r} loads, but names no store")
            load_range = time_range if data_type not in consumed_by_compute else None
            resumed = {
                s.resume.watermark if s.resume is not None else None
                for s in plan.steps.values()
                if s.action == "compute" and data_type in s.inputs
            }
            if len(resumed) == 1 and None not in resumed and data_type not in targets:
                load_range = (resumed.pop() or 0, _FOREVER)  # read only what is computed
            combine = combine_loaded and targets == {data_type} and load_range is None
            combine = combine and data_type not in consumed_by_compute
            loader = _loader(data_type, step.store, step.key, load_range, step.info, combine)
            producers.append(loader)
            continue
        if step.save:
            writable = [s for s in stores if not s.readonly]
            if len(writable) == 1 and keeps_prefix(registry.provider(data_type), plan.steps):
                keep_partial.add(data_type)
            meta = saver_metadata(plan, registry, data_type)
            codec = registry.output_spec(data_type).codec  # sd.output(codec=...)
            flush = LIVE_FLUSH_EVERY if data_type in live else None
            savers[data_type] = [
                _saver_factory(s, step.key, dtypes[data_type], meta, codec, flush, step.resume)
                for s in stores
                if not s.readonly
            ]
        if step.plugin in computed:
            continue
        computed.add(step.plugin)
        plugin_cls = registry.plugins[step.plugin]
        resume = _resumed(step, stores)
        producers.append(_plugin_producer(plugin_cls, registry, options, plan.run_id, resume))
    out_name: str | None
    if output is None or isinstance(output, str):
        out_name = output
    elif len(output) == 1:
        out_name = output[0]
    else:
        out_name = "+".join(output)
        producers.append(_merge_producer(out_name, tuple(output), dtypes))
    return Graph(producers, savers, out_name, dtypes, keep_partial)


def _live_types(plan: Plan, registry: Registry) -> set[str]:
    """The data types computed from a live source (their savers flush as chunks arrive)."""
    live: set[str] = set()
    for data_type, step in plan.steps.items():  # dependency order
        plugin = registry.plugins[step.plugin]
        if step.action == "compute" and (
            (plugin.is_source and plugin.live) or any(d in live for d in step.inputs)
        ):
            live.add(data_type)
    return live


def _resumed(step: Step, stores: Sequence[Store]) -> tuple[Store, DataKey, ResumeFrom] | None:
    if step.resume is None:
        return None
    writable = [s for s in stores if not s.readonly]
    return writable[0], step.key, step.resume


def _saver_factory(
    store: Store,
    key: DataKey,
    dtype: np.dtype,
    meta: dict[str, Any],
    codec: CodecChoice = None,
    flush_every: float | None = None,
    resume: ResumeFrom | None = None,
) -> Callable[[], Saver]:
    # Savers are created only when the run starts, so a plan that is never run writes nothing.
    # The codec changes only the stored bytes, not the rows: it is not in the lineage.
    def make() -> Saver:
        return store.saver(
            key, dtype, meta, overwrite=True, codec=codec, flush_every=flush_every, resume=resume
        )

    return make


def _loader(
    data_type: str,
    store: Store,
    key: DataKey,
    time_range: tuple[int, int] | None,
    info: DataSetInfo | None = None,
    combine: bool = False,
) -> Producer:
    """``combine``: consecutive stored chunks come joined, up to a Zarr chunk of rows each (a
    run of many small chunks costs one hand-off); only for a caller that concatenates."""
    name = f"load {data_type}"

    def start(
        _inputs: Mapping[str, Iterator[Chunk]], _submit: Submit | None, hooks: Hooks
    ) -> Iterator[Outputs]:
        # the stored chunks are the producer's: consumers see what they would see live
        if combine:
            reader = DataSetReader(store.backend, key, info)
            chunks = reader.chunks(combine_rows=reader.rows_per_chunk)
        else:
            chunks = store.load(key, time_range=time_range, info=info)
        while True:
            t0 = time.perf_counter()
            chunk = next(chunks, None)
            if chunk is None:
                return
            hooks.on_chunk(name, time.perf_counter() - t0, [chunk])
            yield {data_type: chunk}

    return Producer(name, (), (data_type,), start)


def _plugin_producer(
    plugin_cls: type[Plugin],
    registry: Registry,
    options: Mapping[str, Options],
    run_id: str,
    resume: tuple[Store, DataKey, ResumeFrom] | None = None,
) -> Producer:
    def start(
        inputs: Mapping[str, Iterator[Chunk]], submit: Submit | None, hooks: Hooks
    ) -> Iterator[Outputs | Future[Outputs]]:
        if resume is not None:  # computed from the watermark on (see ``resuming``)
            inputs = {d: from_watermark(c, resume[2].watermark) for d, c in inputs.items()}
        plugin = plugin_cls(options[plugin_cls.name], run_id, registry.input_kinds(plugin_cls))
        plugin.input_dtypes = {d: registry.dtype(d) for d in plugin_cls.inputs}
        if registry.resolved:  # option-dependent or derived schemas: the instance's own
            plugin.__dict__["outputs"] = registry.outputs_of(plugin_cls)  # shadows the class's
        hooks.on_plugin(plugin_cls.name, plugin)
        report: Hooks | None = hooks
        if submit is not None and plugin_cls.parallel == "process":
            # The runner is pickled to worker processes with every chunk: the hooks (locks,
            # streams) cannot go along, and figures reported there would be lost. Time the
            # calls here instead, from the worker's own measurement.
            report = None
            submit = _timed_submit(submit, hooks, plugin_cls.name)
        computed = runner_for(plugin, report).iterate(inputs, submit)
        if resume is None:
            return computed
        store, key, point = resume  # the stored final prefix, then what is computed after it
        (out,) = plugin_cls.outputs
        stored = ({out: c} for c in prefix_chunks(store.backend, key, point))
        return itertools.chain(stored, computed)

    return Producer(
        plugin_cls.name,
        tuple(plugin_cls.inputs),
        tuple(plugin_cls.outputs),
        start,
        plugin_cls.parallel,
        plugin_cls.max_messages,
    )


def _timed_submit(submit: Submit, hooks: Hooks, name: str) -> Submit:
    """``submit`` that reports each call's compute time (measured in the worker) to ``hooks``."""

    def timed(fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return then(submit(call_timed, fn, *args), lambda t: hooks.add_timed(name, t))

    return timed


def _merge_producer(name: str, targets: tuple[str, ...], dtypes: dict[str, np.dtype]) -> Producer:
    """Several same-kind targets served as one merged stream."""

    def start(
        inputs: Mapping[str, Iterator[Chunk]], _submit: Submit | None, _hooks: Hooks
    ) -> Iterator[Outputs]:
        for step in aligned(inputs, {t: dtypes[t] for t in targets}):
            yield {name: merge([step[t] for t in targets], names=targets)}

    return Producer(f"merge {name}", targets, (name,), start)
