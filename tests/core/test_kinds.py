"""Plugin kinds by example: overlap windows, loops, merge-only, cuts and down-chunking.

Two tiny sources whose rows and chunk boundaries are options, so each test states its data:
``hits`` (10 ns rows) and ``events`` (intervals).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator

import numpy as np
import pytest

import strax_decl as sd


class Hit(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    area: sd.f32 = sd.field("hit area", unit="PE")


class Event(sd.Schema):
    time: sd.i64
    endtime: sd.i64


def chunked(rows: np.ndarray, bounds: tuple[int, ...], end: int) -> Iterator[sd.Chunk]:
    edges = [0, *bounds, end]
    for lo, hi in itertools.pairwise(edges):
        yield sd.Chunk(lo, hi, rows[(rows["time"] >= lo) & (rows["time"] < hi)])


class Hits(sd.Plugin):
    """Hits of 10 ns at ``hit_times``, area = index + 1, chunked at ``hit_bounds``."""

    class Outputs(sd.Outputs):
        hits: Hit

    class Options(sd.Options):
        hit_times: tuple[int, ...] = sd.option((), description="hit start times [ns]")
        hit_bounds: tuple[int, ...] = sd.option((), track=False, description="chunk bounds")
        run_end: int = sd.option(1000, description="end of the run [ns]")

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        o = self.options
        rows = Hit.zeros(len(o.hit_times))
        rows["time"] = sorted(o.hit_times)
        rows["endtime"] = rows["time"] + 10
        rows["area"] = np.arange(1, len(rows) + 1)
        yield from chunked(rows, o.hit_bounds, o.run_end)


class Events(sd.Plugin):
    """Events over ``event_spans``, chunked at ``event_bounds``."""

    class Outputs(sd.Outputs):
        events: Event

    class Options(sd.Options):
        event_spans: tuple[tuple[int, int], ...] = sd.option((), description="(start, end)")
        event_bounds: tuple[int, ...] = sd.option((), track=False, description="chunk bounds")
        run_end: int = sd.option(1000, description="end of the run [ns]")

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        rows = Event.zeros(len(self.options.event_spans))
        for i, (t, e) in enumerate(self.options.event_spans):
            rows[i] = (t, e)
        yield from chunked(rows, self.options.event_bounds, self.options.run_end)


@pytest.fixture(params=["serial", "threaded"])
def processor(request: pytest.FixtureRequest) -> str:
    return request.param


def get(processor: str, plugins: list, target: str | list[str], **config) -> np.ndarray:
    ctx = sd.Context(
        storage=None, plugins=[Hits, Events, *plugins], config=config, processor=processor
    )
    return ctx.get_array("run_1", target)


def chunks(processor: str, plugins: list, target: str, **config) -> list[sd.Chunk]:
    ctx = sd.Context(
        storage=None, plugins=[Hits, Events, *plugins], config=config, processor=processor
    )
    return list(ctx.iter_chunks("run_1", target))


# ---------------------------------------------------------------------- overlap windows


class Nearby(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    n_near: sd.i32 = sd.field("hits starting within the window, itself included")


class NearbyHits(sd.OverlapWindowPlugin):
    """Counts the hits that start within 100 ns of each hit."""

    window = 100

    class Inputs(sd.Inputs):
        hits: Hit

    class Outputs(sd.Outputs):
        nearby: Nearby = sd.output(kind="hits")

    def compute(self, hits: np.ndarray) -> np.ndarray:
        out = Nearby.zeros(len(hits))
        out["time"], out["endtime"] = hits["time"], hits["endtime"]
        t = hits["time"]
        out["n_near"] = np.searchsorted(t, t + 100, "right") - np.searchsorted(t, t - 100, "left")
        return out


class Before(sd.OverlapWindowPlugin):
    """Counts hits starting in [t - look_back, t]: the window comes from an option."""

    class Inputs(sd.Inputs):
        hits: Hit

    class Outputs(sd.Outputs):
        before: Nearby = sd.output(kind="hits")

    class Options(sd.Options):
        look_back: int = sd.option(150, ge=0, description="how far back to count [ns]")

    def window_size(self) -> tuple[int, int]:
        return (self.options.look_back, 0)

    def compute(self, hits: np.ndarray) -> np.ndarray:
        out = Nearby.zeros(len(hits))
        out["time"], out["endtime"] = hits["time"], hits["endtime"]
        t = hits["time"]
        back = self.options.look_back
        out["n_near"] = np.searchsorted(t, t, "right") - np.searchsorted(t, t - back, "left")
        return out


HIT_TIMES = (0, 50, 95, 150, 190, 260, 400, 480, 500, 610)
N_NEAR = [3, 4, 5, 4, 4, 2, 3, 3, 3, 1]  # hits starting within +-100 ns of each hit


def test_overlap_window_sees_input_across_chunk_boundaries(processor):
    whole = get(processor, [NearbyHits], "nearby", hit_times=HIT_TIMES)
    assert list(whole["n_near"]) == N_NEAR
    for bounds in [(120,), (120, 200, 300), (40, 95, 170, 205, 495, 600)]:
        cut = get(processor, [NearbyHits], "nearby", hit_times=HIT_TIMES, hit_bounds=bounds)
        np.testing.assert_array_equal(cut, whole)


def test_overlap_window_from_a_method_and_one_sided(processor):
    whole = get(processor, [Before], "before", hit_times=HIT_TIMES)
    assert list(whole["n_near"]) == [1, 2, 3, 4, 4, 3, 2, 2, 3, 3]
    cut = get(processor, [Before], "before", hit_times=HIT_TIMES, hit_bounds=(120, 200, 300))
    np.testing.assert_array_equal(cut, whole)
    wide = get(
        processor, [Before], "before", hit_times=HIT_TIMES, hit_bounds=(120, 200), look_back=1000
    )
    assert list(wide["n_near"]) == list(range(1, 11))


def test_overlap_window_sends_rows_once_the_window_makes_them_certain(processor):
    out = chunks(processor, [NearbyHits], "nearby", hit_times=HIT_TIMES, hit_bounds=(120, 200, 300))
    # After input up to 120, only rows ending by 120 - 100 - 1 are certain: [0, 19) holds
    # the hit at 0. The cut then moves back to a time that cuts no row ([95, 105) at 199 - 100).
    assert [(c.start, c.end, len(c)) for c in out] == [
        (0, 19, 1),
        (19, 95, 1),
        (95, 190, 2),
        (190, 899, 6),
        (899, 1000, 0),
    ]


class Pairs(sd.OverlapWindowPlugin):
    """Breaks the window contract: a row spans two hits up to 200 ns apart, window says 5."""

    window = 5

    class Inputs(sd.Inputs):
        hits: Hit

    class Outputs(sd.Outputs):
        pairs: Event

    def compute(self, hits: np.ndarray) -> np.ndarray:
        close = np.flatnonzero(hits["time"][1:] - hits["endtime"][:-1] < 200)
        out = Event.zeros(len(close))
        out["time"], out["endtime"] = hits["time"][close], hits["endtime"][close + 1]
        return out


def test_rows_reaching_beyond_the_window_are_an_error_naming_the_plugin(processor):
    # [10, 90) is sent after the first chunk; the pair (80, 150) then starts before 94
    with pytest.raises(
        sd.ChunkLawViolation,
        match=r"plugin Pairs, output 'pairs': row "
        r"\[80, 160\) starts before 94, .* the window \(5, 5\)",
    ):
        get(processor, [Pairs], "pairs", hit_times=(10, 80, 150), hit_bounds=(100,))


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({}, "declare window"),
        ({"window": -1}, "window must be an int >= 0"),
        ({"window": (1, 2, 3)}, "window must be an int >= 0"),
        ({"window": "wide"}, "window must be an int >= 0"),
        ({"window": 10, "parallel": True}, "cannot be parallel"),
    ],
)
def test_overlap_window_declaration_errors_name_the_plugin(attrs, message):
    with pytest.raises(sd.PluginDeclarationError, match=f"plugin Wrong: .*{message}"):
        type("Wrong", (NearbyHits,), {"window": None, **attrs})


def test_overlap_window_cannot_down_chunk():
    with pytest.raises(sd.PluginDeclarationError, match=r"plugin Gen: .*cannot down-chunk"):

        class Gen(NearbyHits):
            def compute(self, hits: np.ndarray) -> Iterator[sd.Chunk]:
                yield sd.Chunk(0, 1, hits[:0])


# ---------------------------------------------------------------------- loop plugins


class EventSummary(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    n_hits: sd.i32
    area: sd.f32
    first_hit: sd.i64


class SummariseEvents(sd.LoopPlugin):
    loop_over = "events"

    class Inputs(sd.Inputs):
        events: Event
        hits: Hit

    class Outputs(sd.Outputs):
        event_summary: EventSummary = sd.output(kind="events")

    def compute_loop(self, event: np.void, hits: np.ndarray) -> dict:
        assert (hits["time"] >= event["time"]).all() and (hits["endtime"] <= event["endtime"]).all()
        return {
            "n_hits": len(hits),
            "area": hits["area"].sum(),
            "first_hit": hits["time"][0] if len(hits) else -1,
        }


EVENTS = ((0, 100), (140, 200), (205, 600), (700, 800))


def test_loop_gets_the_rows_fully_inside_each_base_row(processor):
    for hit_bounds, event_bounds in [((), ()), ((120, 300), (120,)), ((60, 600), (130, 650))]:
        s = get(
            processor,
            [SummariseEvents],
            "event_summary",
            hit_times=HIT_TIMES,
            hit_bounds=hit_bounds,
            event_spans=EVENTS,
            event_bounds=event_bounds,
        )
        assert [tuple(r) for r in s[["time", "endtime"]]] == list(EVENTS)  # from the event
        # hit [95, 105) sticks out of event 0, [190, 200) is inside event 1
        assert list(s["n_hits"]) == [2, 2, 4, 0]
        assert list(s["area"]) == [1 + 2, 4 + 5, 6 + 7 + 8 + 9, 0]
        assert list(s["first_hit"]) == [0, 150, 260, -1]


class SplitSummary(sd.LoopPlugin):
    """Two outputs; the base kind defaults to the first input's; rows may be numpy rows."""

    class Inputs(sd.Inputs):
        events: Event
        hits: Hit

    class Outputs(sd.Outputs):
        event_counts: Nearby = sd.output(kind="events")
        event_spans: Event = sd.output(kind="events")

    def compute_loop(self, event: np.void, hits: np.ndarray) -> dict:
        span = Event.zeros(1)[0]  # a numpy row; same kind, so the event's own interval
        span["time"], span["endtime"] = event["time"], event["endtime"]
        return {"event_counts": {"n_near": len(hits)}, "event_spans": span}


def test_loop_with_two_outputs(processor):
    counts = get(processor, [SplitSummary], "event_counts", hit_times=HIT_TIMES, event_spans=EVENTS)
    assert list(counts["n_near"]) == [2, 2, 4, 0]
    spans = get(processor, [SplitSummary], "event_spans", hit_times=HIT_TIMES, event_spans=EVENTS)
    assert [(int(s["time"]), int(s["endtime"])) for s in spans] == [tuple(e) for e in EVENTS]


def test_loop_refuses_overlapping_base_rows(processor):
    with pytest.raises(
        ValueError,
        match=r"plugin SummariseEvents: rows 0 \[0, 100\) and 1 "
        r"\[50, 120\) of 'events' overlap",
    ):
        get(processor, [SummariseEvents], "event_summary", event_spans=((0, 100), (50, 120)))


def test_loop_result_with_an_undeclared_field_names_the_plugin(processor):
    class Typo(SummariseEvents):
        def compute_loop(self, event: np.void, hits: np.ndarray) -> dict:
            return {"n_hist": 1}

    with pytest.raises(
        sd.PluginGaveWrongOutput,
        match="plugin Typo, output 'event_summary': compute_loop returned field 'n_hist'",
    ):
        get(processor, [Typo], "event_summary", event_spans=EVENTS)


def test_loop_over_must_be_an_input_kind(processor):
    class Elsewhere(SummariseEvents):
        loop_over = "peaks"

    with pytest.raises(
        sd.PluginDeclarationError,
        match="plugin Elsewhere: loop_over = 'peaks' is not the kind of any input",
    ):
        get(processor, [Elsewhere], "event_summary", event_spans=EVENTS)


def test_loop_declaration_errors():
    with pytest.raises(sd.PluginDeclarationError, match="plugin NoLoop: define compute_loop"):
        type(
            "NoLoop",
            (sd.LoopPlugin,),
            {"Inputs": SummariseEvents.Inputs, "Outputs": SummariseEvents.Outputs},
        )
    with pytest.raises(sd.PluginDeclarationError, match="compute_loop, not compute"):
        type("Both", (SummariseEvents,), {"compute": lambda self, **k: None})


# ---------------------------------------------------------------------- merge-only and cuts


class HitInfo(sd.MergeOnlyPlugin):
    provides = "hit_info"
    kind = "hits"

    class Inputs(sd.Inputs):
        hits: Hit
        nearby: Nearby


class CutCrowded(sd.CutPlugin):
    cut_description = "at least three hits within 100 ns"

    class Inputs(sd.Inputs):
        hits: Hit
        nearby: Nearby

    def cut_by(self, hits: np.ndarray) -> np.ndarray:
        return hits["n_near"] >= 3


def test_merge_only_output_is_the_union_of_its_inputs(processor):
    assert HitInfo.outputs["hit_info"].kind == "hits"
    assert HitInfo.outputs["hit_info"].dtype.names == ("time", "endtime", "area", "n_near")
    assert HitInfo.outputs["hit_info"].schema.field_docs()["area"]["unit"] == "PE"
    info = get(
        processor, [NearbyHits, HitInfo], "hit_info", hit_times=HIT_TIMES, hit_bounds=(120, 300)
    )
    assert list(info["area"]) == list(range(1, 11))
    assert list(info["n_near"]) == N_NEAR


def test_merge_only_is_saved_only_when_asked(tmp_path):
    ctx = sd.Context(storage=str(tmp_path), plugins=[Hits, Events, NearbyHits, HitInfo])
    assert not ctx.plan("run_1", "hit_info").steps["hit_info"].save
    assert ctx.plan("run_1", "hit_info", save=["hit_info"]).steps["hit_info"].save


def test_merge_only_declaration_errors():
    class WideHit(sd.Schema):
        time: sd.i64
        endtime: sd.i64
        area: sd.f64  # Hit's area is f32

    shared = type(  # a field shared with one dtype is kept once (the later input's values)
        "Shared",
        (sd.MergeOnlyPlugin,),
        {"Inputs": type("Inputs", (sd.Inputs,), {"__annotations__": {"hits": Hit, "h2": Hit}})},
    )
    assert shared.outputs["shared"].dtype.names == ("time", "endtime", "area")
    with pytest.raises(
        sd.PluginDeclarationError,
        match=r"plugin Dup: field 'area' has dtype float32 in one input and float64",
    ):
        type(
            "Dup",
            (sd.MergeOnlyPlugin,),
            {
                "Inputs": type(
                    "Inputs", (sd.Inputs,), {"__annotations__": {"hits": Hit, "hits2": WideHit}}
                )
            },
        )
    with pytest.raises(
        sd.PluginDeclarationError, match="plugin Declared: a MergeOnlyPlugin derives its Outputs"
    ):
        type("Declared", (HitInfo,), {"Outputs": NearbyHits.Outputs})


def test_merge_only_kind_is_checked_when_it_runs(processor):
    class NearbyInfo(sd.MergeOnlyPlugin):  # kind defaults to 'nearby', but nearby is a hit
        class Inputs(sd.Inputs):
            nearby: Nearby
            hits: Hit

    assert NearbyInfo.outputs["nearby_info"].kind == "nearby"
    with pytest.raises(
        sd.PluginDeclarationError,
        match=r"plugin NearbyInfo: its rows are rows of kind 'hits', .* set kind = 'hits'",
    ):
        get(processor, [NearbyHits, NearbyInfo], "nearby_info", hit_times=HIT_TIMES)

    class Mixed(sd.MergeOnlyPlugin):
        class Inputs(sd.Inputs):
            hits: Hit
            events: Event

    with pytest.raises(sd.PluginDeclarationError, match=r"plugin Mixed: .*inputs of one kind"):
        get(processor, [Mixed], "mixed", hit_times=HIT_TIMES)


def test_cut_gives_one_boolean_per_row(processor):
    spec = CutCrowded.outputs["cut_crowded"]
    assert spec.kind == "hits" and spec.save == sd.SaveWhen.TARGET
    assert spec.dtype.names == ("time", "endtime", "cut_crowded")
    assert spec.dtype["cut_crowded"] == np.bool_
    assert spec.schema.field_docs()["cut_crowded"]["description"] == CutCrowded.cut_description
    cut = get(
        processor, [NearbyHits, CutCrowded], "cut_crowded", hit_times=HIT_TIMES, hit_bounds=(120,)
    )
    assert list(cut["cut_crowded"]) == [n >= 3 for n in N_NEAR]
    merged = get(processor, [NearbyHits, CutCrowded], ["hits", "cut_crowded"], hit_times=HIT_TIMES)
    assert list(merged["area"][merged["cut_crowded"]]) == [1, 2, 3, 4, 5, 7, 8, 9]


class InsideEvent(sd.CutPlugin):
    """A cut on hits using another kind: is the hit inside some event?"""

    cut_name = "in_event"
    provides = "hit_in_event"
    kind = "hits"

    class Inputs(sd.Inputs):
        events: Event
        hits: Hit

    def cut_by(self, hits: np.ndarray, events: np.ndarray) -> np.ndarray:
        i = np.searchsorted(events["time"], hits["time"], "right") - 1
        ok = i >= 0
        return ok & (hits["endtime"] <= events["endtime"][np.maximum(i, 0)])


def test_cut_over_two_kinds(processor):
    cut = get(
        processor,
        [InsideEvent],
        "hit_in_event",
        hit_times=HIT_TIMES,
        event_spans=EVENTS,
        hit_bounds=(120,),
        event_bounds=(130,),
    )
    assert cut.dtype.names == ("time", "endtime", "in_event")
    assert list(cut["in_event"]) == [True, True, False, True, True, True, True, True, True, False]


def test_cut_must_return_one_bool_per_row(processor):
    class Sloppy(CutCrowded):
        def cut_by(self, hits: np.ndarray) -> np.ndarray:
            return hits["n_near"]

    with pytest.raises(
        sd.PluginGaveWrongOutput,
        match="plugin Sloppy: cut_by must return a bool "
        r"array with one value per hits row \(10\), got dtype int32",
    ):
        get(processor, [NearbyHits, Sloppy], "sloppy", hit_times=HIT_TIMES)


def test_arguments_must_be_named_by_kind(processor):
    class ByDataType(CutCrowded):
        def cut_by(self, nearby: np.ndarray) -> np.ndarray:  # nearby is a data type of kind hits
            return nearby["n_near"] > 1

    with pytest.raises(
        sd.PluginDeclarationError,
        match=r"plugin ByDataType: cut_by takes \['nearby'\], but it is called with one "
        r"argument per input kind: \['hits'\]",
    ):
        get(processor, [NearbyHits, ByDataType], "by_data_type", hit_times=HIT_TIMES)


def test_kind_checks_can_run_before_anything_runs():
    # the hook a registry can call once it knows the kinds of the inputs
    SummariseEvents.check_input_kinds({"events": "events", "hits": "hits"})
    with pytest.raises(sd.PluginDeclarationError, match="loop_over = 'events' is not the kind"):
        SummariseEvents.check_input_kinds({"events": "triggers", "hits": "hits"})
    with pytest.raises(sd.PluginDeclarationError, match="compute_loop takes"):
        SummariseEvents.check_input_kinds({"events": "events", "hits": "pulses"})
    CutCrowded.check_input_kinds({"hits": "hits", "nearby": "hits"})
    with pytest.raises(sd.PluginDeclarationError, match="set kind = 'pulses'"):
        HitInfo.check_input_kinds({"hits": "pulses", "nearby": "pulses"})
    with pytest.raises(sd.PluginDeclarationError, match="merges inputs of one kind"):
        HitInfo.check_input_kinds({"hits": "hits", "nearby": "nearby"})


def test_cut_declaration_errors():
    with pytest.raises(sd.PluginDeclarationError, match="plugin NoCut: define cut_by"):
        type("NoCut", (sd.CutPlugin,), {"Inputs": CutCrowded.Inputs})
    with pytest.raises(sd.PluginDeclarationError, match="cut_name 'time' must be an identifier"):
        type("TimeCut", (CutCrowded,), {"cut_name": "time"})


# ---------------------------------------------------------------------- down-chunking


class Wave(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    samples: sd.array(sd.f32, 1000)  # type: ignore[valid-type]


class Waveforms(sd.Plugin):
    """Memory-heavy output: hands on each step in pieces of at most ``max_rows`` rows."""

    class Inputs(sd.Inputs):
        hits: Hit

    class Outputs(sd.Outputs):
        waveforms: Wave = sd.output(kind="hits")

    class Options(sd.Options):
        max_rows: int = sd.option(2, ge=1, description="rows per output chunk")

    def compute(self, hits: np.ndarray, start: int, end: int) -> Iterator[sd.Chunk]:
        n = self.options.max_rows
        for first in range(0, len(hits), n):
            part = hits[first : first + n]
            rows = Wave.zeros(len(part))
            rows["time"], rows["endtime"] = part["time"], part["endtime"]
            rows["samples"] = part["area"][:, None]
            piece_end = end if first + n >= len(hits) else int(hits["time"][first + n])
            yield sd.Chunk(start if first == 0 else int(part["time"][0]), piece_end, rows)


def test_down_chunking_yields_several_chunks_per_step(processor):
    out = chunks(processor, [Waveforms], "waveforms", hit_times=HIT_TIMES, hit_bounds=(300,))
    assert [len(c) for c in out] == [2, 2, 2, 2, 2]
    assert [(c.start, c.end) for c in out] == [
        (0, 95),
        (95, 190),
        (190, 300),
        (300, 500),
        (500, 1000),
    ]
    rows = np.concatenate([c.data for c in out])
    assert list(rows["samples"][:, 0]) == list(range(1, 11))


def test_down_chunking_with_nothing_to_yield_gives_empty_chunks(processor):
    out = chunks(processor, [Waveforms], "waveforms", hit_times=(), hit_bounds=(300,))
    assert [(c.start, c.end, len(c)) for c in out] == [(0, 300, 0), (300, 1000, 0)]


# ---------------------------------------------------------------------- known limitation


class WideNearby(NearbyHits):
    """NearbyHits declaring a window wider than the whole run: its output waits for the end."""

    window = 2000


DIAMOND = {"hit_times": tuple(range(0, 1000, 50)), "hit_bounds": tuple(range(100, 1000, 100))}


def test_overlap_window_diamond_runs_with_mailboxes_as_deep_as_the_window(processor):
    # the merge reads hits and nearby: it takes hits only as fast as nearby comes out
    ctx = sd.Context(
        storage=None,
        plugins=[Hits, WideNearby],
        config=DIAMOND,
        processor=processor,
    )
    merged = ctx.get_array("run_1", ["hits", "nearby"])
    assert list(merged["n_near"][:3]) == [3, 4, 5]


@pytest.mark.timeout(180)
def test_overlap_window_diamond_with_small_mailboxes():
    """A reader of an overlap-window plugin's input and output lags by the window: the
    pipeline's MailboxGroup lets the blocked input mailbox exceed its bound instead of
    deadlocking."""
    ctx = sd.Context(
        storage=None,
        plugins=[Hits, WideNearby],
        config=DIAMOND,
        processor="threaded",
        max_messages=4,
    )
    threaded = ctx.get_array("run_1", ["hits", "nearby"])
    serial = ctx.new_context(processor="serial").get_array("run_1", ["hits", "nearby"])
    np.testing.assert_array_equal(threaded, serial)


@pytest.mark.timeout(180)
def test_overlap_window_diamond_survives_any_thread_interleaving():
    """Thread switches after every few bytecodes shuffle which thread blocks last; it used to
    hang (about one run in three) when that was the sender the group let overflow. A hang
    surfaces as the mailboxes' last-resort MailboxTimeout instead of a stuck test."""
    serial = sd.Context(
        storage=None, plugins=[Hits, WideNearby], config=DIAMOND, processor="serial"
    )
    expected = serial.get_array("run_1", ["hits", "nearby"])
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for max_messages in [1, 2, 3, 4] * 5:
            ctx = serial.new_context(processor="threaded", max_messages=max_messages, timeout=20)
            got = ctx.get_array("run_1", ["hits", "nearby"])
            np.testing.assert_array_equal(got, expected)
    finally:
        sys.setswitchinterval(interval)


class TwoWays(sd.OverlapWindowPlugin):
    """Two outputs of different kinds, each sent as far as the window allows."""

    window = 100

    class Inputs(sd.Inputs):
        hits: Hit

    class Outputs(sd.Outputs):
        nearby2: Nearby = sd.output(kind="hits")
        lonely: Event = sd.output(kind="lonely")

    def compute(self, hits: np.ndarray) -> dict[str, np.ndarray]:
        nearby = NearbyHits.compute(self, hits)  # type: ignore[arg-type]
        alone = nearby["n_near"] == 1
        lonely = Event.zeros(int(alone.sum()))
        lonely["time"], lonely["endtime"] = hits["time"][alone], hits["endtime"][alone]
        return {"nearby2": nearby, "lonely": lonely}


def test_overlap_window_with_two_outputs(processor):
    for bounds in [(), (120, 200, 300), (40, 95, 170, 205, 495, 600)]:
        both = get(processor, [TwoWays], "nearby2", hit_times=HIT_TIMES, hit_bounds=bounds)
        assert list(both["n_near"]) == N_NEAR
        lonely = get(processor, [TwoWays], "lonely", hit_times=HIT_TIMES, hit_bounds=bounds)
        assert list(lonely["time"]) == [610]


class Halves(sd.Plugin):
    """Down-chunking with two outputs: each step in two halves, for both outputs."""

    class Inputs(sd.Inputs):
        hits: Hit

    class Outputs(sd.Outputs):
        early: Hit = sd.output(kind="hits")
        areas: Nearby = sd.output(kind="hits")

    def compute(self, hits: np.ndarray, start: int, end: int) -> Iterator[dict[str, sd.Chunk]]:
        middle = start + (end - start) // 2
        ends = np.maximum.accumulate(hits["endtime"])
        i = int(np.searchsorted(hits["time"], middle))
        if i and ends[i - 1] > middle:  # do not cut a hit: split where it ends
            middle = int(ends[i - 1])
            i = int(np.searchsorted(hits["time"], middle))
        for lo, hi, part in ((start, middle, hits[:i]), (middle, end, hits[i:])):
            areas = Nearby.zeros(len(part))
            areas["time"], areas["endtime"] = part["time"], part["endtime"]
            areas["n_near"] = part["area"]
            yield {"early": sd.Chunk(lo, hi, part), "areas": sd.Chunk(lo, hi, areas)}


def test_down_chunking_with_two_outputs(processor):
    out = chunks(processor, [Halves], "areas", hit_times=HIT_TIMES, hit_bounds=(300,))
    assert [(c.start, c.end) for c in out] == [(0, 150), (150, 300), (300, 650), (650, 1000)]
    assert list(np.concatenate([c.data for c in out])["n_near"]) == list(range(1, 11))
    early = get(processor, [Halves], "early", hit_times=HIT_TIMES, hit_bounds=(300,))
    assert list(early["time"]) == list(HIT_TIMES)
