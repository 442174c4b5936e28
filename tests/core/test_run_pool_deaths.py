"""A worker process that dies (``os._exit``) while several runs are got or made in worker
processes (``strax_decl/context/run_pool.py``): the healthy runs complete, the dying run
alone fails, named. Real worker processes, real stores on ``tmp_path``; ``die_run`` of
``pool_plugins.py`` must only be used where runs go to workers (it ends the process).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

import strax_decl as sd
from strax_decl.context import run_pool
from strax_decl.context.run_pool import WorkerDied

sys.path.insert(0, str(Path(__file__).parent))
import pool_plugins

FAST = {"n_chunks": 3, "rows": 5}


def pool_ctx(root: Path, **config: Any) -> sd.Context:
    return sd.Context(str(root), plugins=pool_plugins.PLUGINS, config={**FAST, **config})


def test_a_dying_worker_fails_its_run_only(tmp_path: Path) -> None:
    ctx = pool_ctx(tmp_path, die_run="b", tick_delay_s=0.02)
    runs = ["a", "b", "c"]
    with pytest.warns(UserWarning, match=r"left out 1 of 3 runs \(b: WorkerDied") as record:
        rows = ctx.get_array(runs, "pids", ignore_errors=True)
    assert list(dict.fromkeys(rows["run_id"])) == ["a", "c"] and len(rows) == 2 * 3 * 5
    said = "\n".join(str(w.message) for w in record)
    assert re.search(r"run 'b' died \(exit code -?\d+\)", said)  # 3, or 255 if the fork
    # server's report of it was read by the pool's own thread first
    assert "'a'" not in said and "'c'" not in said
    with pytest.raises(WorkerDied, match=r"worker process for run 'b' died \(exit code") as info:
        ctx.new_context(config={"tick_delay_s": 0.0}).get_array(runs, "pids")
    assert "of run 'b'" in "\n".join(info.value.__notes__)


def test_make_with_a_dying_worker_gives_each_run_its_own_failure(tmp_path: Path) -> None:
    ctx = pool_ctx(tmp_path, die_run="b")
    result = ctx.make(["a", "b", "c", "d"], "pids")
    assert result.succeeded == ["a", "c", "d"] and list(result.failed) == ["b"]
    assert "worker process for run 'b' died (exit code" in result.failed["b"]
    assert all(ctx.is_stored(r, "pids") for r in ("a", "c", "d"))


def test_exceptions_of_two_dying_runs_are_distinct(tmp_path: Path) -> None:
    ctx = pool_ctx(tmp_path, die_run="a,c")
    got = run_pool.get_runs(ctx, ["a", "b", "c"], ["pids"], {}, stop_at_failure=False)
    assert len(got["b"]) == 3 * 5
    a, c = got["a"], got["c"]
    assert isinstance(a, WorkerDied) and isinstance(c, WorkerDied) and a is not c
    assert "run 'a' died" in str(a) and "run 'c' died" in str(c)
    assert len(a.__notes__) == 1 and len(c.__notes__) == 1  # its own worker's pid only
    with pytest.warns(UserWarning, match=r"left out 2 of 3 runs \(a: WorkerDied.*; c: Worker"):
        rows = ctx.get_array(["a", "b", "c"], "pids", ignore_errors=True)
    assert set(rows["run_id"]) == {"b"}


def test_a_run_asked_twice_gives_its_rows_once(tmp_path: Path) -> None:
    ctx = pool_ctx(tmp_path)
    rows = ctx.get_array(["a", "b", "a"], "pids")
    assert list(dict.fromkeys(rows["run_id"])) == ["a", "b"] and len(rows) == 2 * 3 * 5
    assert list(ctx.make(["a", "b", "a"], "pids").outcomes) == ["a", "b"]
