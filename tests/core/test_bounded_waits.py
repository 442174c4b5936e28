"""Every wait after a stop ends when the work ends, or within the context's ``timeout``
(not a fixed 60 s), and its error names what it waited for.

Each case once stalled: a source stuck in its own call after a failure was joined for 60 s
whatever the ``timeout`` (or, pruned by ``keep_finished``, for ever); a stuck computation in
a process pool was waited for 60 s; one in a thread pool held up the interpreter's exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import strax_decl as sd

HERE = Path(__file__).parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
import tiny_pipeline as tiny  # noqa: E402

pytestmark = pytest.mark.usefixtures("release_stuck_calls")


class StuckSource(tiny.Ticks):
    """Yields two chunks, then waits (for data that never comes) in its own call."""

    def source(self, run_id: str) -> Any:
        for i, chunk in enumerate(super().source(run_id)):
            if i == 2:
                tiny.RELEASE.wait(60)
            yield chunk


class FailsAtSecond(sd.Plugin):
    class Inputs(sd.Inputs):
        ticks: tiny.Tick

    class Outputs(sd.Outputs):
        broken: tiny.Tick = sd.output(description="fails at its second step")

    def compute(self, ticks: np.ndarray, start: int, end: int) -> np.ndarray:
        if start >= tiny.CHUNK_NS:
            raise ValueError(f"bad value at {start}")
        return ticks.copy()


class StuckInAProcess(sd.Plugin):
    parallel = "process"

    class Inputs(sd.Inputs):
        ticks: tiny.Tick

    class Outputs(sd.Outputs):
        slow: tiny.Tick = sd.output(description="a computation that never returns")

    def compute(self, ticks: np.ndarray) -> np.ndarray:
        time.sleep(600)
        return ticks.copy()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("keep_finished", [False, True])
def test_a_source_stuck_in_its_call_after_a_failure_is_waited_for_only_the_timeout(
    tmp_path: Path, keep_finished: bool
) -> None:
    ctx = sd.Context(
        str(tmp_path),
        plugins=[StuckSource, FailsAtSecond],
        timeout=1.0,
        keep_finished=keep_finished,
    )
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="bad value") as info:
        ctx.get_array("r1", "broken")
    elapsed = time.monotonic() - t0
    assert elapsed < 10, elapsed  # was 60 s (keep_finished=False) or for ever (True)
    text = "".join(traceback.format_exception(info.value))
    assert "plugin FailsAtSecond failed on run r1, chunk [1000, 2000)" in text
    if "told to stop" in text:  # the source was stuck past the bound: reported by name
        assert "sd:StuckSource" in text and "the context's timeout" in text, text


@pytest.mark.timeout(30)
def test_a_stuck_computation_in_a_process_pool_is_ended_at_once_after_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRAX_DECL_START_METHOD", "fork")  # the plugins live in this module
    ctx = sd.Context(
        str(tmp_path),
        plugins=[tiny.Ticks, StuckInAProcess, FailsAtSecond],
        keep_finished=False,
    )
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="bad value"):
        ctx.make("r1", ["slow", "broken"])  # no timeout: nothing to wait 60 s for
    assert time.monotonic() - t0 < 15
    key = ctx.key_for("r1", "slow")
    assert ctx.stores[0].status(key) == "failed"


STUCK_THREAD = """
import sys, threading, time
sys.path.insert(0, {here!r})
import numpy as np
import tiny_pipeline as tiny
import strax_decl as sd

NEVER = threading.Event()

class Stuck(sd.Plugin):
    parallel = True
    class Inputs(sd.Inputs):
        ticks: tiny.Tick
    class Outputs(sd.Outputs):
        stuck: tiny.Tick = sd.output(description="never returns")
    def compute(self, ticks):
        NEVER.wait()
        return ticks.copy()

ctx = sd.Context(None, plugins=[tiny.Ticks, Stuck], timeout=1.0)
try:
    ctx.get_array("r1", "stuck")
except Exception as e:
    print("FAILED", type(e).__name__, flush=True)
"""


@pytest.mark.timeout(60)
def test_a_computation_that_never_returns_does_not_hold_up_the_interpreter_exit() -> None:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", STUCK_THREAD.format(here=str(HERE))],
        capture_output=True,
        text=True,
        timeout=45,  # before: the exit waited for the computation, for ever
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert time.monotonic() - t0 < 35, proc
    assert proc.returncode == 0, proc
    assert "FAILED MailboxTimeout" in proc.stdout or "FAILED PipelineStuck" in proc.stdout, proc
