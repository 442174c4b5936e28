"""Property: results do not depend on how the data happens to be chunked.

Hypothesis draws interval data of two kinds (``hits``, possibly overlapping, and disjoint
``windows``) and a random chunking of each. Overlap-window, loop, time-synced multi-kind,
merge-only, cut and down-chunking plugins must give exactly what a single-chunk run gives,
under both processors, and so must data that went through the store and back.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import strax_decl as sd

RUN_END = 120_000
# Small mailboxes on purpose: plugins reading both an overlap-window plugin's input and its
# output (WindowSummary, HitInfo) lag by the window; the pipeline must not deadlock on that.
MAX_MESSAGES = 2


class Hit(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    area: sd.f64
    channel: sd.i32


class Window(sd.Schema):
    time: sd.i64
    endtime: sd.i64


def chunked(rows: np.ndarray, bounds: tuple[int, ...]) -> Iterator[sd.Chunk]:
    for lo, hi in itertools.pairwise([0, *bounds, RUN_END]):
        yield sd.Chunk(lo, hi, rows[(rows["time"] >= lo) & (rows["time"] < hi)])


class HitSource(sd.Plugin):
    """Hits ``(time, length)`` from the options, chunked at ``hit_bounds``."""

    class Outputs(sd.Outputs):
        hits: Hit = sd.output()

    class Options(sd.Options):
        hit_rows: tuple[tuple[int, int], ...] = sd.option((), description="(time, length)")
        hit_bounds: tuple[int, ...] = sd.option((), track=False, description="chunk bounds")

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        rows = Hit.zeros(len(self.options.hit_rows))
        for i, (t, length) in enumerate(self.options.hit_rows):
            rows[i] = (t, t + length, (t * 7919) % 1000, i % 4)  # whole areas: exact sums
        yield from chunked(rows, self.options.hit_bounds)


class WindowSource(sd.Plugin):
    """Disjoint windows from the options, chunked at ``window_bounds``."""

    class Outputs(sd.Outputs):
        windows: Window = sd.output()

    class Options(sd.Options):
        window_rows: tuple[tuple[int, int], ...] = sd.option((), description="(start, end)")
        window_bounds: tuple[int, ...] = sd.option((), track=False, description="chunk bounds")

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        rows = Window.zeros(len(self.options.window_rows))
        for i, (t, e) in enumerate(self.options.window_rows):
            rows[i] = (t, e)
        yield from chunked(rows, self.options.window_bounds)


class Crowd(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    n_near: sd.i32
    area_near: sd.f64


class Crowding(sd.OverlapWindowPlugin):
    """Per hit: the hits starting within +-``crowd_ns`` (inclusive), and their area."""

    class Inputs(sd.Inputs):
        hits: Hit

    class Outputs(sd.Outputs):
        crowding: Crowd = sd.output(kind="hits")

    class Options(sd.Options):
        crowd_ns: int = sd.option(1500, ge=0, description="half-width of the window [ns]")

    def window_size(self) -> int:
        return self.options.crowd_ns

    def compute(self, hits: np.ndarray) -> np.ndarray:
        w = self.options.crowd_ns
        t = hits["time"]
        lo = np.searchsorted(t, t - w, "left")
        hi = np.searchsorted(t, t + w, "right")
        cumulative = np.concatenate([[0.0], np.cumsum(hits["area"])])
        out = Crowd.zeros(len(hits))
        out["time"], out["endtime"] = hits["time"], hits["endtime"]
        out["n_near"] = hi - lo
        out["area_near"] = cumulative[hi] - cumulative[lo]
        return out


class Coincidence(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    n_before: sd.i32
    n_after: sd.i32


class Coincidences(sd.OverlapWindowPlugin):
    """A new kind: hits with company in [t - 2000, t + 700], asymmetric window."""

    window = (2000, 700)

    class Inputs(sd.Inputs):
        hits: Hit

    class Outputs(sd.Outputs):
        coincidences: Coincidence = sd.output()

    def compute(self, hits: np.ndarray) -> np.ndarray:
        t = hits["time"]
        before = np.searchsorted(t, t, "left") - np.searchsorted(t, t - 2000, "left")
        after = np.searchsorted(t, t + 700, "right") - np.searchsorted(t, t, "right")
        keep = before + after >= 2
        out = Coincidence.zeros(int(keep.sum()))
        out["time"], out["endtime"] = t[keep], hits["endtime"][keep]
        out["n_before"], out["n_after"] = before[keep], after[keep]
        return out


class Surroundings(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    hits_around: sd.i32


class WindowSurroundings(sd.OverlapWindowPlugin):
    """Two input kinds: per window, the hits starting within 3000 ns of it."""

    window = 3000

    class Inputs(sd.Inputs):
        windows: Window
        hits: Hit

    class Outputs(sd.Outputs):
        surroundings: Surroundings = sd.output(kind="windows")

    def compute(self, windows: np.ndarray, hits: np.ndarray) -> np.ndarray:
        t = hits["time"]
        out = Surroundings.zeros(len(windows))
        out["time"], out["endtime"] = windows["time"], windows["endtime"]
        out["hits_around"] = np.searchsorted(t, windows["endtime"] + 3000, "left") - (
            np.searchsorted(t, windows["time"] - 3000, "left")
        )
        return out


class Summary(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    n_hits: sd.i32
    area: sd.f64
    most_crowded: sd.i32
    channels: sd.i32


class WindowSummary(sd.LoopPlugin):
    """Loop over windows with the hits inside, merged with their crowding (same kind)."""

    loop_over = "windows"

    class Inputs(sd.Inputs):
        windows: Window
        hits: Hit
        crowding: Crowd

    class Outputs(sd.Outputs):
        window_summary: Summary = sd.output(kind="windows")

    def compute_loop(self, window: np.void, hits: np.ndarray) -> dict:
        return {
            "n_hits": len(hits),
            "area": hits["area"].sum(),
            "most_crowded": hits["n_near"].max(initial=0),
            "channels": np.bitwise_or.reduce(1 << hits["channel"], initial=0),
        }


class Counts(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    n_inside: sd.i32


class HitsInWindows(sd.Plugin):
    """Plain time-synced plugin over two kinds: hits fully inside each window."""

    class Inputs(sd.Inputs):
        windows: Window
        hits: Hit

    class Outputs(sd.Outputs):
        hits_in_windows: Counts = sd.output(kind="windows")

    def compute(self, windows: np.ndarray, hits: np.ndarray) -> np.ndarray:
        out = Counts.zeros(len(windows))
        out["time"], out["endtime"] = windows["time"], windows["endtime"]
        for i, w in enumerate(windows):
            inside = (hits["time"] >= w["time"]) & (hits["endtime"] <= w["endtime"])
            out["n_inside"][i] = inside.sum()
        return out


class CutCrowded(sd.CutPlugin):
    kind = "hits"  # its input is crowding, a data type of kind hits

    class Inputs(sd.Inputs):
        crowding: Crowd

    def cut_by(self, hits: np.ndarray) -> np.ndarray:  # arguments are named by kind
        return hits["n_near"] >= 3


CutRow = CutCrowded.outputs["cut_crowded"].schema


class HitInfo(sd.MergeOnlyPlugin):
    provides = "hit_info"
    kind = "hits"
    save = sd.SaveWhen.ALWAYS

    class Inputs(sd.Inputs):
        hits: Hit
        crowding: Crowd
        cut_crowded: CutRow


class Piece(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    area: sd.f64


class HitPieces(sd.Plugin):
    """Down-chunking: each step handed on in pieces of at most 3 hits (cut where safe)."""

    class Inputs(sd.Inputs):
        hits: Hit

    class Outputs(sd.Outputs):
        hit_pieces: Piece = sd.output(kind="hits")

    def compute(self, hits: np.ndarray, start: int, end: int) -> Iterator[sd.Chunk]:
        rows = Piece.zeros(len(hits))
        rows["time"], rows["endtime"], rows["area"] = hits["time"], hits["endtime"], hits["area"]
        ended = np.maximum.accumulate(hits["endtime"])  # no row before k ends after ended[k-1]
        cuts = [
            int(rows["time"][k]) for k in range(3, len(rows), 3) if ended[k - 1] <= rows["time"][k]
        ]
        for lo, hi in itertools.pairwise([start, *cuts, end]):
            yield sd.Chunk(lo, hi, rows[(rows["time"] >= lo) & (rows["time"] < hi)])


PLUGINS = [
    HitSource,
    WindowSource,
    Crowding,
    Coincidences,
    WindowSurroundings,
    WindowSummary,
    HitsInWindows,
    CutCrowded,
    HitInfo,
    HitPieces,
]
OVERLAP_TARGETS = ["crowding", "coincidences", "surroundings"]
OTHER_TARGETS = ["window_summary", "hits_in_windows", "cut_crowded", "hit_info", "hit_pieces"]
ALL_TARGETS = OVERLAP_TARGETS + OTHER_TARGETS


# ---------------------------------------------------------------------- data


@st.composite
def hit_rows(draw: st.DrawFn) -> tuple[tuple[int, int], ...]:
    """Up to 40 hits, 1-1200 ns long, in clumps (so windows see company), maybe overlapping."""
    n = draw(st.integers(0, 40))
    centres = draw(st.lists(st.integers(0, 100_000), min_size=1, max_size=6))
    times = sorted(
        min(max(draw(st.sampled_from(centres)) + draw(st.integers(-4000, 4000)), 0), 100_000)
        for _ in range(n)
    )
    return tuple((t, draw(st.integers(1, 1200))) for t in times)


@st.composite
def window_rows(draw: st.DrawFn) -> tuple[tuple[int, int], ...]:
    """Up to 12 disjoint windows."""
    edges = sorted(set(draw(st.lists(st.integers(0, 110_000), max_size=24))))
    pairs = list(zip(edges[::2], edges[1::2], strict=False))
    return tuple((a, b) for a, b in pairs if b > a)


@st.composite
def bounds_for(draw: st.DrawFn, intervals: list[tuple[int, int]]) -> tuple[int, ...]:
    """A random chunking of [0, RUN_END) that cuts none of ``intervals``."""
    wanted = draw(st.lists(st.integers(1, RUN_END - 1), max_size=10))
    return tuple(sorted({b for b in wanted if not any(t < b < e for t, e in intervals)}))


@st.composite
def datasets(draw: st.DrawFn) -> dict:
    hits = draw(hit_rows())
    windows = draw(window_rows())
    return {
        "hit_rows": hits,
        "window_rows": windows,
        "hit_bounds": draw(bounds_for([(t, t + n) for t, n in hits])),
        "window_bounds": draw(bounds_for(list(windows))),
        "crowd_ns": draw(st.sampled_from([0, 300, 1500, 5000])),
    }


def single_chunk(config: dict) -> dict:
    return {**config, "hit_bounds": (), "window_bounds": ()}


def arrays(ctx: sd.Context, targets: list[str]) -> dict[str, np.ndarray]:
    return {t: ctx.get_array("run_1", t) for t in targets}


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    for t in want:
        assert got[t].dtype == want[t].dtype, t
        np.testing.assert_array_equal(got[t], want[t], err_msg=t)


SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(datasets())
def test_every_kind_gives_the_single_chunk_result_under_both_processors(config):
    want = arrays(
        sd.Context(storage=None, plugins=PLUGINS, config=single_chunk(config), processor="serial"),
        ALL_TARGETS,
    )
    for processor in ("serial", "threaded"):
        ctx = sd.Context(
            storage=None,
            plugins=PLUGINS,
            config=config,
            processor=processor,
            max_messages=MAX_MESSAGES,
        )
        assert_same(arrays(ctx, ALL_TARGETS), want)
    # cross-check the loop against the vectorised synced plugin
    np.testing.assert_array_equal(
        want["window_summary"]["n_hits"], want["hits_in_windows"]["n_inside"]
    )


STORED = ["crowding", "coincidences", "window_summary", "hit_pieces"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), st.sampled_from(["serial", "threaded"]))
def test_storage_and_recomputing_from_it_give_the_single_chunk_result(config, processor):
    want = arrays(sd.Context(storage=None, plugins=PLUGINS, config=single_chunk(config)), STORED)
    other = {**config, "crowd_ns": 700}
    want_other = arrays(
        sd.Context(storage=None, plugins=PLUGINS, config=single_chunk(other)), STORED
    )
    with tempfile.TemporaryDirectory() as store:
        ctx = sd.Context(
            storage=store,
            plugins=PLUGINS,
            config=config,
            processor=processor,
            max_messages=MAX_MESSAGES,
        )
        ctx.make("run_1", STORED)
        assert ctx.plan("run_1", STORED).to_compute == []
        assert_same(arrays(ctx, STORED), want)  # loaded
        # a new option: hits and windows come from the store, the rest is recomputed
        again = ctx.new_context(config={"crowd_ns": 700})
        plan = again.plan("run_1", STORED)
        assert {"hits", "windows"} <= set(plan.to_load) and "crowding" in plan.to_compute
        assert_same(arrays(again, STORED), want_other)
