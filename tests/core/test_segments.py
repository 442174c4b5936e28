"""Fused segments of the threaded executor (``strax_decl/engine/segments.py``).

Plugins that buy no parallelism from a thread of their own share one, pulling on demand: the
results must be the serial executor's, a failure inside a segment must still leave finished
upstream work saved (``keep_finished``), the error must surface once with its note, every
thread must end, and in-segment buffers must stay flat in run length. Real threads, stores
and plugins (the tiny pipeline).
"""

from __future__ import annotations

import sys
import threading
import tracemalloc
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.engine.graph import Graph, Producer
from strax_decl.engine.hooks import Hook
from strax_decl.engine.segments import partition

sys.path.insert(0, str(Path(__file__).parent))
import tiny_pipeline as tiny

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


class Sums(sd.Plugin):
    """Reads ``ticks`` and ``doubled``: a diamond around ``Doubler`` inside one segment."""

    class Inputs(sd.Inputs):
        ticks: tiny.Tick
        doubled: tiny.Tick

    class Outputs(sd.Outputs):
        sums: tiny.Tick = sd.output(description="ticks + doubled")

    def compute(self, ticks: np.ndarray, doubled: np.ndarray) -> np.ndarray:
        out = ticks.copy()
        out["value"] += doubled["value"]
        return out


class Copier(sd.Plugin):
    """A second reader of ``doubled`` (fan-out inside a segment)."""

    class Inputs(sd.Inputs):
        doubled: tiny.Tick

    class Outputs(sd.Outputs):
        copied: tiny.Tick = sd.output(description="doubled, copied")

    def compute(self, doubled: np.ndarray) -> np.ndarray:
        return doubled.copy()


class After(sd.Plugin):
    """Reads ``ticks`` (from the source's thread) and ``fragile`` (from its own segment)."""

    class Inputs(sd.Inputs):
        ticks: tiny.Tick
        fragile: tiny.Tick

    class Outputs(sd.Outputs):
        after: tiny.Tick = sd.output(description="doomed when Fragile fails")

    def compute(self, ticks: np.ndarray, fragile: np.ndarray) -> np.ndarray:
        return ticks.copy()


PLUGINS = [*tiny.PLUGINS, Sums, Copier, After]


def _pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("sd")]


def _producer(name: str, inputs: tuple[str, ...], parallel: bool = False) -> Producer:
    def start(_i: Mapping[str, Iterator[sd.Chunk]], _s: Any, _h: Any) -> Iterator[Any]:
        return iter(())

    return Producer(name, inputs, (name.lower(),), start, parallel)


def _leaves_and_comes_back(graph: Graph, segment: Sequence[Producer]) -> bool:
    """Is there a path from a member through a non-member back to a member?"""
    members = {p.name for p in segment}
    by_output = {o: p for p in graph.producers for o in p.outputs}
    outside_from_members: set[str] = set()
    for p in graph.producers:  # dependency order
        ups = {by_output[d].name for d in p.inputs if d in by_output}
        reached = any(u in outside_from_members for u in ups) or (
            p.name not in members and ups & members
        )
        if p.name in members and any(u in outside_from_members for u in ups):
            return True
        if reached and p.name not in members:
            outside_from_members.add(p.name)
    return False


def test_threads_are_kept_for_sources_and_parallel_plugins_the_rest_is_fused() -> None:
    producers = [
        _producer("Src", ()),
        _producer("A", ("src",)),
        _producer("P", ("a",), parallel=True),
        _producer("C", ("a",)),
        _producer("B", ("p",)),
        _producer("D", ("b", "c")),  # below P, like B
        _producer("E", ("src",)),  # not connected to A or C except through the source
        _producer("F", ("e",)),
    ]
    graph = Graph(producers)
    segments = [[p.name for p in s] for s in partition(graph)]
    assert segments == [["Src"], ["A", "C"], ["P"], ["B", "D"], ["E", "F"]]
    for segment in partition(graph):
        assert not _leaves_and_comes_back(graph, segment), segment


def _run(tmp_path: Path, processor: str, **config: Any) -> sd.Context:
    ctx = sd.Context(
        str(tmp_path / processor),
        plugins=PLUGINS,
        config={"n_chunks": 12, **config},
        processor=processor,
        max_messages=1,
    )
    ctx.make("r1", ["fragile", "sums", "copied"])
    return ctx


class SaverThreads(Hook):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.threads: dict[str, set[str]] = {}

    def on_chunk(self, component: str, seconds: float, chunks: Sequence[sd.Chunk]) -> None:
        if component.startswith("save ") and chunks:
            with self.lock:
                self.threads.setdefault(component, set()).add(threading.current_thread().name)


def test_a_fused_segment_computes_what_the_serial_executor_computes(tmp_path: Path) -> None:
    serial = _run(tmp_path, "serial")
    threaded = _run(tmp_path, "threaded")
    for data_type in ("ticks", "doubled", "fragile", "sums", "copied"):
        want = serial.get_array("r1", data_type)
        got = threaded.get_array("r1", data_type)
        assert got.tobytes() == want.tobytes(), data_type
        key = threaded.key_for("r1", data_type)
        assert threaded.stores[0].info(key).n_chunks == 12, data_type
    # Where the savers ran: the source alone, every plugin below it in one thread.
    ctx = sd.Context(str(tmp_path / "seen"), plugins=PLUGINS, config={"n_chunks": 5})
    seen = SaverThreads()
    plan = ctx.plan("r1", ["fragile", "sums", "copied"])
    from strax_decl.engine.executors import execute
    from strax_decl.engine.graph import build_graph

    graph = build_graph(plan, ctx.registry, ctx.options, ctx.stores, None)
    assert list(execute(graph, "threaded", hooks=[seen], max_messages=1)) == []
    assert seen.threads["save ticks"] == {"sd:Ticks"}
    fused = {name for c, names in seen.threads.items() if c != "save ticks" for name in names}
    assert fused == {"sd:Doubler+Fragile+Sums+Copier"}
    assert _pipeline_threads() == []


def test_a_failure_inside_a_segment_keeps_the_finished_work_and_surfaces_once(
    tmp_path: Path,
) -> None:
    ctx = sd.Context(
        str(tmp_path),
        plugins=PLUGINS,
        config={"n_chunks": 12, "fragile_fail_at": 3 * tiny.CHUNK_NS},
        max_messages=1,
    )
    with pytest.raises(ValueError, match="bad value at 3000") as info:
        ctx.make("r1", ["fragile", "sums", "copied"])
    notes = [n for n in getattr(info.value, "__notes__", []) if "failed on run" in n]
    assert notes == ["plugin Fragile failed on run r1, chunk [3000, 4000)"]
    store = ctx.stores[0]
    # Sums, Copier and Doubler share Fragile's thread; they do not depend on it: all saved.
    for data_type in ("ticks", "doubled", "sums", "copied"):
        assert store.status(ctx.key_for("r1", data_type)) == "complete", data_type
        assert len(ctx.get_array("r1", data_type)) == 12 * 5
    assert store.status(ctx.key_for("r1", "fragile")) == "failed"
    assert _pipeline_threads() == []


def test_a_doomed_member_stops_holding_back_the_threads_still_needed(tmp_path: Path) -> None:
    ctx = sd.Context(
        str(tmp_path),
        plugins=PLUGINS,
        config={"n_chunks": 60, "fragile_fail_at": 2 * tiny.CHUNK_NS},
        max_messages=1,
        timeout=20.0,
    )
    with pytest.raises(ValueError, match="bad value at 2000"):
        ctx.make("r1", ["after", "sums"])
    store = ctx.stores[0]
    for data_type in ("ticks", "doubled", "sums"):  # the source ran to its end meanwhile
        assert store.status(ctx.key_for("r1", data_type)) == "complete", data_type
    for data_type in ("fragile", "after"):
        assert store.status(ctx.key_for("r1", data_type)) == "failed", data_type
    assert _pipeline_threads() == []


def test_an_early_stop_inside_a_segment_ends_every_thread(tmp_path: Path) -> None:
    ctx = sd.Context(str(tmp_path), plugins=PLUGINS, config={"n_chunks": 50}, max_messages=1)
    chunks = ctx.iter_chunks("r1", "sums")
    for i, _ in enumerate(chunks):
        if i == 3:
            break
    chunks.close()
    assert _pipeline_threads() == []
    assert ctx.stores[0].status(ctx.key_for("r1", "sums")) != "complete"
    assert len(ctx.get_array("r1", "sums")) == 50 * 5  # and it computes again completely


def _traced_peak(n_chunks: int) -> int:
    ctx = sd.Context(None, plugins=PLUGINS, config={"n_chunks": n_chunks, "rows": 4000})
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        # Two sinks reading the same producer in one segment: driven in step, not one after
        # the other (which would buffer every chunk of ``doubled`` for the second).
        ctx.make("r1", ["fragile", "copied"])
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_buffers_inside_a_segment_stay_flat_in_run_length() -> None:
    _traced_peak(5)  # warm-up: imports and caches
    short, long = _traced_peak(40), _traced_peak(160)
    chunk_bytes = 4000 * tiny.Tick.zeros(1).nbytes
    assert long < short + 20 * chunk_bytes, (short, long, chunk_bytes)
