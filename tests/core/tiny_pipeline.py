"""A tiny pipeline for the stopping tests (interrupts, early stops, keep_finished, hangs).

    ticks --(Doubler)--> doubled --(Fragile)--> fragile

``ticks`` is a source of ``n_chunks`` chunks of ``rows`` rows, optionally sleeping
``tick_delay_s`` per chunk and printing ``READY`` (flushed) once ``ready_at`` chunks were
made (so a parent process knows when to send its signal). ``Fragile`` raises ValueError in
the step starting at ``fragile_fail_at`` (-1: never) or raises KeyboardInterrupt there with
``fragile_interrupt``. Importable by file path (``--plugins``) and as a module.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import numpy as np

import strax_decl as sd

CHUNK_NS = 1000
BLOCK = threading.Event()
"""Set to release a ``Blocking`` plugin's computations (tests set it when done)."""
RELEASE = threading.Event()
"""What a test's stuck plugin call waits for; fixture ``release_stuck_calls`` (conftest) sets
it at the end of the test, so the call returns and its thread ends."""


class Tick(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    value: sd.f64


class Ticks(sd.Plugin):
    class Outputs(sd.Outputs):
        ticks: Tick = sd.output(description="ticks")

    class Options(sd.Options):
        n_chunks: int = sd.option(10, description="chunks in the run")
        rows: int = sd.option(5, description="rows per chunk")
        tick_delay_s: float = sd.option(0.0, description="seconds of sleep per chunk", track=False)
        ready_at: int = sd.option(-1, description="print READY after this many chunks", track=False)

    def source(self, run_id: str) -> Any:
        o = self.options
        step = CHUNK_NS // o.rows
        for i in range(o.n_chunks):
            if o.tick_delay_s:
                time.sleep(o.tick_delay_s)
            start = i * CHUNK_NS
            rows = Tick.zeros(o.rows)
            rows["time"] = start + np.arange(o.rows) * step
            rows["endtime"] = rows["time"] + step // 2
            rows["value"] = rows["time"] * 0.5
            yield sd.Chunk(start, start + CHUNK_NS, rows)
            if i + 1 == o.ready_at:
                print("READY", flush=True)
                sys.stdout.flush()

    def run_end(self, run_id: str) -> int:
        return int(self.options.n_chunks * CHUNK_NS)


class Doubler(sd.Plugin):
    class Inputs(sd.Inputs):
        ticks: Tick

    class Outputs(sd.Outputs):
        doubled: Tick = sd.output(description="doubled ticks")

    def compute(self, ticks: np.ndarray) -> np.ndarray:
        out = ticks.copy()
        out["value"] *= 2
        return out


class Fragile(sd.Plugin):
    class Inputs(sd.Inputs):
        doubled: Tick

    class Outputs(sd.Outputs):
        fragile: Tick = sd.output(description="a plugin with a bug")

    class Options(sd.Options):
        fragile_fail_at: int = sd.option(
            -1, description="raise ValueError in the step starting here"
        )
        fragile_interrupt: bool = sd.option(False, description="raise KeyboardInterrupt instead")

    def compute(self, doubled: np.ndarray, start: int, end: int) -> np.ndarray:
        o = self.options
        if 0 <= o.fragile_fail_at <= start:
            if o.fragile_interrupt:
                raise KeyboardInterrupt("Ctrl-C in a plugin")
            raise ValueError(f"bad value at {start}")
        return doubled.copy()


class Blocking(sd.Plugin):
    """A parallel plugin whose computations block until ``BLOCK`` is set."""

    parallel = True

    class Inputs(sd.Inputs):
        ticks: Tick

    class Outputs(sd.Outputs):
        blocked: Tick = sd.output(description="never computed in time")

    def compute(self, ticks: np.ndarray) -> np.ndarray:
        BLOCK.wait(30)
        return ticks.copy()


PLUGINS = [Ticks, Doubler, Fragile]
