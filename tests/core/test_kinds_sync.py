"""Time synchronisation of kinds and merging by kind, seen from inside compute."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.sync import aligned


class Pulse(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    channel: sd.i16


class PulseWidth(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    width: sd.i64


class WideWidth(sd.Schema):  # PulseWidth's 'width' with another dtype
    time: sd.i64
    endtime: sd.i64
    width: sd.f64


class Window(sd.Schema):
    time: sd.i64
    endtime: sd.i64


def chunked(rows: np.ndarray, bounds: tuple[int, ...], end: int) -> Iterator[sd.Chunk]:
    for lo, hi in itertools.pairwise([0, *bounds, end]):
        yield sd.Chunk(lo, hi, rows[(rows["time"] >= lo) & (rows["time"] < hi)])


PULSES = [(10, 30), (20, 60), (100, 120), (250, 400), (390, 395), (600, 610), (900, 950)]
WINDOWS = [(0, 70), (95, 130), (240, 500), (800, 990)]


class Pulses(sd.Plugin):
    """Overlapping pulses, chunked at ``pulse_bounds``."""

    class Outputs(sd.Outputs):
        pulses: Pulse

    class Options(sd.Options):
        pulse_bounds: tuple[int, ...] = sd.option((), track=False, description="chunk bounds")

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        rows = Pulse.zeros(len(PULSES))
        for i, (t, e) in enumerate(PULSES):
            rows[i] = (t, e, i % 3)
        yield from chunked(rows, self.options.pulse_bounds, 1000)


class Widths(sd.Plugin):
    """A second data type of kind pulses."""

    class Inputs(sd.Inputs):
        pulses: Pulse

    class Outputs(sd.Outputs):
        pulse_widths: PulseWidth = sd.output(kind="pulses")

    def compute(self, pulses: np.ndarray) -> np.ndarray:
        out = PulseWidth.zeros(len(pulses))
        out["time"], out["endtime"] = pulses["time"], pulses["endtime"]
        out["width"] = pulses["endtime"] - pulses["time"]
        return out


class Windows(sd.Plugin):
    """Another kind, chunked independently at ``window_bounds``."""

    class Outputs(sd.Outputs):
        windows: Window

    class Options(sd.Options):
        window_bounds: tuple[int, ...] = sd.option((), track=False, description="chunk bounds")

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        rows = Window.zeros(len(WINDOWS))
        for i, (t, e) in enumerate(WINDOWS):
            rows[i] = (t, e)
        yield from chunked(rows, self.options.window_bounds, 1000)


class WindowTotals(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    total_width: sd.i64
    channels: sd.i32


SEEN: list[tuple[int, int, tuple[str, ...], tuple[str, ...]]] = []


class TotalWidth(sd.Plugin):
    """Per window: the summed width and channel mask of the pulses inside it."""

    class Inputs(sd.Inputs):
        windows: Window
        pulses: Pulse
        pulse_widths: PulseWidth

    class Outputs(sd.Outputs):
        window_totals: WindowTotals = sd.output(kind="windows")

    def compute(self, windows: np.ndarray, pulses: np.ndarray, start: int, end: int) -> np.ndarray:
        # every kind arrives with only the rows inside this call's [start, end)
        for rows in (windows, pulses):
            assert (rows["time"] >= start).all() and (rows["endtime"] <= end).all()
        SEEN.append((start, end, tuple(pulses.dtype.names), (len(windows), len(pulses))))
        out = WindowTotals.zeros(len(windows))
        out["time"], out["endtime"] = windows["time"], windows["endtime"]
        for i, w in enumerate(windows):
            inside = (pulses["time"] >= w["time"]) & (pulses["endtime"] <= w["endtime"])
            out["total_width"][i] = pulses["width"][inside].sum()
            out["channels"][i] = np.bitwise_or.reduce(1 << pulses["channel"][inside], initial=0)
        return out


PLUGINS = [Pulses, Widths, Windows, TotalWidth]


@pytest.fixture(params=["serial", "threaded"])
def processor(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.mark.parametrize(
    ("pulse_bounds", "window_bounds"),
    [((), ()), ((80,), (80,)), ((70, 200, 500), (90, 600)), ((245, 420, 620), (150, 520, 700))],
)
def test_each_call_gets_every_kind_inside_one_interval(processor, pulse_bounds, window_bounds):
    SEEN.clear()
    ctx = sd.Context(
        storage=None,
        plugins=PLUGINS,
        config={"pulse_bounds": pulse_bounds, "window_bounds": window_bounds},
        processor=processor,
    )
    totals = ctx.get_array("run_1", "window_totals")
    assert list(totals["total_width"]) == [20 + 40, 20, 150 + 5, 50]
    assert list(totals["channels"]) == [0b011, 0b100, 0b011, 0b001]
    # same-kind inputs came merged as one 'pulses' array with the fields of both
    assert {names for _, _, names, _ in SEEN} == {("time", "endtime", "channel", "width")}
    # the calls tile the run, cutting neither a pulse nor a window
    spans = sorted((s, e) for s, e, _, _ in SEEN)
    assert spans[0][0] == 0 and spans[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert sum(n for _, _, _, (n, _) in SEEN) == len(WINDOWS)
    assert sum(n for _, _, _, (_, n) in SEEN) == len(PULSES)


def test_a_field_in_two_inputs_of_one_kind_with_two_dtypes_is_refused_at_registration():
    class Again(sd.Plugin):
        class Inputs(sd.Inputs):
            pulses: Pulse

        class Outputs(sd.Outputs):
            more_widths: WideWidth = sd.output(kind="pulses")

        def compute(self, pulses: np.ndarray) -> np.ndarray:
            return WideWidth.zeros(len(pulses))

    class Both(sd.Plugin):
        class Inputs(sd.Inputs):
            pulse_widths: PulseWidth
            more_widths: WideWidth

        class Outputs(sd.Outputs):
            both: Window

        def compute(self, pulses: np.ndarray) -> np.ndarray:
            return Window.zeros(0)

    with pytest.raises(
        sd.RegistrationError,
        match=r"plugin Both: field 'width' is \w+ in 'pulse_widths' \(Widths\) but \w+ in "
        r"'more_widths' \(Again\); both are of kind 'pulses'",
    ):
        sd.Context(storage=None, plugins=[*PLUGINS, Again, Both])


DT = np.dtype([("time", "<i8"), ("endtime", "<i8")])


def interleaved(first: int, n: int) -> sd.Chunk:
    """Rows [first + 20k, first + 20k + 20): a cut is safe only at first + 20k."""
    rows = np.zeros(n, DT)
    rows["time"] = first + 20 * np.arange(n)
    rows["endtime"] = rows["time"] + 20
    return sd.Chunk(0, first + 20 * n + 10, rows)


def test_aligned_finds_a_common_cut_however_many_passes_it_takes():
    # Safe cuts of a are at 20k, of b at 20k + 10: no common cut inside, so the only
    # step is the whole run. Each pass of the search moves the cut by 10 ns; a search
    # that gave up after a fixed number of passes would split a row and fail.
    b = interleaved(10, 60)  # [0, 1220)
    a = interleaved(0, 60)  # rows end at 1200; chunks [0, 1205) and [1205, 1220)
    a_chunks = [sd.Chunk(0, 1205, a.data), sd.Chunk(1205, b.end, a.data[:0])]
    steps = list(aligned({"a": iter(a_chunks), "b": iter([b])}, {"a": DT, "b": DT}))
    assert [(s["a"].start, s["a"].end, len(s["a"]), len(s["b"])) for s in steps] == [
        (0, 1220, 60, 60)
    ]
