"""Every chunk law broken by a plugin is reported with the plugin's name and the bad row.

The laws (DESIGN.md): rows have positive duration, are sorted by time and lie inside their
chunk; consecutive chunks touch. Each test makes one plugin break one law, under both
processors, and checks the message a user would read.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import strax_decl as sd


class Tick(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    value: sd.f32


def ticks(intervals: list[tuple[int, int]]) -> np.ndarray:
    rows = Tick.zeros(len(intervals))
    for i, (t, e) in enumerate(intervals):
        rows[i] = (t, e, i)
    return rows


class Ticks(sd.Plugin):
    """Three chunks of three 10 ns rows; ``source_fault`` breaks one law in chunk 1."""

    class Outputs(sd.Outputs):
        ticks: Tick

    class Options(sd.Options):
        source_fault: str = sd.option("none", description="law to break (tests)")

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        for i in range(3):
            start, end = 100 * i, 100 * (i + 1)
            intervals = [
                (start + 10, start + 20),
                (start + 40, start + 50),
                (start + 70, start + 80),
            ]
            if i == 1:
                fault = self.options.source_fault
                if fault == "gap":
                    start += 5  # leaves [100, 105) uncovered
                elif fault == "overlap":
                    start -= 5
                elif fault == "early_row":
                    intervals[0] = (start - 3, start + 20)
                elif fault == "late_row":
                    intervals[2] = (start + 70, end + 1)
            yield sd.Chunk(start, end, ticks(intervals))


class Doubled(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    double: sd.f32


class Doubler(sd.Plugin):
    """One row per tick; ``compute_fault`` breaks one law in the chunk starting at 100."""

    class Inputs(sd.Inputs):
        ticks: Tick

    class Outputs(sd.Outputs):
        doubled: Doubled = sd.output(kind="ticks")

    class Options(sd.Options):
        compute_fault: str = sd.option("none", description="law to break (tests)")

    def compute(self, ticks: np.ndarray, start: int, end: int) -> np.ndarray | sd.Chunk:
        out = Doubled.zeros(len(ticks))
        out["time"], out["endtime"], out["double"] = ticks["time"], ticks["endtime"], 2
        fault = self.options.compute_fault
        if start != 100 or fault == "none":
            return out
        if fault == "unsorted":
            out[[1, 2]] = out[[2, 1]]
        elif fault == "negative_duration":
            out["endtime"][1] = out["time"][1] - 1
        elif fault == "late_row":
            out["endtime"][2] = end + 7
        elif fault == "early_row":
            out["time"][0] = start - 1
        elif fault == "wrong_bounds":
            return sd.Chunk(start, end - 10, out)
        return out


class Sliced(sd.Plugin):
    """Down-chunking: yields each step in two pieces; ``slice_fault`` spoils the tiling."""

    class Inputs(sd.Inputs):
        ticks: Tick

    class Outputs(sd.Outputs):
        sliced: Doubled = sd.output(kind="ticks")

    class Options(sd.Options):
        slice_fault: str = sd.option("none", description="law to break (tests)")

    def compute(self, ticks: np.ndarray, start: int, end: int) -> Iterator[sd.Chunk]:
        out = Doubled.zeros(len(ticks))
        out["time"], out["endtime"] = ticks["time"], ticks["endtime"]
        middle = start + 50
        first = out["time"] < middle
        fault = self.options.slice_fault
        yield sd.Chunk(start, middle, out[first])
        if fault == "gap":
            yield sd.Chunk(middle + 1, end, out[~first])
        elif fault == "short":
            yield sd.Chunk(middle, end - 1, out[~first])
        elif fault == "array":
            yield out[~first]  # type: ignore[misc]
        else:
            yield sd.Chunk(middle, end, out[~first])


PLUGINS = [Ticks, Doubler, Sliced]


@pytest.fixture(params=["serial", "threaded"])
def processor(request: pytest.FixtureRequest) -> str:
    return request.param


def run(processor: str, target: str, storage: str | None = None, **config: str) -> np.ndarray:
    ctx = sd.Context(storage=storage, plugins=PLUGINS, config=config, processor=processor)
    return ctx.get_array("run_1", target)


def test_lawful_plugins_run(processor):
    assert len(run(processor, "doubled")) == 9
    assert len(run(processor, "sliced")) == 9


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (
            "gap",
            r"plugin Ticks, output 'ticks': chunk Chunk\(\[105, 200\).* does not touch the "
            r"previous chunk, which ended at 100",
        ),
        ("overlap", r"plugin Ticks, output 'ticks': chunk Chunk\(\[95, 200\).* does not touch"),
        (
            "early_row",
            r"plugin Ticks, output 'ticks', chunk Chunk\(\[100, 200\).*: row 0 starts "
            r"at 97, before the chunk start 100",
        ),
        (
            "late_row",
            r"plugin Ticks, output 'ticks', chunk .*: row 2 ends at 201, after the "
            r"chunk end 200",
        ),
    ],
)
def test_a_source_breaking_a_law_is_named(processor, fault, message):
    with pytest.raises(sd.ChunkLawViolation, match=message):
        run(processor, "ticks", source_fault=fault)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (
            "unsorted",
            r"plugin Doubler, output 'doubled', chunk .*: rows are not sorted by time: "
            r"row 2 \(time 140\) comes after row 1 \(time 170\)",
        ),
        (
            "negative_duration",
            r"plugin Doubler, output 'doubled', chunk .*: row 1 has negative "
            r"duration \(time 140, endtime 139\)",
        ),
        (
            "late_row",
            r"plugin Doubler, output 'doubled', chunk .*: row 2 ends at 207, after the "
            r"chunk end 200",
        ),
        (
            "early_row",
            r"plugin Doubler, output 'doubled', chunk .*: row 0 starts at 99, before "
            r"the chunk start 100",
        ),
        (
            "wrong_bounds",
            r"plugin Doubler, output 'doubled': compute returned Chunk\(\[100, 190\)"
            r".* for the step \[100, 200\)",
        ),
    ],
)
def test_a_plugin_breaking_a_law_is_named(processor, fault, message):
    with pytest.raises(sd.ChunkLawViolation, match=message):
        run(processor, "doubled", compute_fault=fault)


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        (
            "gap",
            sd.ChunkLawViolation,
            r"plugin Sliced, output 'sliced': chunk 1 Chunk\(\[51, 100\).* must start at 50",
        ),
        (
            "short",
            sd.ChunkLawViolation,
            r"plugin Sliced, output 'sliced': the chunks yielded for the step \[0, 100\) stop at "
            r"99; the last one must end at 100",
        ),
        (
            "array",
            sd.PluginGaveWrongOutput,
            r"plugin Sliced: compute is a generator \(down-chunking\), so it must yield sd.Chunk",
        ),
    ],
)
def test_a_down_chunking_plugin_must_tile_each_step(processor, fault, error, message):
    with pytest.raises(error, match=message):
        run(processor, "sliced", slice_fault=fault)


def test_a_law_violation_leaves_the_bad_data_set_unsaved(processor, tmp_path):
    store = str(tmp_path / "store")
    with pytest.raises(sd.ChunkLawViolation, match="plugin Doubler"):
        run(processor, "doubled", storage=store, compute_fault="unsorted")
    ctx = sd.Context(storage=store, plugins=PLUGINS, config={"compute_fault": "unsorted"})
    assert not ctx.is_stored("run_1", "doubled")


def test_down_chunking_cannot_be_parallel():
    with pytest.raises(sd.PluginDeclarationError, match=r"plugin Parallel.*cannot be parallel"):

        class Parallel(sd.Plugin):
            parallel = True

            class Inputs(sd.Inputs):
                ticks: Tick

            class Outputs(sd.Outputs):
                pieces: Doubled

            def compute(self, ticks: np.ndarray) -> Iterator[np.ndarray]:
                yield ticks
