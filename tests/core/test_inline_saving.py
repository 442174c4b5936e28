"""The threaded executor feeds a plain producer's savers in the producer's own thread.

A saver thread per data type cost two thread hand-offs per chunk (issue 21); what it did
must still hold: the data sets are complete and right, a saver's failure is its own (the
producer goes on for the data that does not need that saver), and the run's ``timeout``
still bounds how long a saver waits for its producer's next chunk. A ``parallel``
producer saves too: a chunk computed inline at once, one computing in the pool once it is
done, in order. Real threads and stores.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.engine.executors import execute
from strax_decl.engine.graph import build_graph
from strax_decl.engine.hooks import Hook
from strax_decl.engine.mailbox import MailboxTimeout

sys.path.insert(0, str(Path(__file__).parent))
import tiny_pipeline as tiny

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


class ParallelDoubler(sd.Plugin):
    parallel = True

    class Inputs(sd.Inputs):
        ticks: tiny.Tick

    class Outputs(sd.Outputs):
        pdoubled: tiny.Tick = sd.output(description="doubled in the thread pool")

    def compute(self, ticks: np.ndarray) -> np.ndarray:
        out = ticks.copy()
        out["value"] *= 2
        return out


class SaverThreads(Hook):
    """Which thread did each saver's work, and which pipeline threads existed meanwhile."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_saver: dict[str, set[str]] = {}
        self.alive: set[str] = set()

    def on_chunk(self, component: str, seconds: float, chunks: Sequence[sd.Chunk]) -> None:
        if component.startswith("save ") and chunks:
            with self.lock:
                self.by_saver.setdefault(component, set()).add(threading.current_thread().name)
                self.alive.update(t.name for t in threading.enumerate())


def test_every_producer_saves_in_its_own_thread_a_parallel_one_too(tmp_path: Path) -> None:
    ctx = sd.Context(
        str(tmp_path),
        plugins=[*tiny.PLUGINS, ParallelDoubler],
        config={"n_chunks": 6},
        max_messages=1,
    )
    seen = SaverThreads()
    plan = ctx.plan("r1", ["fragile", "pdoubled"])
    graph = build_graph(plan, ctx.registry, ctx.options, ctx.stores, None)
    assert list(execute(graph, "threaded", hooks=[seen], max_messages=1)) == []
    assert seen.by_saver == {
        "save ticks": {"sd:Ticks"},
        "save doubled": {"sd:Doubler+Fragile"},  # one fused segment (engine/segments.py)
        "save fragile": {"sd:Doubler+Fragile"},
        "save pdoubled": {"sd:ParallelDoubler"},
    }
    assert {n for n in seen.alive if n.startswith("sd:save")} == set()  # no saver threads
    ticks = sd.Context(None, plugins=tiny.PLUGINS, config={"n_chunks": 6}).get_array("r1", "ticks")
    for data_type, factor in (("ticks", 1), ("doubled", 2), ("fragile", 2), ("pdoubled", 2)):
        key = ctx.key_for("r1", data_type)
        assert ctx.stores[0].status(key) == "complete", data_type
        rows = ctx.get_array("r1", data_type)
        np.testing.assert_array_equal(rows["value"], ticks["value"] * factor)
        assert ctx.stores[0].info(key).n_chunks == 6  # the producer's chunks, as made


def break_the_ticks_saver_s_store(root: Path) -> None:
    """The ticks saver's directory becomes a file: its next write fails (ENOTDIR)."""
    (tmp,) = (root / "r1").glob(".tmp-ticks-*")
    os.rename(tmp, tmp.with_name("broken-" + tmp.name))
    tmp.touch()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("processor", ["threaded", "serial"])
def test_a_failing_saver_fails_alone_and_its_producer_goes_on(
    tmp_path: Path, processor: Literal["threaded", "serial"]
) -> None:
    """With either executor the error names the saver's data type (not its producer, at some
    chunk: the serial executor once said "plugin Ticks failed ..., after chunk [7000, 8000)"
    and marked ``doubled`` failed), and the data that does not need it is saved complete."""
    ctx = sd.Context(
        str(tmp_path),
        plugins=tiny.PLUGINS,
        config={"n_chunks": 8},
        max_messages=1,
        processor=processor,
    )
    chunks = ctx.iter_chunks("r1", "doubled")
    n = 0
    with pytest.raises(OSError) as info:
        for _ in chunks:
            n += 1
            if n == 1:
                break_the_ticks_saver_s_store(tmp_path)
    assert n == 8  # the caller got every chunk: the producer of ticks went on for doubled
    assert list(chunks) == []  # raised once
    text = "".join(traceback.format_exception(info.value))
    assert "saving ticks failed on run r1" in text, text
    assert "plugin Ticks failed" not in text, text
    assert ctx.stores[0].status(ctx.key_for("r1", "doubled")) == "complete"
    assert ctx.stores[0].status(ctx.key_for("r1", "ticks")) != "complete"
    assert [t.name for t in threading.enumerate() if t.name.startswith("sd")] == []


@pytest.mark.timeout(60)
@pytest.mark.parametrize("processor", ["threaded", "serial"])
def test_a_plugin_failing_after_a_saver_failed_is_reported_and_recorded_as_its_own(
    tmp_path: Path, processor: Literal["threaded", "serial"], caplog: pytest.LogCaptureFixture
) -> None:
    """The ticks saver fails (its store breaks), the run goes on (``keep_finished``), and
    Fragile raises. Whichever comes first (a saver's write error is seen when the write is
    collected) is raised, noting the other (logged with its traceback), and the fragile data
    set records Fragile's error, not another data type's broken store: both were once lost
    behind the saver's."""
    ctx = sd.Context(
        str(tmp_path),
        plugins=tiny.PLUGINS,
        config={"n_chunks": 8, "fragile_fail_at": 5 * tiny.CHUNK_NS},
        max_messages=1,
        processor=processor,
    )
    chunks = ctx.iter_chunks("r1", "fragile")
    n = 0
    with pytest.raises((OSError, ValueError)) as info:
        for _ in chunks:
            n += 1
            if n == 1:
                break_the_ticks_saver_s_store(tmp_path)
    assert n <= 5  # fragile's chunks before the failing one (a failure may overtake them)
    text = "".join(traceback.format_exception(info.value))
    saver = "saving ticks failed on run r1"
    plugin = f"plugin Fragile failed on run r1, chunk [{5 * tiny.CHUNK_NS}, "
    first, later, later_type = (
        (saver, plugin, ValueError) if isinstance(info.value, OSError) else (plugin, saver, OSError)
    )
    assert first in text and f"later, {later}" in text, text
    logged = [
        r
        for r in caplog.records
        if r.name == "strax_decl.engine.failures" and isinstance(r.exc_info[1], later_type)
    ]
    assert len(logged) == 1 and later.split(",")[0] in logged[0].getMessage()
    fragile = ctx.stores[0].info(ctx.key_for("r1", "fragile"))
    assert fragile.status == "failed"
    assert fragile.exception is not None and "ValueError: bad value at" in fragile.exception
    assert "saving ticks" not in fragile.exception and "StorageIOError" not in fragile.exception
    assert ctx.stores[0].status(ctx.key_for("r1", "doubled")) == "complete"  # keep_finished
    assert [t.name for t in threading.enumerate() if t.name.startswith("sd")] == []


def test_the_timeout_bounds_a_saver_s_wait_for_its_producer(tmp_path: Path) -> None:
    ctx = sd.Context(
        str(tmp_path),
        plugins=tiny.PLUGINS,
        config={"n_chunks": 3, "tick_delay_s": 1.5},
        timeout=0.3,
    )
    t0 = time.monotonic()
    with pytest.raises(MailboxTimeout, match=r"saver of 'ticks': gave up after 0\.3 s"):
        ctx.make("r1", "ticks")  # saved only: no mailbox reader waits for the source
    assert time.monotonic() - t0 < 10
    assert ctx.stores[0].status(ctx.key_for("r1", "ticks")) == "failed"
    assert [t.name for t in threading.enumerate() if t.name.startswith("sd")] == []
