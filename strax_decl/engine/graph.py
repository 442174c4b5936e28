"""Plan -> Graph: the producers (loaders and plugins), savers and output of one request.

The graph is what both executors (serial and threaded) run; building it is shared so that
the two modes cannot differ in what they compute or store.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from strax_decl.chunk import Chunk, merge
from strax_decl.engine.futures import then
from strax_decl.engine.mailbox import Mailbox
from strax_decl.plugin import Options, Plugin, Submit
from strax_decl.registry import Registry
from strax_decl.resolver import Plan
from strax_decl.stats import RunStats, call_timed
from strax_decl.sync import aligned
from strax_decl.version import __version__
from strax_storage import DataKey, DataSetInfo, Saver, Store
from strax_storage.rechunk import Rechunker, rechunk

__all__ = ["SPLIT_GAP_NS", "Graph", "Producer", "RechunkingSaver", "build_graph"]

#: Rechunking splits stored chunks only at gaps of at least this many ns between rows (as
#: strax does), so clusters of touching rows stay in one chunk for chunk-wise consumers.
SPLIT_GAP_NS = 1000

Outputs = dict[str, Chunk]
StartFn = Callable[[Mapping[str, Iterator[Chunk]], Submit | None], Iterator[Any]]


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
    producers: list[Producer]  # dependency order
    savers: dict[str, list[Callable[[], Saver]]] = field(default_factory=dict)
    output: str | None = None  # the data type the caller iterates (None: make only)
    dtypes: dict[str, np.dtype] = field(default_factory=dict)
    stats: RunStats = field(default_factory=RunStats)
    #: The threaded executor's mailboxes by data type, set when it runs (for inspection:
    #: ``Mailbox.peak``, ``closed``, ``killed``); empty for the serial executor.
    mailboxes: dict[str, Mailbox] = field(default_factory=dict, repr=False)

    def producer_of(self, data_type: str) -> Producer:
        for p in self.producers:
            if data_type in p.outputs:
                return p
        raise KeyError(data_type)

    def readers_of(self, data_type: str) -> list[Producer]:
        return [p for p in self.producers if data_type in p.inputs]


def saver_metadata(plan: Plan, registry: Registry, data_type: str) -> dict[str, Any]:
    plugin = registry.provider(data_type)
    spec = plugin.outputs[data_type]
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
        "chunk_target_mb": spec.chunk_target_mb,
        "rechunk": spec.rechunk,
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
) -> Graph:
    """Wire loaders, plugin instances and savers for ``plan``."""
    producers: list[Producer] = []
    savers: dict[str, list[Callable[[], Saver]]] = {}
    dtypes: dict[str, np.dtype] = {}
    computed: set[str] = set()
    stats = RunStats()
    consumed_by_compute = {
        dep for s in plan.steps.values() if s.action == "compute" for dep in s.inputs
    }
    for data_type, step in plan.steps.items():
        dtypes[data_type] = registry.dtype(data_type)
        if step.action == "load":
            store = next(s for s in stores if s.status(step.key) == "complete")
            load_range = time_range if data_type not in consumed_by_compute else None
            spec = registry.output_spec(data_type)
            split_mb = spec.chunk_target_mb if spec.rechunk else None
            producers.append(_loader(data_type, store, step.key, load_range, stats, split_mb))
            continue
        if step.save:
            meta = saver_metadata(plan, registry, data_type)
            spec = registry.output_spec(data_type)
            target_mb = spec.chunk_target_mb if spec.rechunk else None
            savers[data_type] = [
                _saver_factory(s, step.key, dtypes[data_type], meta, target_mb)
                for s in stores
                if not s.readonly
            ]
        if step.plugin in computed:
            continue
        computed.add(step.plugin)
        plugin_cls = registry.plugins[step.plugin]
        producers.append(_plugin_producer(plugin_cls, registry, options, plan.run_id, stats))
    out_name: str | None
    if output is None or isinstance(output, str):
        out_name = output
    elif len(output) == 1:
        out_name = output[0]
    else:
        out_name = "+".join(output)
        producers.append(_merge_producer(out_name, tuple(output), dtypes))
    return Graph(producers, savers, out_name, dtypes, stats)


def _saver_factory(
    store: Store, key: DataKey, dtype: np.dtype, meta: dict[str, Any], target_mb: float | None
) -> Callable[[], Saver]:
    # Savers are created only when the run starts, so a plan that is never run writes nothing.
    def make() -> Saver:
        saver = store.saver(key, dtype, meta, overwrite=True)
        return saver if target_mb is None else RechunkingSaver(saver, target_mb)

    return make


class RechunkingSaver(Saver):
    """A Saver that rechunks what it is given toward ``target_mb`` before the real one writes.

    Small chunks are combined in the chunk index only (``send(extend_previous=True)``): the
    rows land in the same fixed-size Zarr chunks either way, so nothing is copied or held
    back. Huge chunks (>= 2x the target) are split at safe gaps into views. It stands in for
    the Saver the executors expect (both modes: ``send``/``close`` and ``save_from``), and
    delegates every public method to the wrapped saver, which still checks the chunk laws.
    """

    def __init__(self, inner: Saver, target_mb: float) -> None:
        self.inner = inner
        self.key = inner.key
        self.dtype = inner.dtype
        self._rechunker = Rechunker(
            target_mb,
            combine=False,
            min_gap=SPLIT_GAP_NS,
            where=f"rechunking data set {inner.key}",
        )
        self._target_bytes = self._rechunker.target_bytes
        self._entry_bytes: float | None = None  # bytes in the open index entry

    def _send_piece(self, piece: Chunk) -> None:
        extend = self._entry_bytes is not None and self._entry_bytes < self._target_bytes
        self.inner.send(piece, extend_previous=extend)
        self._entry_bytes = (self._entry_bytes if extend and self._entry_bytes else 0) + (
            piece.nbytes
        )

    @property
    def n_rows(self) -> int:
        return self.inner.n_rows

    @property
    def n_chunks(self) -> int:
        return self.inner.n_chunks

    @property
    def closed(self) -> bool:
        return self.inner.closed

    def send(self, chunk: Chunk, *, extend_previous: bool = False) -> None:
        try:
            ready = self._rechunker.receive(chunk)
        except BaseException as e:
            self.inner.fail(e)
            raise
        for piece in ready:
            self._send_piece(piece)

    def close(self) -> DataSetInfo:
        if not self.inner.closed:
            for piece in self._rechunker.flush():
                self._send_piece(piece)
        return self.inner.close()

    def fail(self, exc: BaseException) -> None:
        self.inner.fail(exc)

    def __repr__(self) -> str:
        return f"<RechunkingSaver to {self._rechunker.target_bytes / 1e6:g} MB of {self.inner!r}>"


def _loader(
    data_type: str,
    store: Store,
    key: DataKey,
    time_range: tuple[int, int] | None,
    stats: RunStats,
    split_mb: float | None = None,
) -> Producer:
    name = f"load {data_type}"

    def start(_inputs: Mapping[str, Iterator[Chunk]], _submit: Submit | None) -> Iterator[Outputs]:
        chunks = store.load(key, time_range=time_range)
        if split_mb is not None:  # bound memory if the data was stored in bigger chunks
            chunks = rechunk(
                chunks, split_mb, combine=False, min_gap=SPLIT_GAP_NS, where=f"loading {key}"
            )
        while True:
            t0 = time.perf_counter()
            chunk = next(chunks, None)
            if chunk is None:
                return
            stats.add(name, time.perf_counter() - t0, [chunk])
            yield {data_type: chunk}

    return Producer(name, (), (data_type,), start)


def _plugin_producer(
    plugin_cls: type[Plugin],
    registry: Registry,
    options: Mapping[str, Options],
    run_id: str,
    stats: RunStats,
) -> Producer:
    def start(
        inputs: Mapping[str, Iterator[Chunk]], submit: Submit | None
    ) -> Iterator[Outputs | Future[Outputs]]:
        plugin = plugin_cls(options[plugin_cls.name], run_id, registry.input_kinds(plugin_cls))
        plugin.input_dtypes = {d: registry.dtype(d) for d in plugin_cls.inputs}
        plugin.stats = stats
        if submit is not None and plugin_cls.parallel == "process":
            # The plugin is pickled to worker processes with every chunk: RunStats (a lock)
            # cannot go along, and figures added there would be lost. Time it here instead.
            plugin.stats = None
            submit = _timed_submit(submit, stats, plugin_cls.name)
        return plugin.iterate(inputs, submit)

    return Producer(
        plugin_cls.name,
        tuple(plugin_cls.inputs),
        tuple(plugin_cls.outputs),
        start,
        plugin_cls.parallel,
        plugin_cls.max_messages,
    )


def _timed_submit(submit: Submit, stats: RunStats, name: str) -> Submit:
    """``submit`` that records each call's compute time (measured in the worker) in ``stats``."""

    def timed(fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return then(submit(call_timed, fn, *args), lambda t: stats.add_timed(name, t))

    return timed


def _merge_producer(name: str, targets: tuple[str, ...], dtypes: dict[str, np.dtype]) -> Producer:
    """Several same-kind targets served as one merged stream."""

    def start(inputs: Mapping[str, Iterator[Chunk]], _submit: Submit | None) -> Iterator[Outputs]:
        for step in aligned(inputs, {t: dtypes[t] for t in targets}):
            yield {name: merge([step[t] for t in targets])}

    return Producer(f"merge {name}", targets, (name,), start)
