"""Early stops are not failures, a failure keeps finished work, and no wait is unbounded.

- ``break`` out of ``iter_chunks`` and ``get_array(time_range=...)`` on a run not stored yet
  leave nothing ``failed`` (nor temporary directories) behind, 20 times in each executor;
  what is stored is complete and right, and the next request computes the rest.
- A failing downstream plugin (``keep_finished``, the default) leaves its upstream data types
  complete, and the rerun's plan loads them; ``keep_finished=False`` stops everything.
- The error names the plugin, run and chunk and keeps its type and traceback.
- A blocked ``parallel`` plugin with ``timeout=3`` ends ``get_array`` within a bound, naming
  the plugin; a claim blocked by a dead breaker's lock is waited for with a backoff.

Real threads, Zarr stores on ``tmp_path``, the tiny pipeline of ``tiny_pipeline.py``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import strax_decl as sd

sys.path.insert(0, str(Path(__file__).parent))
import tiny_pipeline as tiny

PROCESSORS = ["threaded", "serial"]
TYPES = ["ticks", "doubled", "fragile"]


def ctx_for(root: Path | None, processor: str = "threaded", **config: Any) -> sd.Context:
    settings: dict[str, Any] = {}
    if "keep_finished" in config:
        settings["keep_finished"] = config.pop("keep_finished")
    return sd.Context(
        storage=None if root is None else str(root),
        plugins=tiny.PLUGINS,
        config=config,
        processor=processor,  # type: ignore[arg-type]
        max_messages=1,
        **settings,
    )


def reference(data_type: str, **config: Any) -> np.ndarray:
    return ctx_for(None, "serial", **config).get_array("r1", data_type)


def pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("sd")]


def statuses(ctx: sd.Context) -> dict[str, str]:
    return {t: ctx.stores[0].status(ctx.key_for("r1", t)) for t in TYPES}


def assert_nothing_failed(root: Path, ctx: sd.Context) -> None:
    listed = {(i.data_type, i.status) for i in ctx.stores[0].list()}
    assert not [entry for entry in listed if entry[1] != "complete"], listed
    leftovers = [p.name for p in (root / "r1").glob(".*")] if (root / "r1").exists() else []
    assert leftovers == [], leftovers  # no temporary directory, claim or break lock
    for data_type, status in statuses(ctx).items():
        if status == "complete":
            key = ctx.key_for("r1", data_type)
            np.testing.assert_array_equal(ctx.stores[0].load_array(key), reference(data_type))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("processor", PROCESSORS)
def test_break_out_of_iter_chunks_leaves_nothing_failed(tmp_path: Path, processor: str) -> None:
    for i in range(20):
        root = tmp_path / f"s{i}"
        ctx = ctx_for(root, processor)
        for chunk in ctx.iter_chunks("r1", "fragile"):
            assert len(chunk) == 5
            break
        assert pipeline_threads() == []
        assert_nothing_failed(root, ctx)
    np.testing.assert_array_equal(ctx.get_array("r1", "fragile"), reference("fragile"))
    assert set(statuses(ctx).values()) == {"complete"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("processor", PROCESSORS)
def test_time_range_on_an_unstored_run_saves_nothing_partial(
    tmp_path: Path, processor: str
) -> None:
    whole = reference("fragile")
    t0, t1 = 1000, 3000
    inside = whole[(whole["time"] >= t0) & (whole["endtime"] <= t1)]
    for i in range(20):
        root = tmp_path / f"s{i}"
        ctx = ctx_for(root, processor)
        np.testing.assert_array_equal(ctx.get_array("r1", "fragile", time_range=(t0, t1)), inside)
        assert pipeline_threads() == []
        assert_nothing_failed(root, ctx)
    # The next request without a range computes (only) what is not complete, and is right.
    np.testing.assert_array_equal(ctx.get_array("r1", "fragile"), whole)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("processor", PROCESSORS)
def test_a_failing_downstream_plugin_keeps_the_finished_upstream(
    tmp_path: Path, processor: str
) -> None:
    ctx = ctx_for(tmp_path, processor, fragile_fail_at=2 * tiny.CHUNK_NS)
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="bad value at 2000") as info:
        ctx.make("r1", "fragile")
    assert time.monotonic() - t0 < 10
    assert pipeline_threads() == []
    # Plain language first: plugin, run, chunk; type and traceback are the original ones.
    assert "plugin Fragile failed on run r1, chunk [2000, 3000)" in info.value.__notes__
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "compute" in frames, frames
    assert "MailboxKilled" not in "".join(traceback.format_exception(info.value))
    assert statuses(ctx) == {"ticks": "complete", "doubled": "complete", "fragile": "failed"}
    recorded = ctx.stores[0].info(ctx.key_for("r1", "fragile")).exception or ""
    assert "ValueError: bad value at 2000" in recorded and "MailboxKilled" not in recorded
    fixed = ctx_for(tmp_path, processor)
    plan = fixed.plan("r1", "fragile")
    assert plan.to_load == ["doubled"] and plan.to_compute == ["fragile"], plan
    np.testing.assert_array_equal(fixed.get_array("r1", "fragile"), reference("fragile"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("processor", PROCESSORS)
def test_keep_finished_false_stops_everything_at_the_failure(
    tmp_path: Path, processor: str
) -> None:
    ctx = ctx_for(tmp_path, processor, fragile_fail_at=0, keep_finished=False)
    assert ctx.keep_finished is False and ctx.settings()["keep_finished"] is False
    with pytest.raises(ValueError):
        ctx.make("r1", "fragile", save=["ticks"])
    assert pipeline_threads() == []
    assert statuses(ctx)["fragile"] == "failed"
    assert "complete" not in (statuses(ctx)["ticks"], statuses(ctx)["doubled"])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("processor", PROCESSORS)
def test_get_array_failure_also_keeps_upstream_and_names_the_chunk(
    tmp_path: Path, processor: str
) -> None:
    ctx = ctx_for(tmp_path, processor, fragile_fail_at=5 * tiny.CHUNK_NS)
    with pytest.raises(ValueError) as info:
        ctx.get_array("r1", "fragile")
    assert info.value.__notes__ == ["plugin Fragile failed on run r1, chunk [5000, 6000)"]
    assert statuses(ctx)["doubled"] == "complete"


@pytest.mark.timeout(40)
def test_a_blocked_parallel_plugin_with_a_timeout_does_not_hang(tmp_path: Path) -> None:
    ctx = sd.Context(str(tmp_path), plugins=[tiny.Ticks, tiny.Blocking], timeout=3)
    tiny.BLOCK.clear()
    t0 = time.monotonic()
    try:
        with pytest.raises(sd.StraxDeclError) as info:
            ctx.get_array("r1", "blocked")
        elapsed = time.monotonic() - t0
    finally:
        tiny.BLOCK.set()  # release the pool threads for the next tests
    assert elapsed < 15, elapsed
    text = "".join(traceback.format_exception(info.value))
    assert "Blocking" in text and "still running" in text, text
    assert [t for t in pipeline_threads() if not t.startswith("sd-compute")] == []
    assert ctx.stores[0].status(ctx.key_for("r1", "blocked")) == "failed"


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_dead_breakers_lock_is_waited_out_with_a_backoff(tmp_path: Path) -> None:
    """A process died holding a claim and the lock to break it: make waits (not 1000 spins)
    until the lock is stale, then computes."""
    ctx = ctx_for(tmp_path)
    key = ctx.key_for("r1", "ticks")
    dead = {"host": "nowhere-host", "pid": 2**22 + 7, "started": 1.0, "created": time.time()}
    folder = tmp_path / "r1"
    folder.mkdir(parents=True)
    claim = folder / f".claim-{key.dirname}"
    claim.write_text(json.dumps({**dead, "stale_after": 0.1}, sort_keys=True))
    (folder / f".claim-{key.dirname}.break").write_text(json.dumps(dead, sort_keys=True))
    t0 = time.monotonic()
    ctx.make("r1", "ticks")
    assert time.monotonic() - t0 < 40
    assert ctx.is_stored("r1", "ticks")
