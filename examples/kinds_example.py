"""Every plugin kind in one small pipeline, and proof that chunking does not change results.

Run it with ``python examples/kinds_example.py``.

::

    Pulses ─pulses─┬─> Crowding (overlap window) ─crowding (kind pulses)──┐
                   ├─> Waveforms (down-chunking) ─waveforms (kind pulses) │
                   └──────────────┬───────────────────────────────────────┤
    Triggers ─triggers─> TriggerSummary (loop, over triggers) ─summary ───┤
                   └──> PulsesInTriggers (plain, two kinds synced) ─counts┤
                                         CutBusy (cut) ─cut_busy ─────────┤
                                         PulseInfo (merge-only) ─pulse_info

- ``Pulses`` and ``Triggers`` are sources of two kinds, each chunked its own way; plugins
  reading both get, per call, the rows of each kind inside one common time interval.
- ``Crowding`` is an overlap-window plugin: each pulse counts its neighbours within 2 us,
  also across chunk boundaries.
- ``TriggerSummary`` is a loop plugin: once per trigger window, with the pulses inside it.
- ``CutBusy`` is a cut plugin and ``PulseInfo`` a merge-only plugin (pulses, crowding and the
  cut as one data type).
- ``Waveforms`` down-chunks: its compute is a generator handing on big rows a few at a time.
- Stored data keeps the chunks each plugin made: loaded back, every data type arrives in the
  chunks it was computed in, so what is computed from it is the same as live.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator

import numpy as np

import strax_decl as sd

RUN_NS = 2_000_000  # a 2 ms run


# ---------------------------------------------------------------------- schemas


class Pulse(sd.Schema):
    time: sd.i64 = sd.field("start time", unit="ns")
    endtime: sd.i64 = sd.field("exclusive end time", unit="ns")
    area: sd.f64 = sd.field("integral", unit="PE")
    channel: sd.i16 = sd.field("channel that saw it")


class Trigger(sd.Schema):
    time: sd.i64 = sd.field("start of the trigger window", unit="ns")
    endtime: sd.i64 = sd.field("end of the trigger window", unit="ns")


class Crowd(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    n_near: sd.i32 = sd.field("pulses starting within the window, this one included")


class TriggerRow(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    n_pulses: sd.i32 = sd.field("pulses inside the trigger window")
    area: sd.f64 = sd.field("their summed area", unit="PE")
    busiest: sd.i32 = sd.field("largest n_near of those pulses")


class Count(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    n_inside: sd.i32 = sd.field("pulses inside the trigger window")


class Waveform(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    samples: sd.array(sd.f32, 200) = sd.field("simulated waveform", unit="PE/ns")  # type: ignore[valid-type]


# ---------------------------------------------------------------------- sources


def _chunked(rows: np.ndarray, chunk_ns: int) -> Iterator[sd.Chunk]:
    """Chunks of about ``chunk_ns``, each boundary moved to where it cuts no row."""
    ends = np.maximum.accumulate(rows["endtime"]) if len(rows) else rows["endtime"]
    edges = [0]
    for t in range(chunk_ns, RUN_NS, chunk_ns):
        i = int(np.searchsorted(rows["time"], t))
        while i and ends[i - 1] > t:  # a row straddles t: move t to that row's end
            t = int(ends[i - 1])
            i = int(np.searchsorted(rows["time"], t))
        if edges[-1] < t < RUN_NS:
            edges.append(t)
    for lo, hi in itertools.pairwise([*edges, RUN_NS]):
        yield sd.Chunk(lo, hi, rows[(rows["time"] >= lo) & (rows["time"] < hi)])


class Pulses(sd.Plugin):
    """Random pulses, clumped around 'interactions'."""

    version = "0.1.0"

    class Outputs(sd.Outputs):
        pulses: Pulse = sd.output()

    class Options(sd.Options):
        seed: int = sd.option(1, description="random seed")
        pulse_chunk_ns: int = sd.option(
            100_000, gt=0, track=False, description="chunk length of the pulse source [ns]"
        )

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        rng = np.random.default_rng(self.options.seed)
        centres = rng.integers(0, RUN_NS - 10_000, 300)
        times = np.sort(centres[rng.integers(0, len(centres), 3000)] + rng.integers(0, 5000, 3000))
        rows = Pulse.zeros(len(times))
        rows["time"] = times
        rows["endtime"] = times + rng.integers(20, 300, len(times))
        rows["area"] = rng.exponential(50, len(times)).round(1)
        rows["channel"] = rng.integers(0, 8, len(times))
        return _chunked(rows, self.options.pulse_chunk_ns)


class Triggers(sd.Plugin):
    """Disjoint trigger windows of 8 us, another kind with its own chunking."""

    version = "0.1.0"

    class Outputs(sd.Outputs):
        triggers: Trigger

    class Options(sd.Options):
        seed: int = sd.option(1, description="random seed")
        trigger_chunk_ns: int = sd.option(
            170_000, gt=0, track=False, description="chunk length of the trigger source [ns]"
        )

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        starts = np.arange(0, RUN_NS - 10_000, 20_000) + self.options.seed % 7 * 1000
        rows = Trigger.zeros(len(starts))
        rows["time"], rows["endtime"] = starts, starts + 8_000
        return _chunked(rows, self.options.trigger_chunk_ns)


# ---------------------------------------------------------------------- the kinds


class Crowding(sd.OverlapWindowPlugin):
    """Overlap window: per pulse, the pulses starting within ``crowd_ns`` of it."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        pulses: Pulse

    class Outputs(sd.Outputs):
        crowding: Crowd = sd.output(kind="pulses")

    class Options(sd.Options):
        crowd_ns: int = sd.option(2_000, ge=0, description="half-width of the window [ns]")

    def window_size(self) -> int:
        return self.options.crowd_ns  # the window follows the option

    def compute(self, pulses: np.ndarray) -> np.ndarray:
        t, w = pulses["time"], self.options.crowd_ns
        out = Crowd.zeros(len(pulses))
        out["time"], out["endtime"] = pulses["time"], pulses["endtime"]
        out["n_near"] = np.searchsorted(t, t + w, "right") - np.searchsorted(t, t - w, "left")
        return out


class TriggerSummary(sd.LoopPlugin):
    """Loop: once per trigger window, with the pulses (and their crowding) inside it."""

    version = "0.1.0"
    loop_over = "triggers"

    class Inputs(sd.Inputs):
        triggers: Trigger
        pulses: Pulse
        crowding: Crowd  # same kind as pulses: arrives merged into the pulses argument

    class Outputs(sd.Outputs):
        trigger_summary: TriggerRow = sd.output(kind="triggers")

    def compute_loop(self, trigger: np.void, pulses: np.ndarray) -> dict[str, float]:
        return {
            "n_pulses": len(pulses),
            "area": pulses["area"].sum(),
            "busiest": pulses["n_near"].max(initial=0),
        }


class PulsesInTriggers(sd.Plugin):
    """A plain plugin over two kinds: the framework time-synchronises them."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        triggers: Trigger
        pulses: Pulse

    class Outputs(sd.Outputs):
        trigger_counts: Count = sd.output(kind="triggers")

    def compute(self, triggers: np.ndarray, pulses: np.ndarray) -> np.ndarray:
        out = Count.zeros(len(triggers))
        out["time"], out["endtime"] = triggers["time"], triggers["endtime"]
        first = np.searchsorted(pulses["time"], triggers["time"], "left")
        for i, (a, e) in enumerate(zip(first, triggers["endtime"], strict=True)):
            inside = pulses[a:][pulses["time"][a:] < e]
            out["n_inside"][i] = (inside["endtime"] <= e).sum()
        return out


class CutBusy(sd.CutPlugin):
    """Cut: the pulse has at least ``busy_min`` neighbours."""

    version = "0.1.0"
    kind = "pulses"  # crowding is a data type of kind pulses
    cut_description = "the pulse is in a busy stretch"

    class Inputs(sd.Inputs):
        crowding: Crowd

    class Options(sd.Options):
        busy_min: int = sd.option(15, ge=1, description="fewest pulses nearby to be busy")

    def cut_by(self, pulses: np.ndarray) -> np.ndarray:
        return pulses["n_near"] >= self.options.busy_min


CutBusyRow = CutBusy.outputs["cut_busy"].schema  # the schema the cut plugin derived


class PulseInfo(sd.MergeOnlyPlugin):
    """Merge-only: pulses, their crowding and the cut as one data type."""

    version = "0.1.0"
    provides = "pulse_info"
    kind = "pulses"

    class Inputs(sd.Inputs):
        pulses: Pulse
        crowding: Crowd
        cut_busy: CutBusyRow


class Waveforms(sd.Plugin):
    """Down-chunking: big rows handed on ``rows_per_piece`` at a time, never all at once."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        pulses: Pulse

    class Outputs(sd.Outputs):
        waveforms: Waveform = sd.output(kind="pulses")

    class Options(sd.Options):
        rows_per_piece: int = sd.option(100, ge=1, description="rows per output chunk")

    def compute(self, pulses: np.ndarray, start: int, end: int) -> Iterator[sd.Chunk]:
        ends = np.maximum.accumulate(pulses["endtime"]) if len(pulses) else pulses["endtime"]
        piece_start, first = start, 0
        while first < len(pulses):
            last = min(first + self.options.rows_per_piece, len(pulses))
            while last < len(pulses) and ends[last - 1] > pulses["time"][last]:
                last += 1  # never cut a pulse: extend the piece to a safe boundary
            part = pulses[first:last]
            rows = Waveform.zeros(len(part))
            rows["time"], rows["endtime"] = part["time"], part["endtime"]
            rows["samples"] = (part["area"] / 200)[:, None]
            piece_end = end if last == len(pulses) else int(pulses["time"][last])
            yield sd.Chunk(piece_start, piece_end, rows)
            piece_start, first = piece_end, last


PLUGINS: list[type[sd.Plugin]] = [
    Pulses,
    Triggers,
    Crowding,
    TriggerSummary,
    PulsesInTriggers,
    CutBusy,
    PulseInfo,
    Waveforms,
]
TARGETS = ["crowding", "trigger_summary", "trigger_counts", "pulse_info", "waveforms"]


def main() -> None:
    settings = {"plugins": PLUGINS}
    reference = sd.Context(
        storage=None,
        config={"pulse_chunk_ns": RUN_NS, "trigger_chunk_ns": RUN_NS},  # one chunk each
        processor="serial",
        **settings,
    )
    want = {t: reference.get_array("run_1", t) for t in TARGETS}
    info = want["pulse_info"]
    print(f"{len(info)} pulses, {info['cut_busy'].sum()} busy; fields {info.dtype.names}")
    summary = want["trigger_summary"]
    print(f"{len(summary)} triggers, {summary['n_pulses'].sum()} pulses inside them")
    assert (summary["n_pulses"] == want["trigger_counts"]["n_inside"]).all()

    with tempfile.TemporaryDirectory() as store:
        ctx = sd.Context(storage=store, **settings)  # threaded, many small chunks
        print(ctx.plan("run_1", "pulse_info", save=["pulse_info"]))
        for t in TARGETS:
            got = ctx.get_array("run_1", t, save=["pulse_info"])
            assert np.array_equal(got, want[t]), t
        print("chunked and threaded: identical to the single-chunk run")

        computed = {
            t: sum(1 for _ in sd.Context(storage=None, **settings).iter_chunks("run_1", t))
            for t in ["pulses", *TARGETS]
        }
        stored = {
            t: ctx.stores[0].info(ctx.key_for("run_1", t)).n_chunks for t in ["pulses", *TARGETS]
        }
        print(f"chunks computed: {computed}\nchunks stored:   {stored}")
        for t in TARGETS:  # loaded back from the store: still identical
            assert np.array_equal(ctx.get_array("run_1", t), want[t]), t
        print("loaded from the store: identical")


if __name__ == "__main__":
    main()
