"""The plugin runner: the step machinery lives off ``Plugin``, so user names cannot shadow it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.runner import OverlapWindowRunner, PluginRunner, runner_for
from strax_decl.testing import TOY_PLUGINS, Peak, Peaks, Record, ToyRecords


class PeaksWithUnluckyNames(sd.Plugin):
    """``Peaks`` whose author happened to pick the names the framework once used."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        records: Record

    class Outputs(sd.Outputs):
        peaks: Peak

    class Options(sd.Options):
        group: int = sd.option(5, ge=1, description="records per peak")

    kinds = "not a list of kinds"

    def steps(self, *args: Any) -> Any:
        raise AssertionError("a user method called steps must not be called by the framework")

    def iterate(self, *args: Any) -> Any:
        raise AssertionError("a user method called iterate must not be called by the framework")

    def merge_by_kind(self, *args: Any) -> Any:
        raise AssertionError("a user method called merge_by_kind must not be called")

    def compute_step(self, *args: Any) -> Any:
        raise AssertionError("a user method called compute_step must not be called")

    def to_output_chunks(self, *args: Any) -> Any:
        raise AssertionError("a user method called to_output_chunks must not be called")

    def compute(self, records: np.ndarray) -> np.ndarray:
        return Peaks.compute(self, records)  # type: ignore[arg-type]


@pytest.mark.parametrize("processor", ["serial", "threaded"])
def test_user_methods_named_like_the_machinery_replace_nothing(processor: Any) -> None:
    config = {"n_chunks": 3}
    ctx = sd.Context(
        storage=None,
        plugins=[ToyRecords, PeaksWithUnluckyNames],
        config=config,
        processor=processor,
    )
    reference = sd.Context(storage=None, plugins=TOY_PLUGINS, config=config)
    np.testing.assert_array_equal(ctx.get_array("r", "peaks"), reference.get_array("r", "peaks"))


def test_plugin_namespace_holds_no_step_machinery() -> None:
    for name in ("iterate", "steps", "merge_by_kind", "compute_step", "compute_down", "kinds"):
        assert not hasattr(sd.Plugin, name), name
    for kind in (sd.OverlapWindowPlugin, sd.LoopPlugin, sd.CutPlugin, sd.MergeOnlyPlugin):
        assert not hasattr(kind, "iterate"), kind


class Near(sd.OverlapWindowPlugin):
    window = 100

    class Inputs(sd.Inputs):
        records: Record

    class Outputs(sd.Outputs):
        near: Peak

    def compute(self, records: np.ndarray) -> np.ndarray:
        return Peak.zeros(0)


def test_each_kind_gets_its_runner() -> None:
    options = ToyRecords.Options()
    assert type(runner_for(ToyRecords(options, "r"))) is PluginRunner
    near = Near(Near.Options(), "r", {"records": "records"})
    runner = runner_for(near)
    assert type(runner) is OverlapWindowRunner and runner.plugin is near
    assert runner.kinds == ["records"]


def test_a_runner_checks_outputs_naming_the_plugin() -> None:
    runner = runner_for(Peaks(Peaks.Options(), "r", {"records": "records"}))
    with pytest.raises(sd.PluginGaveWrongOutput, match="plugin Peaks, output 'peaks': rows"):
        runner.to_output_chunks(np.zeros(3, dtype=[("time", "i8")]), 0, 10)
    with pytest.raises(sd.PluginGaveWrongOutput, match="plugin Peaks returned outputs"):
        runner.to_output_chunks({"other": Peak.zeros(0)}, 0, 10)


def test_source_iteration_reports_to_the_runner_report() -> None:
    seen: list[tuple[str, int]] = []

    class Report:
        def on_chunk(self, component: str, seconds: float, chunks: Any) -> None:
            seen.append((component, sum(len(c) for c in chunks)))

    source = ToyRecords(ToyRecords.Options(n_chunks=2, rows_per_chunk=3), "r")
    chunks: Iterator[Any] = runner_for(source, Report()).iterate({})
    assert [len(c["records"]) for c in chunks] == [3, 3]
    assert seen == [("ToyRecords", 3), ("ToyRecords", 3)]
