"""``LoopPlugin(time_selection="touching")``: the rows overlapping each base row (widened by
``touching_window``), as strax's ``touching_windows`` selects them, whatever the chunking.

Two sources whose rows and chunk boundaries are options: ``hits`` (any length, zero
included, possibly overlapping; ``hid`` is the row's index) and disjoint ``windows``.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

try:  # strax (the bench extra) for the comparison; brute force is checked without it
    import strax
except ImportError:  # pragma: no cover - a clean clone has no strax
    strax = None
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import strax_decl as sd
from strax_decl.kinds_loop import TouchingLoopRunner
from strax_decl.resuming import _why_not
from strax_decl.testing import check_chunking_independence

RUN_END = 50_000


class Hit(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    hid: sd.i64 = sd.field("index of the hit")


class Window(sd.Schema):
    time: sd.i64
    endtime: sd.i64


def chunked(rows: np.ndarray, bounds: tuple[int, ...]) -> Iterator[sd.Chunk]:
    for lo, hi in itertools.pairwise([0, *bounds, RUN_END]):
        yield sd.Chunk(lo, hi, rows[(rows["time"] >= lo) & (rows["time"] < hi)])


class HitSource(sd.Plugin):
    class Outputs(sd.Outputs):
        hits: Hit

    class Options(sd.Options):
        hit_rows: tuple[tuple[int, int], ...] = sd.option((), description="(time, length)")
        hit_bounds: tuple[int, ...] = sd.option((), track=False, description="chunk bounds")

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        rows = Hit.zeros(len(self.options.hit_rows))
        for i, (t, length) in enumerate(self.options.hit_rows):
            rows[i] = (t, t + length, i)
        yield from chunked(rows, self.options.hit_bounds)


class WindowSource(sd.Plugin):
    class Outputs(sd.Outputs):
        windows: Window

    class Options(sd.Options):
        window_rows: tuple[tuple[int, int], ...] = sd.option((), description="(start, end)")
        window_bounds: tuple[int, ...] = sd.option((), track=False, description="chunk bounds")

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        rows = Window.zeros(len(self.options.window_rows))
        for i, (t, e) in enumerate(self.options.window_rows):
            rows[i] = (t, e)
        yield from chunked(rows, self.options.window_bounds)


class Selected(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    n: sd.i32 = sd.field("hits selected")
    first: sd.i64 = sd.field("hid of the first, -1 for none")
    last: sd.i64 = sd.field("hid of the last, -1 for none")
    ids: sd.i64 = sd.field("sum of 3**hid mod 2**61 - 1: which hits")


MOD = 2**61 - 1


def fingerprint(hids: np.ndarray) -> int:
    return sum(pow(3, int(h), MOD) for h in hids) % MOD


class Touching(sd.LoopPlugin):
    """Per window, the hits touching it (``touching_window`` = 0)."""

    time_selection = "touching"

    class Inputs(sd.Inputs):
        windows: Window
        hits: Hit

    class Outputs(sd.Outputs):
        touching: Selected = sd.output(kind="windows")

    def compute_loop(self, window: np.void, hits: np.ndarray) -> dict[str, Any]:
        ids = hits["hid"]
        return {
            "n": len(hits),
            "first": ids[0] if len(ids) else -1,
            "last": ids[-1] if len(ids) else -1,
            "ids": fingerprint(ids),
        }


class Near(Touching):
    """The hits within 300 ns of each window."""

    touching_window = 300

    class Outputs(sd.Outputs):
        near: Selected = sd.output(kind="windows")


class Lopsided(Touching):
    """The hits reaching into [time - 1000, endtime + 40) of each window."""

    touching_window = (1000, 40)

    class Outputs(sd.Outputs):
        lopsided: Selected = sd.output(kind="windows")


class Inside(Touching):
    """The default selection, for contrast: hits fully inside."""

    time_selection = "fully_contained"

    class Outputs(sd.Outputs):
        inside: Selected = sd.output(kind="windows")


PLUGINS = [HitSource, WindowSource, Touching, Near, Lopsided, Inside]
WINDOWS = {"touching": (0, 0), "near": (300, 300), "lopsided": (1000, 40)}
TARGETS = [*WINDOWS, "inside"]


def expected(config: dict, left: int, right: int) -> np.ndarray:
    """Per window, the hids touching it: brute force over every (window, hit) pair."""
    hits = np.array(config["hit_rows"], dtype=np.int64).reshape(-1, 2)
    t, e = hits[:, 0], hits[:, 0] + hits[:, 1]
    out = []
    for w0, w1 in config["window_rows"]:
        out.append(np.flatnonzero((e > w0 - left) & (t < w1 + right)))
    return np.array([(len(i), fingerprint(i)) for i in out], dtype=np.int64).reshape(-1, 2)


# ---------------------------------------------------------------------- by example


def get(config: dict, target: str, processor: str = "serial") -> np.ndarray:
    ctx = sd.Context(storage=None, plugins=PLUGINS, config=config, processor=processor)
    return ctx.get_array("run_1", target)


def test_touching_selects_rows_overlapping_the_base_row_and_strictly_inside_if_zero_length():
    config = {
        # [50, 100) ends at the window's start: no; [60, 101) yes; [90, 290) spans it: yes;
        # zero-length at 100: no (not strictly inside); zero-length at 150: yes;
        # [199, 204) yes; [200, 205) starts at its end: no
        "hit_rows": ((50, 50), (60, 41), (90, 200), (100, 0), (150, 0), (199, 5), (200, 5)),
        "window_rows": ((100, 200), (400, 400)),  # and a zero-length window: nothing spans 400
    }
    rows = get(config, "touching")
    assert rows["n"].tolist() == [4, 0]
    assert rows["ids"][0] == fingerprint(np.array([1, 2, 4, 5]))
    assert rows["first"][0] == 1 and rows["last"][0] == 5
    inside = get(config, "inside")
    assert inside["n"].tolist() == [2, 0]  # only [100, 100) and [150, 150) are inside


def test_a_row_touching_two_adjacent_base_rows_is_given_to_both():
    config = {"hit_rows": ((90, 20),), "window_rows": ((0, 100), (100, 200))}
    assert get(config, "touching")["n"].tolist() == [1, 1]
    assert get(config, "inside")["n"].tolist() == [0, 0]


def test_the_touching_window_widens_the_base_row_on_each_side():
    config = {
        "hit_rows": ((690, 10), (700, 0), (701, 0), (1299, 1), (1300, 0), (1310, 0)),
        "window_rows": ((1000, 1000),),  # zero-length; widened: [700, 1300) or [0, 1040)
    }
    near = get(config, "near")  # end > 700 and time < 1300
    assert near["n"].tolist() == [2] and near["ids"][0] == fingerprint(np.array([2, 3]))
    lopsided = get(config, "lopsided")  # end > 0 and time < 1040
    assert lopsided["ids"][0] == fingerprint(np.array([0, 1, 2]))
    assert get(config, "touching")["n"].tolist() == [0]


@pytest.mark.parametrize("processor", ["serial", "threaded"])
def test_a_windowed_touching_loop_is_the_same_however_its_inputs_are_chunked(processor):
    rng = np.random.default_rng(5)
    starts = np.sort(rng.integers(0, 45_000, 300))
    hits = tuple((int(t), int(n)) for t, n in zip(starts, rng.integers(0, 400, 300), strict=True))
    edges = np.unique(rng.integers(0, 48_000, 60))
    windows = tuple((int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=False))
    config = {"hit_rows": hits, "window_rows": windows}
    for target, (left, right) in WINDOWS.items():
        want = expected(config, left, right)
        for bounds in [(), (1000, 20_000, 20_400), tuple(range(500, RUN_END, 700))]:
            ok_h = tuple(b for b in bounds if not any(t < b < t + n for t, n in hits))
            ok_w = tuple(b for b in bounds if not any(a < b < e for a, e in windows))
            cfg = {**config, "hit_bounds": ok_h, "window_bounds": ok_w}
            rows = get(cfg, target, processor)
            np.testing.assert_array_equal(rows[["n", "ids"]].tolist(), want, err_msg=target)


@pytest.mark.parametrize("target", [*WINDOWS, "inside"])
def test_check_chunking_independence_passes_for_every_selection(target):
    rng = np.random.default_rng(11)
    starts = np.sort(rng.integers(0, 45_000, 200))
    hits = tuple((int(t), int(n)) for t, n in zip(starts, rng.integers(0, 900, 200), strict=True))
    edges = np.unique(rng.integers(0, 48_000, 40))
    windows = tuple((int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=False))
    out = check_chunking_independence(
        PLUGINS, target, config={"hit_rows": hits, "window_rows": windows}, seed=3
    )
    assert len(out[target]) == len(windows) and out[target]["n"].sum() > 0


def test_windowed_loops_run_as_an_overlap_window_and_are_not_resumed():
    assert Near._runner is TouchingLoopRunner and Lopsided._runner is TouchingLoopRunner
    assert Touching._runner is None and Inside._runner is None  # the plain runner

    class Back(Near):  # a subclass without a window runs plainly again
        touching_window = 0

        class Outputs(sd.Outputs):
            back: Selected = sd.output(kind="windows")

    assert Back._runner is None
    assert _why_not(Near, {}, 0).startswith("plugin Near is a")  # refused for its kind
    assert not _why_not(Touching, {}, 0).startswith("plugin Touching is a")  # asks the inputs


def test_stored_and_loaded_results_are_the_computed_ones(tmp_path: Path):
    config = {
        "hit_rows": tuple((t, 50) for t in range(0, 40_000, 170)),
        "window_rows": tuple((t, t + 900) for t in range(100, 40_000, 2_000)),
        "hit_bounds": (5_000, 17_060, 30_000),
        "window_bounds": (8_000, 30_000),
    }
    want = get({**config, "hit_bounds": (), "window_bounds": ()}, "near")
    ctx = sd.Context(storage=str(tmp_path), plugins=PLUGINS, config=config)
    ctx.make("run_1", ["near", "touching"])
    assert ctx.plan("run_1", ["near"]).to_load == ["near"]
    np.testing.assert_array_equal(ctx.get_array("run_1", "near"), want)


# ---------------------------------------------------------------------- declarations


def declare(**attrs: Any) -> type[sd.LoopPlugin]:
    def compute_loop(self: Any, window: np.void, hits: np.ndarray) -> dict:
        return {}

    namespace = {
        "Inputs": Touching.Inputs,
        "Outputs": Touching.Outputs,
        "compute_loop": compute_loop,
        **attrs,
    }
    return type("BadLoop", (sd.LoopPlugin,), namespace)


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"time_selection": "overlapping"}, "time_selection must be one of 'fully_contained'"),
        ({"time_selection": None}, "got None"),
        ({"touching_window": 10}, "applies only with time_selection = 'touching'"),
        ({"time_selection": "touching", "touching_window": -1}, "touching_window must be"),
        ({"time_selection": "touching", "touching_window": 1.5}, "touching_window must be"),
        ({"time_selection": "touching", "touching_window": True}, "touching_window must be"),
        ({"time_selection": "touching", "touching_window": 5, "parallel": True}, "parallel"),
    ],
)
def test_bad_declarations_are_refused_naming_the_plugin(attrs, message):
    with pytest.raises(sd.PluginDeclarationError, match="plugin BadLoop: ") as info:
        declare(**attrs)
    assert message in str(info.value)


def test_touching_without_a_window_may_be_parallel():
    cls = declare(time_selection="touching", parallel=True)
    assert cls._runner is None


# ---------------------------------------------------------------------- against strax


@st.composite
def datasets(draw: st.DrawFn) -> dict:
    """Hits 0-800 ns long (zero-length too), maybe overlapping; disjoint windows, some of
    zero length; random chunkings cutting no row."""
    n = draw(st.integers(0, 30))
    times = sorted(draw(st.lists(st.integers(0, 40_000), min_size=n, max_size=n)))
    lengths = draw(st.lists(st.sampled_from([0, 1, 10, 200, 800]), min_size=n, max_size=n))
    edges = sorted(set(draw(st.lists(st.integers(0, 45_000), max_size=16))))
    pairs = list(zip(edges[::2], edges[1::2], strict=False))
    points = draw(st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs)))
    windows = tuple((a, a if p else b) for (a, b), p in zip(pairs, points, strict=True))
    hits = tuple(zip(times, lengths, strict=True))
    cuts = draw(st.lists(st.integers(1, RUN_END - 1), max_size=8))
    return {
        "hit_rows": hits,
        "window_rows": windows,
        "hit_bounds": tuple(sorted({b for b in cuts if not any(t < b < t + k for t, k in hits)})),
        "window_bounds": tuple(sorted({b for b in cuts if not any(a < b < e for a, e in windows)})),
    }


def strax_selection(config: dict, window: int) -> np.ndarray:
    """strax's ``touching_windows`` slices, keeping the rows that touch (strax's slice from the
    first to the last touching row also holds rows between them that do not, when end times
    are out of order)."""
    hits = np.zeros(len(config["hit_rows"]), dtype=[("time", np.int64), ("endtime", np.int64)])
    for i, (t, n) in enumerate(config["hit_rows"]):
        hits[i] = (t, t + n)
    windows = np.zeros(len(config["window_rows"]), dtype=hits.dtype)
    for i, (w0, w1) in enumerate(config["window_rows"]):
        windows[i] = (w0, w1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # strax: "endtime of things is not sorted"
        bounds = strax.touching_windows(hits, windows, window=window)
    out = []
    for (a, b), (w0, w1) in zip(bounds, config["window_rows"], strict=True):
        ids = np.arange(a, b)
        touch = (hits["endtime"][a:b] > w0 - window) & (hits["time"][a:b] < w1 + window)
        if np.all(np.diff(hits["endtime"]) >= 0):
            assert touch.all()  # end times in order: strax's slice is exactly the touching rows
        out.append(ids[touch])
    return np.array([(len(i), fingerprint(i)) for i in out], dtype=np.int64).reshape(-1, 2)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), st.sampled_from(["serial", "threaded"]))
def test_random_data_any_chunking_gives_what_strax_touching_windows_selects(config, processor):
    ctx = sd.Context(
        storage=None, plugins=PLUGINS, config=config, processor=processor, max_messages=2
    )
    for target, (left, right) in WINDOWS.items():
        rows = ctx.get_array("run_1", target)
        got = np.array(rows[["n", "ids"]].tolist(), dtype=np.int64).reshape(-1, 2)
        want = expected(config, left, right)
        np.testing.assert_array_equal(got, want, err_msg=target)
        if left == right and strax is not None:
            np.testing.assert_array_equal(got, strax_selection(config, left), err_msg=target)
