"""The threaded pipeline: same results as the serial one, bounded memory, timeouts as alarms.

Real threads, real pools, real Zarr stores on ``tmp_path``; no mocks.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.engine.graph import Graph, build_graph
from strax_decl.engine.hooks import MailboxesSeen
from strax_decl.engine.mailbox import MailboxTimeout
from strax_decl.engine.threaded import run_threaded
from strax_decl.testing import (
    FLAKY_PLUGINS,
    TOY_PLUGINS,
    FlakyPeaks,
    PeakProperties,
    PeakRecordCount,
    ProcessFlakyPeakProperties,
    ProcessFlakyPeaks,
    ThreadFlakyPeakProperties,
    ThreadFlakyPeaks,
    ToyRecords,
)
from strax_storage import Store, open_store

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

SMALL = {"n_chunks": 6, "rows_per_chunk": 50}
ALL_TYPES = ["records", "peaks", "peak_basics", "big_peaks", "peak_extras"]
VARIANTS: dict[str, list[type[sd.Plugin]]] = {
    "plain": TOY_PLUGINS,
    "thread-pool": [ToyRecords, ThreadFlakyPeaks, ThreadFlakyPeakProperties, PeakRecordCount],
    "process-pool": [ToyRecords, ProcessFlakyPeaks, ProcessFlakyPeakProperties, PeakRecordCount],
}


def pipeline_threads() -> list[str]:
    """Threads started by the pipeline (``sd:<component>``, ``sd-compute_<n>``) still alive."""
    return [t.name for t in threading.enumerate() if t.name.startswith("sd")]


def chunks_of(it: Any) -> list[tuple[int, int, np.ndarray]]:
    return [(c.start, c.end, c.data) for c in it]


def assert_same_chunks(a: list[tuple[int, int, np.ndarray]], b: list[tuple[int, int, Any]]) -> None:
    assert [(s, e) for s, e, _ in a] == [(s, e) for s, e, _ in b]
    for (_, _, x), (_, _, y) in zip(a, b, strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def store_contents(store: Store) -> dict[str, list[tuple[int, int, np.ndarray]]]:
    """Every data set of the store (all must be complete), chunk by chunk, by data type."""
    out = {}
    for info in store.list():
        assert info.status == "complete", info
        out[f"{info.key.data_type}-{info.key.lineage_hash}"] = chunks_of(store.load(info.key))
    return out


@pytest.mark.timeout(120)
@pytest.mark.parametrize("max_workers", [1, 2])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_serial_and_threaded_give_identical_output_and_stores(
    tmp_path: Path, variant: str, max_workers: int
) -> None:
    results = {}
    stores = {}
    counts = {}
    for processor in ("serial", "threaded"):
        ctx = sd.Context(
            storage=str(tmp_path / processor),
            plugins=VARIANTS[variant],
            config=SMALL,
            processor=processor,
            max_workers=max_workers,
        )
        # One request computes records, peaks and both outputs of the multi-output plugin;
        # the second loads records and peaks and computes a plugin with two input kinds.
        basics = chunks_of(ctx.iter_chunks("run_1", "peak_basics"))
        stats = ctx.last_stats
        assert stats is not None
        peaks_plugin = next(p.name for p in VARIANTS[variant] if "peaks" in p.outputs)
        assert stats.components[peaks_plugin].chunks == SMALL["n_chunks"]
        counts[processor] = {k: (c.chunks, c.rows, c.nbytes) for k, c in stats.components.items()}
        extras = chunks_of(ctx.iter_chunks("run_1", "peak_extras"))
        assert ctx.plan("run_1", ALL_TYPES).to_compute == []
        results[processor] = (basics, extras)
        stores[processor] = store_contents(ctx.stores[0])
        assert pipeline_threads() == []
    for s, t in zip(results["serial"], results["threaded"], strict=True):
        assert_same_chunks(s, t)
    assert counts["serial"] == counts["threaded"]  # same statistics (chunks, rows, bytes)
    assert sorted(stores["serial"]) == sorted(stores["threaded"])
    assert len(stores["serial"]) == len(ALL_TYPES)
    for name, chunks in stores["serial"].items():
        assert_same_chunks(chunks, stores["threaded"][name])
    # And all variants compute the same rows as the plain toy pipeline.
    plain = sd.Context(storage=None, plugins=TOY_PLUGINS, config=SMALL, processor="serial")
    np.testing.assert_array_equal(
        np.concatenate([d for _, _, d in results["threaded"][0]]),
        plain.get_array("run_1", "peak_basics"),
    )


@pytest.mark.timeout(60)
def test_parallel_plugins_run_chunks_concurrently(tmp_path: Path) -> None:
    """With a thread pool of 2, two 0.2 s computes overlap: 6 chunks take well under 6 * 0.2 s."""
    ctx = sd.Context(
        storage=None,
        plugins=VARIANTS["thread-pool"],
        config={**SMALL, "peaks_delay_s": 0.2},
        max_workers=2,
    )
    t0 = time.perf_counter()
    peaks = ctx.get_array("run_1", "peaks")
    elapsed = time.perf_counter() - t0
    assert len(peaks) == 6 * 50 // 5
    assert elapsed < 0.75 * 6 * 0.2, elapsed


# ------------------------------------------------------------------------- bounded memory


def _chain_graph(n_chunks: int, storage: str | None = None) -> tuple[sd.Context, Graph]:
    ctx = sd.Context(
        storage=storage,
        # FlakyPeaks: the plain (one output chunk per input chunk) variant of Peaks
        plugins=[ToyRecords, FlakyPeaks, PeakProperties],
        config={"n_chunks": n_chunks, "rows_per_chunk": 5, "group": 5},
    )
    plan = ctx.plan("run_1", "peak_basics")
    return ctx, build_graph(plan, ctx.registry, ctx.options, ctx.stores, "peak_basics")


def _run_chain(n_chunks: int, storage: str | None = None) -> tuple[int, MailboxesSeen]:
    _, graph = _chain_graph(n_chunks, storage)
    seen = MailboxesSeen()
    n = 0
    for chunk in run_threaded(graph, hooks=[seen], max_workers=2, max_messages=2):
        n += 1
        assert len(chunk) == 1
    return n, seen


@pytest.mark.timeout(120)
def test_mailboxes_never_hold_more_than_the_bound() -> None:
    n, run = _run_chain(10_000)
    assert n == 10_000
    assert set(run.mailboxes) == {"records", "peaks", "peak_basics", "big_peaks"}
    read = {name: mb for name, mb in run.mailboxes.items() if name != "big_peaks"}
    for mb in read.values():
        assert mb.closed and not mb.killed
        assert mb.peak <= 2, mb
    # The producers really are faster than the caller, so the bound is what held them back.
    assert max(mb.peak for mb in read.values()) == 2
    assert run.mailboxes["big_peaks"].peak == 0  # nobody reads it: nothing is kept


def _traced_peak(n_chunks: int, storage: str | None = None) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        n, _ = _run_chain(n_chunks, storage)
        assert n == n_chunks
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_memory_does_not_grow_with_the_number_of_chunks() -> None:
    _run_chain(200)  # warm up caches (imports, numpy) outside the measurement
    small = _traced_peak(2_000)
    large = _traced_peak(10_000)
    # 5x the chunks may cost a few per-run counters, not per-chunk memory (that would be
    # ~5x the small run's peak).
    assert large < small * 1.25 + 100_000, (small, large)


# ------------------------------------------------------------------------- timeouts


@pytest.mark.timeout(60)
def test_a_tiny_timeout_is_an_alarm_naming_the_stuck_mailbox() -> None:
    ctx = sd.Context(
        storage=None,
        plugins=FLAKY_PLUGINS,
        config={"n_chunks": 2, "rows_per_chunk": 10, "peaks_delay_s": 1.0},
        timeout=0.1,
    )
    t0 = time.perf_counter()
    with pytest.raises(MailboxTimeout, match=r"mailbox 'peaks': gave up after 0\.1 s waiting"):
        ctx.get_array("run_1", "peaks")
    # The caller's wait timed out; the run then waited only for the one compute in progress.
    assert time.perf_counter() - t0 < 1.0 + 2.0
    assert pipeline_threads() == []


@pytest.mark.timeout(60)
def test_without_a_timeout_a_slow_plugin_simply_finishes() -> None:
    config = {"n_chunks": 3, "rows_per_chunk": 10}
    reference = sd.Context(storage=None, plugins=TOY_PLUGINS, config=config, processor="serial")
    slow = {**config, "peaks_delay_s": 0.3, "props_delay_s": 0.1}
    for timeout in (None, 5.0):
        ctx = sd.Context(storage=None, plugins=FLAKY_PLUGINS, config=slow, timeout=timeout)
        np.testing.assert_array_equal(
            ctx.get_array("run_1", "peak_basics"), reference.get_array("run_1", "peak_basics")
        )
    assert pipeline_threads() == []


@pytest.mark.timeout(60)
def test_the_run_exposes_its_mailboxes_and_memory_stores_work() -> None:
    ctx, graph = _chain_graph(5, "memory://")
    seen = MailboxesSeen()
    chunks = list(run_threaded(graph, hooks=[seen], max_messages=3))
    assert len(chunks) == 5
    assert all(mb.closed for name, mb in seen.mailboxes.items() if name != "big_peaks")
    assert isinstance(ctx.stores[0], Store)
    assert ctx.is_stored("run_1", "peak_basics") and ctx.is_stored("run_1", "big_peaks")
    assert open_store("memory://").list() == []  # a fresh anonymous store is another store
