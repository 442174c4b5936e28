"""Plugins for the distributed tests, importable by Dask workers.

The tests' directory is on ``sys.path`` when the cluster's worker processes are spawned (pytest
puts it there; spawned processes inherit the parent's path), so workers import this module by
name, as they would an installed plugin package.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import numpy as np

import strax_decl as sd
from strax_decl.testing import Peaks, ToyRecords

__all__ = ["CountingPeaks", "RunCrashRecords"]


class RunCrashRecords(ToyRecords):
    """``ToyRecords`` whose ``crash_at_chunk`` applies only to the run ``crash_run``."""

    class Options(ToyRecords.Options):
        crash_run: str = sd.option("", track=False, description="the run that crashes")

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        if run_id != self.options.crash_run:
            self.options = self.options.model_copy(update={"crash_at_chunk": -1})
        yield from super().source(run_id)


class CountingPeaks(Peaks):
    """``Peaks`` that logs every run it computes to a file (and can be slowed down)."""

    class Options(Peaks.Options):
        count_file: str = sd.option("", track=False, description="append one line per run")
        step_delay_s: float = sd.option(0.0, ge=0, track=False, description="sleep per step")

    def setup(self) -> None:
        if self.options.count_file:
            with open(self.options.count_file, "a") as f:
                f.write(f"{self.run_id} {os.getpid()}\n")

    def compute(self, records: np.ndarray) -> np.ndarray:
        if self.options.step_delay_s:
            time.sleep(self.options.step_delay_s)
        return super().compute(records)
