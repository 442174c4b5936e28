"""Two processes making the same data sets at once: one computes, the other waits and loads.

2 processes x 10 repetitions, started at the same instant on an empty store: each time there is
exactly one complete data set per data type (no second copy, no leftovers, no claims left),
both processes see identical data, and exactly one of them computed: the other's executed plan
only loads (it waited for the claims, then planned again).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rel_helpers import Launcher, launched, read_result

import strax_decl as sd
from strax_decl.testing import TOY_PLUGINS
from strax_storage import open_store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def launcher() -> Iterator[Launcher]:
    """A pre-imported process forking the runs of this module (see ``rel_launcher.py``)."""
    yield from launched()


RUN = "run_1"
TYPES = ["records", "peaks", "peak_basics", "big_peaks", "peak_extras"]
CONFIG = {"n_chunks": 40, "rows_per_chunk": 2000}
REPS = 10


def job(path: Path, result: Path, start_at: float, on_conflict: str = "wait") -> dict[str, Any]:
    return {
        "store": str(path),
        "rows_per_chunk": 5000,
        "config": CONFIG,
        "targets": TYPES,
        "result": str(result),
        "start_at": start_at,
        "digest": True,
        "on_conflict": on_conflict,
    }


def test_two_processes_racing_make_one_data_set_each_and_compute_once(
    launcher: Launcher, tmp_path: Path
) -> None:
    waited = 0
    for rep in range(REPS):
        path = tmp_path / f"store_{rep}"
        results = [tmp_path / f"r{rep}_{i}.json" for i in range(2)]
        start_at = time.time() + 0.3
        pids = [launcher.spawn(job(path, r, start_at)) for r in results]
        statuses = [launcher.reap(pid) for pid in pids]
        got = [read_result(r) for r in results]
        assert statuses == [0, 0], got
        assert got[0]["digest"] == got[1]["digest"]
        computed = sorted((g["computed"] for g in got), key=len)
        assert computed[0] == [], got  # the loser computed nothing...
        assert sorted(computed[1]) == sorted(TYPES), got  # ...the winner everything
        loser = got[0] if got[0]["computed"] == [] else got[1]
        waited += loser["waits"] > 0

        store = open_store(path)
        infos = store.list()
        assert sorted(i.key.data_type for i in infos) == sorted(TYPES)
        assert all(i.status == "complete" for i in infos)
        leftovers = [n for n in os.listdir(path / RUN) if n.startswith(".")]
        assert leftovers == [], leftovers  # no temporary dirs, no claims, no break locks
    print(f"\nrace: the loser waited for the winner in {waited} of {REPS} repetitions")
    # the race was real: most of the time the loser found the winner at work and waited
    assert waited >= REPS // 2, waited


def test_on_conflict_fail_names_the_data_set_and_the_holder(
    launcher: Launcher, tmp_path: Path
) -> None:
    path = tmp_path / "store"
    results = [tmp_path / f"r{i}.json" for i in range(2)]
    start_at = time.time() + 0.3
    pids = [launcher.spawn(job(path, r, start_at, on_conflict="fail")) for r in results]
    for pid in pids:
        launcher.reap(pid)
    got = sorted((read_result(r) for r in results), key=lambda g: g["ok"])
    if got[0]["ok"]:  # the second started after the first finished: nothing to conflict on
        pytest.skip("no overlap between the two runs on this machine")
    assert got[1]["ok"]
    assert got[0]["type"] == "ClaimHeld"
    assert "run_1/" in got[0]["error"] and "is being written by pid" in got[0]["error"]
    assert "on_conflict='fail'" in got[0]["error"]
    ctx = sd.Context(storage=open_store(path), plugins=TOY_PLUGINS, config=CONFIG)
    assert ctx.plan(RUN, TYPES).to_compute == []
