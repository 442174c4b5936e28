"""A slow caller is not a hang: the time the caller spends with each chunk of ``iter_chunks``
does not count against the context's ``timeout``; a plugin stuck inside the pipeline still
fails the run within bounded time, named.

Once, with the threaded executor, a caller sleeping longer than ``timeout`` between chunks
made the producers time out sending into the output mailbox it reads (and the sources
behind them), and the saved data was marked failed.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

import strax_decl as sd

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import tiny_pipeline as tiny  # noqa: E402

pytestmark = pytest.mark.usefixtures("release_stuck_calls")


def _warm_up(tmp_path: Path) -> None:
    """Compile and import outside the timed run (a cold first chunk may take > 0.5 s)."""
    sd.Context(str(tmp_path / "warm"), plugins=tiny.PLUGINS, config={"n_chunks": 2}).get_array(
        "r0", "fragile"
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("processor", ["threaded", "serial"])
def test_a_caller_slower_than_the_timeout_gets_every_chunk_and_the_data_is_saved(
    tmp_path: Path, processor: Literal["threaded", "serial"]
) -> None:
    _warm_up(tmp_path)
    ctx = sd.Context(
        str(tmp_path / "store"),
        plugins=tiny.PLUGINS,
        config={"n_chunks": 3},
        timeout=0.5,
        max_messages=1,  # the output mailbox is full while the caller sleeps
        processor=processor,
    )
    starts = []
    for chunk in ctx.iter_chunks("r1", "fragile"):
        starts.append(chunk.start)
        time.sleep(1.0)  # a notebook user working on each chunk
    assert starts == [0, tiny.CHUNK_NS, 2 * tiny.CHUNK_NS]
    for data_type in ("ticks", "doubled", "fragile"):
        assert ctx.stores[0].status(ctx.key_for("r1", data_type)) == "complete", data_type
    assert len(ctx.get_array("r1", "fragile")) == 3 * 5
    assert [t.name for t in threading.enumerate() if t.name.startswith("sd")] == []


class StuckOnSecond(sd.Plugin):
    """Waits, in its second step, for an event nobody sets (a hang inside the pipeline)."""

    class Inputs(sd.Inputs):
        doubled: tiny.Tick

    class Outputs(sd.Outputs):
        stuck: tiny.Tick = sd.output(description="hangs in its second step")

    def compute(self, doubled: np.ndarray, start: int, end: int) -> np.ndarray:
        if start >= tiny.CHUNK_NS:
            tiny.RELEASE.wait(60)
        return doubled.copy()


@pytest.mark.timeout(60)
def test_a_plugin_stuck_inside_the_pipeline_still_times_out_after_a_slow_caller(
    tmp_path: Path,
) -> None:
    _warm_up(tmp_path)
    ctx = sd.Context(
        str(tmp_path / "store"),
        plugins=[tiny.Ticks, tiny.Doubler, StuckOnSecond],
        config={"n_chunks": 3},
        timeout=0.5,
        max_messages=1,
    )
    n = 0
    with pytest.raises(sd.engine.mailbox.MailboxTimeout) as info:
        for _ in ctx.iter_chunks("r1", "stuck"):
            n += 1
            time.sleep(1.0)  # slow, but not the reason the run fails
            t0 = time.monotonic()
    elapsed = time.monotonic() - t0
    assert n == 1
    # the caller's wait times out after 0.5 s; the stuck thread is waited for at least 5 s
    assert elapsed < 15, elapsed
    text = "".join(traceback.format_exception(info.value))
    assert "gave up after 0.5 s" in text, text
    assert "StuckOnSecond" in text, text  # the stuck plugin is named
    assert ctx.stores[0].status(ctx.key_for("r1", "stuck")) == "failed"


@pytest.mark.timeout(60)
def test_a_half_read_generator_kept_open_is_paused_not_timed_out(tmp_path: Path) -> None:
    """A notebook keeps ``chunks = ctx.iter_chunks(...)`` after reading one chunk: the run is
    paused (its threads wait, using no CPU), not hung, however long past ``timeout``. Read on,
    it gives the rest and saves everything; closed, every thread ends and nothing is failed."""
    _warm_up(tmp_path)
    ctx = sd.Context(
        str(tmp_path / "store"),
        plugins=tiny.PLUGINS,
        config={"n_chunks": 4},
        timeout=0.3,
        max_messages=1,
    )
    chunks = ctx.iter_chunks("r1", "fragile")
    first = next(chunks)
    time.sleep(1.5)  # five timeouts: nothing gives up meanwhile
    rest = list(chunks)
    assert [c.start for c in [first, *rest]] == [i * tiny.CHUNK_NS for i in range(4)]
    assert ctx.stores[0].status(ctx.key_for("r1", "fragile")) == "complete"

    kept = ctx.iter_chunks("r2", "fragile")
    next(kept)
    time.sleep(1.0)
    assert [t.name for t in threading.enumerate() if t.name.startswith("sd")] != []
    kept.close()  # what garbage collection of the generator also does
    assert [t.name for t in threading.enumerate() if t.name.startswith("sd")] == []
    for data_type in ("ticks", "doubled", "fragile"):
        assert ctx.stores[0].status(ctx.key_for("r2", data_type)) != "failed", data_type
