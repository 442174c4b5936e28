"""The executor registry and the run hooks: one way to run a graph, observed from outside."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.chunk import Chunk
from strax_decl.engine.executors import EXECUTORS, execute
from strax_decl.engine.graph import Graph, build_graph
from strax_decl.engine.hooks import Hook
from strax_decl.engine.mailbox import Mailbox
from strax_decl.engine.threaded import ProcessingStopped
from strax_decl.plugin import Plugin
from strax_decl.stats import RunStats
from strax_decl.testing import FLAKY_PLUGINS, TOY_PLUGINS, FailedOnPurpose, ToyRecords

pytestmark = pytest.mark.timeout(60)


class Recorder(Hook):
    def __init__(self) -> None:
        self.events: list[str] = []
        self.plugins: dict[str, Plugin] = {}
        self.mailboxes: dict[str, Mailbox] = {}
        self.error: BaseException | None = None

    def on_start(self, graph: Graph, mailboxes: Mapping[str, Mailbox]) -> None:
        self.events.append("start")
        self.mailboxes = dict(mailboxes)

    def on_plugin(self, component: str, plugin: Plugin) -> None:
        self.events.append(f"plugin {component}")
        self.plugins[component] = plugin

    def on_chunk(self, component: str, seconds: float, chunks: Sequence[Chunk]) -> None:
        self.events.append(f"chunk {component}")

    def on_end(self, error: BaseException | None) -> None:
        self.events.append("end")
        self.error = error


def graph_of(ctx: sd.Context, target: str, output: bool = True) -> Graph:
    plan = ctx.plan("r", target)
    return build_graph(plan, ctx.registry, ctx.options, ctx.stores, target if output else None)


def test_unknown_processor_names_the_known_ones() -> None:
    ctx = sd.Context(storage=None, plugins=TOY_PLUGINS)
    with pytest.raises(ValueError, match="'threaded', 'serial'"):
        execute(graph_of(ctx, "peaks"), "dask")
    assert set(EXECUTORS) == {"threaded", "serial"}


@pytest.mark.parametrize("processor", sorted(EXECUTORS))
def test_hooks_see_the_run_from_start_to_end(processor: str) -> None:
    ctx = sd.Context(storage=None, plugins=TOY_PLUGINS, config={"n_chunks": 3})
    recorder, stats = Recorder(), RunStats()
    graph = graph_of(ctx, "peaks")
    chunks = list(execute(graph, processor, hooks=[recorder, stats]))
    assert sum(map(len, chunks)) == 3 * 20  # Peaks' output chunks need not match its input's
    events = recorder.events
    assert events[0] == "start" and events[-1] == "end" and recorder.error is None
    assert events.count("chunk ToyRecords") == 3 and events.count("chunk Peaks") == 3
    # each plugin instance is announced once, before its first chunk
    for name in ("ToyRecords", "Peaks"):
        assert events.count(f"plugin {name}") == 1
        assert events.index(f"plugin {name}") < events.index(f"chunk {name}")
    assert isinstance(recorder.plugins["ToyRecords"], ToyRecords)
    assert set(recorder.mailboxes) == (set() if processor == "serial" else {"records", "peaks"})
    assert stats.components["Peaks"].chunks == 3
    # the graph keeps no run state: it runs again, alike
    again = list(execute(graph, processor))
    np.testing.assert_array_equal(
        np.concatenate([c.data for c in again]), np.concatenate([c.data for c in chunks])
    )


@pytest.mark.parametrize("processor", sorted(EXECUTORS))
def test_on_end_hears_the_error_and_an_early_stop(tmp_path: Path, processor: str) -> None:
    ctx = sd.Context(storage=str(tmp_path), plugins=FLAKY_PLUGINS, config={"peaks_fail_at": 500})
    recorder = Recorder()
    with pytest.raises(FailedOnPurpose):
        list(execute(graph_of(ctx, "peaks"), processor, hooks=[recorder]))
    assert isinstance(recorder.error, FailedOnPurpose) and recorder.events[-1] == "end"

    ctx = sd.Context(storage=str(tmp_path / "b"), plugins=TOY_PLUGINS)
    recorder = Recorder()
    chunks = execute(graph_of(ctx, "peaks"), processor, hooks=[recorder])
    next(chunks)
    chunks.close()  # type: ignore[attr-defined]  # a generator: stopping early
    assert isinstance(recorder.error, ProcessingStopped) and recorder.events[-1] == "end"


class BrokenAtEnd(Hook):
    def on_end(self, error: BaseException | None) -> None:
        raise RuntimeError("a broken hook")


def test_a_hook_failing_at_the_end_neither_hides_nor_stops_anything(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx = sd.Context(storage=None, plugins=TOY_PLUGINS, config={"n_chunks": 2})
    recorder = Recorder()
    chunks = list(execute(graph_of(ctx, "peaks"), hooks=[BrokenAtEnd(), recorder]))
    assert sum(map(len, chunks)) == 2 * 20
    assert recorder.events[-1] == "end"
    assert "a broken hook" in caplog.text


class CountedRecords(ToyRecords):
    created: list[Any] = []

    def setup(self) -> None:
        CountedRecords.created.append(self)

    def run_end(self, run_id: str) -> int:
        return self.options.n_chunks * (self.options.rows_per_chunk * 100 + 1000)


def test_the_progress_bar_asks_the_run_s_own_source_instance(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ctx = sd.Context(storage=None, plugins=[CountedRecords, *TOY_PLUGINS[1:]])
    CountedRecords.created.clear()
    assert len(ctx.get_array("r", "records", progress=True)) == 400
    assert len(CountedRecords.created) == 1  # no extra instance to ask run_end
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("r records 100% |")
