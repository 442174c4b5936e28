"""A ``parallel`` plugin with cheap chunks computes them inline; its savers keep the order.

A pool round trip costs two thread wake-ups and GIL transfers per chunk, so a thread-pool
plugin whose chunks compute faster than ``pools.INLINE_BELOW_S`` computes them in its own
thread (the first chunk always goes to the pool: nothing is known of it yet); when its chunks
grow it goes back to the pool. Either way its savers get its chunks in order: one still
computing in the pool holds back the chunks after it (``InlineSavers.send_later``). Real
threads, real pools, real stores.
"""

from __future__ import annotations

import _thread
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.engine.futures import then
from strax_decl.engine.hooks import Hooks
from strax_decl.engine.inline_saving import InlineSavers
from strax_decl.engine.pools import COMPUTE_THREAD_PREFIX, INLINE_BELOW_S
from strax_decl.engine.saving import RunSavers
from strax_storage import DataKey, open_store
from strax_storage.chunk import Chunk

sys.path.insert(0, str(Path(__file__).parent))
import tiny_pipeline as tiny

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

WHERE: list[tuple[int, str]] = []
"""(chunk start, thread) of every computation of ``Timed`` that finished."""


class Timed(sd.Plugin):
    """Doubles the ticks; a chunk starting at or after ``slow_from`` takes ``slow_s``."""

    parallel = True

    class Inputs(sd.Inputs):
        ticks: tiny.Tick

    class Outputs(sd.Outputs):
        timed: tiny.Tick = sd.output(description="doubled, at a chosen cost per chunk")

    class Options(sd.Options):
        slow_from: int = sd.option(10**18, description="chunks from here on are slow [ns]")
        slow_s: float = sd.option(0.0, ge=0, description="how long a slow chunk takes [s]")

    def compute(self, ticks: np.ndarray, start: int, end: int) -> np.ndarray:
        if start >= self.options.slow_from:
            time.sleep(self.options.slow_s)
        WHERE.append((start, threading.current_thread().name))
        out = ticks.copy()
        out["value"] *= 2
        return out


def run_timed(tmp_path: Path, **config: object) -> tuple[sd.Context, list[str]]:
    WHERE.clear()
    ctx = sd.Context(
        str(tmp_path), plugins=[*tiny.PLUGINS, Timed], config={"n_chunks": 24, **config}
    )
    ctx.make("r1", "timed")
    threads = [name for _, name in sorted(WHERE)]
    return ctx, threads


def assert_saved_right(ctx: sd.Context) -> None:
    key = ctx.key_for("r1", "timed")
    assert ctx.stores[0].status(key) == "complete"
    assert ctx.stores[0].info(key).n_chunks == 24  # the producer's chunks, in order
    ticks = sd.Context(None, plugins=tiny.PLUGINS, config={"n_chunks": 24}).get_array("r1", "ticks")
    np.testing.assert_array_equal(ctx.get_array("r1", "timed")["value"], ticks["value"] * 2)


def test_cheap_chunks_are_computed_in_the_plugin_s_own_thread_after_the_first(
    tmp_path: Path,
) -> None:
    ctx, threads = run_timed(tmp_path)
    assert threads[0].startswith(COMPUTE_THREAD_PREFIX)  # nothing known yet: the pool
    # The next may be submitted before the first's cost is known, and a computation that
    # waited for the GIL may send one back to the pool; the rest costs less than a round trip.
    later = threads[len(threads) // 2 :]
    assert later.count("sd:Timed") >= len(later) - 1, threads
    assert_saved_right(ctx)


def test_slow_chunks_stay_in_the_pool(tmp_path: Path) -> None:
    ctx, threads = run_timed(tmp_path, slow_from=0, slow_s=20 * INLINE_BELOW_S)
    assert all(t.startswith(COMPUTE_THREAD_PREFIX) for t in threads)
    assert_saved_right(ctx)


def test_chunks_that_grow_go_back_to_the_pool_and_are_saved_in_order(tmp_path: Path) -> None:
    # chunks of 1000 ns (tiny_pipeline): the last six are slow
    ctx, threads = run_timed(tmp_path, slow_from=18000, slow_s=0.02)
    assert "sd:Timed" in threads[1:18]
    assert any(t.startswith(COMPUTE_THREAD_PREFIX) for t in threads[20:])
    assert_saved_right(ctx)


def chunk(start: int, value: int) -> Chunk:
    rows = np.zeros(1, dtype=tiny.Tick.dtype)
    rows["time"], rows["endtime"], rows["value"] = start, start + 1, value
    return Chunk(start, start + 10, rows)


def no_stop() -> None:
    """The run goes on (``send_later``'s stop check)."""


def done(result: dict[str, Chunk]) -> Future[dict[str, Chunk]]:
    future: Future[dict[str, Chunk]] = Future()
    future.set_result(result)
    return future


def inline_savers(tmp_path: Path) -> tuple[InlineSavers, object, list[BaseException]]:
    store = open_store(str(tmp_path))
    saver = store.saver(DataKey("r1", "ticks", "abc234def"), tiny.Tick.dtype, {})
    savers = RunSavers(Hooks([]))
    savers.by_type = {"ticks": [saver]}
    failures: list[BaseException] = []
    return InlineSavers(("ticks",), savers, Hooks([]), failures.append, "r1"), saver, failures


def test_a_chunk_still_computing_holds_back_the_chunks_after_it(tmp_path: Path) -> None:
    inline, saver, failures = inline_savers(tmp_path)
    computing: Future[dict[str, Chunk]] = Future()
    inline.send_later(computing, 4, no_stop)
    inline.send("ticks", chunk(10, 1))  # computed inline, behind the one computing
    inline.send_later(done({"ticks": chunk(20, 2)}), 4, no_stop)
    assert saver.n_chunks == 0
    computing.set_result({"ticks": chunk(0, 0)})
    inline.send("ticks", chunk(30, 3))  # sending saves what is done meanwhile, in order
    assert saver.n_chunks == 4
    assert inline.save_computed()
    inline.close()
    assert failures == []
    rows = open_store(str(tmp_path)).load_array(DataKey("r1", "ticks", "abc234def"))
    assert rows["value"].tolist() == [0, 1, 2, 3]


def test_the_end_waits_for_the_chunks_still_computing(tmp_path: Path) -> None:
    inline, saver, _ = inline_savers(tmp_path)
    computing: Future[dict[str, Chunk]] = Future()
    inline.send_later(computing, 4, no_stop)
    threading.Timer(0.05, computing.set_result, [{"ticks": chunk(0, 7)}]).start()
    assert inline.save_computed()  # waited for it
    assert saver.n_chunks == 1


def test_a_cancelled_computation_leaves_the_savers_to_the_stopping_run(tmp_path: Path) -> None:
    inline, saver, failures = inline_savers(tmp_path)
    cancelled: Future[dict[str, Chunk]] = Future()
    cancelled.cancel()
    inline.send_later(done({"ticks": chunk(0, 0)}), 4, no_stop)
    inline.send_later(cancelled, 4, no_stop)
    inline.send("ticks", chunk(10, 1))  # after it: dropped too
    assert not inline.save_computed()
    assert saver.n_chunks == 1 and not saver.closed  # the run discards or fails it
    assert failures == []
    saver.discard()


def test_a_failed_computation_is_raised_by_the_producer(tmp_path: Path) -> None:
    inline, saver, _ = inline_savers(tmp_path)
    failed: Future[dict[str, Chunk]] = Future()
    failed.set_exception(ValueError("bad chunk"))
    with pytest.raises(ValueError, match="bad chunk"):
        inline.send_later(failed, 4, no_stop)
    assert saver.n_chunks == 0
    saver.fail(ValueError("bad chunk"))


MADE_AND_DONE = {"made": 0, "peak": 0}


class CountedTicks(tiny.Ticks):
    """The ticks, counting how many chunks are out ahead of their computation by ``Timed``."""

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        for c in super().source(run_id):
            MADE_AND_DONE["made"] += 1
            ahead = MADE_AND_DONE["made"] - len(WHERE)
            MADE_AND_DONE["peak"] = max(MADE_AND_DONE["peak"], ahead)
            yield c


CountedTicks.__name__ = "Ticks"


def test_an_output_only_saved_still_bounds_the_chunks_in_flight(tmp_path: Path) -> None:
    """Nobody reads ``timed`` (``make``), and its chunks are slow (always in the pool): its
    savers' queue is what holds the source back, as the mailbox window does for readers
    (before, all 100 chunks went to the pool at once)."""
    WHERE.clear()
    MADE_AND_DONE.update(made=0, peak=0)
    ctx = sd.Context(
        str(tmp_path),
        plugins=[CountedTicks, Timed],
        config={"n_chunks": 100, "slow_from": 0, "slow_s": 0.005},
        max_messages=4,
    )
    ctx.make("r1", "timed")
    assert ctx.stores[0].status(ctx.key_for("r1", "timed")) == "complete"
    assert MADE_AND_DONE["peak"] <= 3 * 4  # the window, the pool, one each side


@pytest.mark.timeout(60)
def test_ctrl_c_while_a_cluster_s_futures_are_pending_ends_every_thread(tmp_path: Path) -> None:
    """Futures of a caller's ``submit`` (chained, as ``ClientSubmit`` does for Dask) are
    cancelled by the stop outside any executor; the producer waiting for them must wake."""
    pool = ThreadPoolExecutor(1)

    def submit(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        return then(pool.submit(fn, *args, **kwargs), lambda result: result)

    ctx = sd.Context(
        str(tmp_path),
        plugins=[*tiny.PLUGINS, Timed],
        config={"n_chunks": 8, "slow_from": 0, "slow_s": 0.3},
        timeout=3,
    )
    threading.Timer(0.5, _thread.interrupt_main).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        ctx.make("r1", "timed", submit=submit)
        time.sleep(5)  # (if make returned first: the interrupt lands here, and fails below)
    assert time.monotonic() - t0 < 2.5
    assert [t.name for t in threading.enumerate() if t.name.startswith("sd")] == []
    assert ctx.stores[0].status(ctx.key_for("r1", "timed")) == "absent"
    pool.shutdown(wait=True)
