"""Plugins for the worker-process tests (``test_run_pool.py``), importable by name there.

``pids`` records the process that computed each row; ``CountedTicks`` leaves a file per
source call in ``count_dir`` (how often a run's ticks were computed, in any process) and
can fail for one run (``fail_run``, ``unpicklable_run``), end its worker process abruptly
for some runs (``die_run``, comma-separated: ``os._exit(3)``) or print ``WORKER <pid>`` when it
starts (``announce``), for a parent that sends Ctrl-C.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import tiny_pipeline as tiny

import strax_decl as sd


class Pid(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    pid: sd.i64


class TwoArgError(Exception):
    """An exception that does not survive pickling (its ``__init__`` needs two arguments)."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")


class CountedTicks(tiny.Ticks):
    class Options(tiny.Ticks.Options):
        count_dir: str = sd.option("", description="a file per source call here", track=False)
        fail_run: str = sd.option("", description="the source fails for this run", track=False)
        unpicklable_run: str = sd.option("", description="fails unpicklably", track=False)
        die_run: str = sd.option("", description="os._exit(3) for these runs", track=False)
        announce: bool = sd.option(False, description="print WORKER <pid>", track=False)

    def source(self, run_id: str) -> Any:
        o = self.options
        if o.count_dir:
            Path(o.count_dir, f"{run_id}-{os.getpid()}-{uuid.uuid4().hex[:6]}").touch()
        if o.announce:  # one write (atomic on a pipe): two workers' lines never interleave
            os.write(sys.stdout.fileno(), f"WORKER {os.getpid()}\n".encode())
        if run_id == o.fail_run:
            raise ValueError(f"no ticks for run {run_id}")
        if run_id in o.die_run.split(","):
            os._exit(3)
        if run_id == o.unpicklable_run:
            raise TwoArgError("ticks", f"cannot make run {run_id}")
        yield from super().source(run_id)


class Pids(sd.Plugin):
    class Inputs(sd.Inputs):
        ticks: tiny.Tick

    class Outputs(sd.Outputs):
        pids: Pid = sd.output(description="the process that computed each row")

    def compute(self, ticks: np.ndarray) -> np.ndarray:
        out = Pid.zeros(len(ticks))
        out["time"], out["endtime"], out["pid"] = ticks["time"], ticks["endtime"], os.getpid()
        return out


PLUGINS = [CountedTicks, Pids]
