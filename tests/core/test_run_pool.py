"""Several runs at once in worker processes (``strax_decl/context/run_pool.py``).

Real worker processes (the project's fork server), real Zarr stores on ``tmp_path``; the
plugins of ``pool_plugins.py`` record which process computed each row and how often a
run's source ran. Ctrl-C is a real SIGINT sent to a real subprocess.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.context.run_pool import RunInWorkerFailed, WorkerTraceback

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import pool_plugins  # noqa: E402

FAST = {"n_chunks": 4, "rows": 5}


def pool_ctx(root: Path, **config: Any) -> sd.Context:
    return sd.Context(str(root), plugins=pool_plugins.PLUGINS, config={**FAST, **config})


def test_runs_are_got_in_worker_processes_in_the_order_asked(tmp_path: Path) -> None:
    ctx = pool_ctx(tmp_path / "pool", tick_delay_s=0.05)
    runs = ["d", "a", "c", "b"]
    rows = ctx.get_array(runs, "pids")
    assert list(dict.fromkeys(rows["run_id"])) == runs
    assert os.getpid() not in set(rows["pid"].tolist())  # computed elsewhere
    assert all(ctx.is_stored(r, "pids") for r in runs)  # into the shared store
    serial = pool_ctx(tmp_path / "serial", tick_delay_s=0.05).new_context(max_workers=1)
    here = serial.get_array(runs, "pids")
    assert set(here["pid"].tolist()) == {os.getpid()}
    for name in ("time", "endtime", "run_id"):
        np.testing.assert_array_equal(rows[name], here[name])
    # the columns asked, and a load of what the workers stored gives the same rows
    only = ctx.get_array(runs, "pids", keep_columns=["run_id", "time"], selection="time > 1000")
    assert only.dtype.names == ("time", "run_id") and (only["time"] > 1000).all()
    np.testing.assert_array_equal(ctx.new_context(max_workers=1).get_array(runs, "pids"), rows)


def test_make_of_several_runs_in_worker_processes(tmp_path: Path) -> None:
    ctx = pool_ctx(tmp_path)
    result = ctx.make(["a", "b", "c"], "pids")
    assert result.ok and list(result.outcomes) == ["a", "b", "c"]
    assert all(o.stats for o in result.outcomes.values())  # each run's statistics came back
    assert os.getpid() not in set(ctx.get_array(["a", "b", "c"], "pids")["pid"].tolist())


def test_a_failing_run_is_named_with_the_workers_traceback(tmp_path: Path) -> None:
    ctx = pool_ctx(tmp_path, fail_run="b", tick_delay_s=0.02)
    with pytest.raises(ValueError, match="no ticks for run b") as info:
        ctx.get_array(["a", "b", "c"], "pids")
    notes = "\n".join(info.value.__notes__)
    assert "of run 'b'" in notes and "in worker process" in notes
    cause = info.value.__cause__
    assert isinstance(cause, WorkerTraceback) and "in source" in str(cause)
    with pytest.warns(UserWarning, match=r"left out 1 of 3 runs \(b: ValueError: no ticks"):
        rows = ctx.get_array(["a", "b", "c"], "pids", ignore_errors=True)
    assert list(dict.fromkeys(rows["run_id"])) == ["a", "c"]
    result = ctx.make(["a", "b", "c"], "pids")
    assert result.succeeded == ["a", "c"] and "ValueError: no ticks for run b" in result.failed["b"]
    assert "in source" in (result.outcomes["b"].traceback or "")


def test_an_exception_that_cannot_travel_comes_back_as_its_text(tmp_path: Path) -> None:
    ctx = pool_ctx(tmp_path, unpicklable_run="b")
    with pytest.raises(RunInWorkerFailed, match="TwoArgError: ticks: cannot make run b") as info:
        ctx.get_array(["a", "b"], "pids")
    assert "TwoArgError" in str(info.value.__cause__)


def test_two_runs_needing_one_data_set_compute_it_once(tmp_path: Path) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()
    ctx = pool_ctx(tmp_path / "store", count_dir=str(counts), tick_delay_s=0.05)
    ctx.define_run("_both", ["a", "b"])
    assert ctx.make(["_both", "a"], "pids").ok  # "a" is needed by both: claimed once
    assert sorted(p.name.split("-")[0] for p in counts.iterdir()) == ["a", "b"]
    assert ctx.is_stored("a", "pids") and ctx.is_stored("b", "pids")


def test_one_after_another_where_processes_cannot_help(tmp_path: Path) -> None:
    class LocalPids(pool_plugins.Pids):  # defined in a function: no other process finds it
        pass

    ctx = sd.Context(str(tmp_path), plugins=[pool_plugins.CountedTicks, LocalPids], config=FAST)
    with pytest.warns(UserWarning, match="LocalPids is defined inside a function.*one after"):
        rows = ctx.get_array(["a", "b"], "pids")
    assert set(rows["pid"].tolist()) == {os.getpid()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # silently here: nothing to gain or nowhere to share
        for quiet in (
            pool_ctx(tmp_path / "one").new_context(max_workers=1),
            sd.Context("memory://", plugins=pool_plugins.PLUGINS, config=FAST),
        ):
            got = quiet.get_array(["a", "b"], "pids")
            assert set(got["pid"].tolist()) == {os.getpid()}
    with pytest.warns(UserWarning, match="arguments cannot be sent"):
        pool_ctx(tmp_path / "lambda").get_array(
            ["a", "b"], "pids", selection=lambda rows: rows["pid"] > 0
        )


CHILD = """
import json, multiprocessing, signal, sys, time
from pathlib import Path
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {here!r})
import pool_plugins
import strax_decl as sd

if __name__ == "__main__":
    ctx = sd.Context({root!r}, plugins=pool_plugins.PLUGINS, config={config!r})
    try:
        ctx.get_array(["a", "b", "c"], "pids")
    except KeyboardInterrupt:
        left = [p.pid for p in multiprocessing.active_children()]
        print("INTERRUPTED " + json.dumps(left), flush=True)
        sys.exit(130)
    print("FINISHED", flush=True)
"""


def ended(pid: int) -> bool:
    """The process is gone (or a zombie: it has ended, nobody collected it yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def test_ctrl_c_ends_every_worker_process(tmp_path: Path) -> None:
    root = tmp_path / "store"
    config = {"n_chunks": 200, "rows": 5, "tick_delay_s": 0.05, "announce": True}
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(here=str(HERE), root=str(root), config=config))
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    workers: list[int] = []
    deadline = time.monotonic() + 60
    while len(workers) < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("WORKER "):
            workers.append(int(line.split()[1]))
        elif not line and proc.poll() is not None:
            break
    assert len(workers) == 2, proc.communicate()
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "INTERRUPTED []" in out  # no worker left when the interrupt reached the caller
    assert time.monotonic() - sent < 15
    give_up = time.monotonic() + 10
    while not all(ended(pid) for pid in workers) and time.monotonic() < give_up:
        time.sleep(0.1)
    assert all(ended(pid) for pid in workers), workers
    assert not list(root.glob("*/.claim-*"))  # the interrupted runs left no claim
    rerun = pool_ctx(root, n_chunks=200)  # and a rerun is correct
    assert len(rerun.get_array(["a", "b", "c"], "pids")) == 3 * 200 * 5
