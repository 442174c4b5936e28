"""A small straxen: records to corrected events, with calibrations taken per run.

::

    records ─> hits ─> peaklets ─> peaklet_classification ─> peak_basics ─> peak_proximity
                                                                  │
                                                                  └─> events ─> event_basics

- ``records`` come from the demo's simulated detector (``demo_plugins.SimRecords``).
- ``Hits`` (``parallel``) finds hits in every record and converts their areas to
  photoelectrons with **per-channel gains of the run** (``pmt_gains``, a per-run option: a
  correction in the analysis, see ``analysis.py``).
- ``Peaklets`` clusters hits of all channels; ``PeakletClassification`` says S1 / S2;
  ``PeakBasics`` measures widths and joins the type (same kind, ``peaklets``).
- ``PeakProximity`` (an overlap window) counts bigger peaks nearby; ``Events`` (an overlap
  window) opens an event around each large S2; ``EventBasics`` (a loop) picks the main S1
  and S2 and corrects the S2 area for the **electron lifetime of the run**
  (``electron_lifetime``, a per-run option).

Every plugin's result is independent of how the records are chunked (the test checks it with
``strax_decl.testing``). The numba kernels are the demo's.
"""

from __future__ import annotations

import numpy as np
from demo_plugins import (
    PEAK_SAMPLES,
    SAMPLE_NS,
    Record,
    SimRecords,
    area_quantile_times,
    cluster_hits,
    fill_peaks,
    find_hits,
)

import strax_decl as sd

__all__ = [
    "PLUGINS",
    "EventBasics",
    "Events",
    "Hits",
    "PeakBasics",
    "PeakProximity",
    "PeakletClassification",
    "Peaklets",
]

N_CHANNELS = 8  # SimRecords' default

# --------------------------------------------------------------------------- row schemas


class Hit(sd.Schema):
    time: sd.i64 = sd.field("start of the hit", unit="ns")
    endtime: sd.i64 = sd.field("end of the hit (exclusive)", unit="ns")
    channel: sd.i16 = sd.field("photosensor channel")
    area: sd.f32 = sd.field("area, gain-corrected", unit="PE")


class Peaklet(sd.Schema):
    time: sd.i64 = sd.field("start time of the first hit", unit="ns")
    endtime: sd.i64 = sd.field("end time of the last hit (exclusive)", unit="ns")
    area: sd.f32 = sd.field("total area of the hits", unit="PE")
    n_hits: sd.i32 = sd.field("hits clustered into the peaklet")
    n_channels: sd.i16 = sd.field("channels with at least one hit")
    sample_width: sd.i32 = sd.field("width of one waveform sample", unit="ns")
    data: sd.array(sd.f32, PEAK_SAMPLES) = sd.field(  # type: ignore[valid-type]
        "summed waveform: hit area per sample", unit="PE"
    )


class Classification(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    peak_type: sd.i8 = sd.field("0: unclassified, 1: S1, 2: S2")


class PeakBasic(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    area: sd.f32 = sd.field("total area", unit="PE")
    n_channels: sd.i16 = sd.field("channels with at least one hit")
    width: sd.i32 = sd.field("width containing the central 50% of the area", unit="ns")
    rise_time: sd.i32 = sd.field("time from 10% to 50% of the area", unit="ns")
    peak_type: sd.i8 = sd.field("0: unclassified, 1: S1, 2: S2")


class Proximity(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    n_competing: sd.i32 = sd.field("bigger peaks within the proximity window")


class Event(sd.Schema):
    time: sd.i64 = sd.field("start of the event window", unit="ns")
    endtime: sd.i64 = sd.field("end of the event window (exclusive)", unit="ns")
    n_peaks: sd.i32 = sd.field("peaks fully inside the window")


class EventBasic(sd.Schema):
    time: sd.i64 = sd.field("start of the event window", unit="ns")
    endtime: sd.i64 = sd.field("end of the event window (exclusive)", unit="ns")
    s1_area: sd.f32 = sd.field("area of the main S1 (0: none)", unit="PE")
    s2_area: sd.f32 = sd.field("area of the main S2", unit="PE")
    cs2_area: sd.f32 = sd.field("S2 area corrected for the electron lifetime", unit="PE")
    drift_time: sd.i64 = sd.field("main S2 time minus main S1 time (-1: no S1)", unit="ns")


# --------------------------------------------------------------------------- plugins


class Hits(sd.Plugin):
    """Hits above threshold in every record, in photoelectrons (per-channel gains)."""

    version = "0.1.0"
    parallel = True

    class Inputs(sd.Inputs):
        records: Record

    class Outputs(sd.Outputs):
        hits: Hit = sd.output(description="samples above threshold, in PE")

    class Options(sd.Options):
        hit_threshold: float = sd.option(10.0, gt=0, description="hit threshold [ADC]")
        pmt_gains: tuple[float, ...] = sd.option(
            (50.0,) * N_CHANNELS,
            per_run=True,
            description="area of one photon per channel [ADC x samples]",
        )

    def compute(self, records: np.ndarray) -> np.ndarray:
        gains = np.asarray(self.options.pmt_gains, np.float64)
        if len(records) and records["channel"].max() >= len(gains):
            raise ValueError(
                f"Hits: pmt_gains has {len(gains)} channels, records reach channel "
                f"{records['channel'].max()}"
            )
        start, end, channel, area = find_hits(
            records["time"], records["channel"], records["data"], SAMPLE_NS,
            self.options.hit_threshold, 4,
        )  # fmt: skip
        order = np.argsort(start, kind="stable")
        hits = Hit.zeros(len(start))
        hits["time"], hits["endtime"], hits["channel"] = start[order], end[order], channel[order]
        hits["area"] = area[order] / gains[channel[order]]
        return hits


class Peaklets(sd.OverlapWindowPlugin):
    """Hits of all channels clustered into peaklets (gaps above ``peaklet_gap`` split).

    An overlap window of the largest gap keeps clusters whole across chunk boundaries."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        hits: Hit

    class Outputs(sd.Outputs):
        peaklets: Peaklet

    class Options(sd.Options):
        peaklet_gap: int = sd.option(200, ge=0, description="largest gap inside a peaklet [ns]")

    def window_size(self) -> tuple[int, int]:
        return 10 * (self.options.peaklet_gap + 1000), 10 * (self.options.peaklet_gap + 1000)

    def compute(self, hits: np.ndarray) -> np.ndarray:
        start, end = hits["time"], hits["endtime"]
        peak_of_hit = cluster_hits(start, end, self.options.peaklet_gap)
        peaklets = Peaklet.zeros(int(peak_of_hit[-1]) + 1 if len(peak_of_hit) else 0)
        cols = {
            name: np.zeros(len(peaklets), peaklets.dtype[name].base)
            for name in ("time", "endtime", "area", "n_hits", "n_channels", "sample_width")
        }
        waveform = np.zeros((len(peaklets), PEAK_SAMPLES), np.float32)
        fill_peaks(
            peak_of_hit, start, end, hits["channel"], hits["area"].astype(np.float64),
            cols["time"], cols["endtime"], cols["area"], cols["n_hits"], cols["n_channels"],
            cols["sample_width"], waveform, SAMPLE_NS,
        )  # fmt: skip
        for name, values in cols.items():
            peaklets[name] = values
        peaklets["data"] = waveform
        return peaklets


def widths(peaklets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(50% area width, 10%-50% rise time) of each peaklet, in ns."""
    q = area_quantile_times(
        peaklets["data"], peaklets["sample_width"], np.array([0.1, 0.25, 0.5, 0.75])
    )
    return np.maximum(q[:, 3] - q[:, 1], 0), np.maximum(q[:, 2] - q[:, 0], 0)


class PeakletClassification(sd.Plugin):
    """S1 (narrow, several channels) or S2 (wide and big)."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        peaklets: Peaklet

    class Outputs(sd.Outputs):
        peaklet_classification: Classification = sd.output(kind="peaklets")

    class Options(sd.Options):
        s1_max_width: int = sd.option(100, gt=0, description="widest S1 (50% area width) [ns]")
        s1_min_channels: int = sd.option(2, ge=1, description="fewest channels of an S1")
        s2_min_area: float = sd.option(100.0, ge=0, description="smallest S2 area [PE]")

    def compute(self, peaklets: np.ndarray) -> np.ndarray:
        o = self.options
        width, _ = widths(peaklets)
        out = Classification.zeros(len(peaklets))
        out["time"], out["endtime"] = peaklets["time"], peaklets["endtime"]
        s1 = (width <= o.s1_max_width) & (peaklets["n_channels"] >= o.s1_min_channels)
        s2 = (width > o.s1_max_width) & (peaklets["area"] >= o.s2_min_area)
        out["peak_type"] = np.where(s1, 1, np.where(s2, 2, 0))
        return out


class PeakBasics(sd.Plugin):
    """Area, widths and type of every peaklet (two inputs of one kind)."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        peaklets: Peaklet
        peaklet_classification: Classification

    class Outputs(sd.Outputs):
        peak_basics: PeakBasic = sd.output(kind="peaklets")

    def compute(self, peaklets: np.ndarray) -> np.ndarray:
        width, rise = widths(peaklets)
        out = PeakBasic.zeros(len(peaklets))
        for name in ("time", "endtime", "area", "n_channels", "peak_type"):
            out[name] = peaklets[name]
        out["width"], out["rise_time"] = width.astype(np.int32), rise.astype(np.int32)
        return out


class PeakProximity(sd.OverlapWindowPlugin):
    """How many bigger peaks lie within ``proximity_window`` of each peak (either side)."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        peak_basics: PeakBasic

    class Outputs(sd.Outputs):
        peak_proximity: Proximity = sd.output(kind="peaklets")

    class Options(sd.Options):
        proximity_window: int = sd.option(50_000, gt=0, description="half width [ns]")

    def window_size(self) -> tuple[int, int]:
        w = self.options.proximity_window + 1
        return w, w

    def compute(self, peaklets: np.ndarray) -> np.ndarray:
        w = self.options.proximity_window
        t, area = peaklets["time"], peaklets["area"]
        lo = np.searchsorted(t, t - w, side="left")
        hi = np.searchsorted(t, t + w, side="right")
        out = Proximity.zeros(len(t))
        out["time"], out["endtime"] = t, peaklets["endtime"]
        out["n_competing"] = [
            int((area[a:b] > area[i]).sum()) for i, (a, b) in enumerate(zip(lo, hi, strict=True))
        ]
        return out


class Events(sd.OverlapWindowPlugin):
    """An event window around every S2 above ``trigger_area``; overlapping windows merge."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        peak_basics: PeakBasic

    class Outputs(sd.Outputs):
        events: Event

    class Options(sd.Options):
        trigger_area: float = sd.option(200.0, ge=0, description="smallest triggering S2 [PE]")
        max_drift: int = sd.option(100_000, ge=0, description="longest drift time [ns]")
        window_after: int = sd.option(5_000, ge=0, description="window after the S2 [ns]")

    def window_size(self) -> tuple[int, int]:
        o = self.options
        return o.window_after + 1_000, o.max_drift + 2_000

    def compute(self, peaklets: np.ndarray, start: int, end: int) -> np.ndarray:
        o = self.options
        peaks = peaklets
        trig = peaks[(peaks["peak_type"] == 2) & (peaks["area"] >= o.trigger_area)]
        lo = np.clip(trig["time"] - o.max_drift - 1_000, start, end)
        hi = np.clip(trig["endtime"] + o.window_after, start, end)
        new = np.ones(len(lo), bool)
        if len(lo):
            new[1:] = lo[1:] > np.maximum.accumulate(hi)[:-1]
        first_of_event = np.flatnonzero(new)
        events = Event.zeros(len(first_of_event))
        if len(events):
            events["time"] = lo[new]
            events["endtime"] = np.maximum.reduceat(hi, first_of_event)
        first = np.searchsorted(peaks["time"], events["time"], side="left")
        last = np.searchsorted(peaks["time"], events["endtime"], side="left")
        events["n_peaks"] = last - first
        return events


class EventBasics(sd.LoopPlugin):
    """Main S1 and S2 of each event; the S2 area corrected for the run's electron lifetime."""

    version = "0.1.0"
    loop_over = "events"

    class Inputs(sd.Inputs):
        events: Event
        peak_basics: PeakBasic

    class Outputs(sd.Outputs):
        event_basics: EventBasic = sd.output(kind="events")

    class Options(sd.Options):
        electron_lifetime: float = sd.option(
            500_000.0, gt=0, per_run=True, description="electron lifetime [ns]"
        )

    def compute_loop(self, event: np.void, peaklets: np.ndarray) -> dict[str, float]:
        peaks = peaklets
        s2s = np.flatnonzero(peaks["peak_type"] == 2)
        if not len(s2s):
            return {"drift_time": -1}
        s2 = peaks[s2s[np.argmax(peaks["area"][s2s])]]
        row = {"s2_area": s2["area"], "cs2_area": s2["area"], "drift_time": -1}
        s1s = np.flatnonzero((peaks["peak_type"] == 1) & (peaks["time"] < s2["time"]))
        if len(s1s):
            s1 = peaks[s1s[np.argmax(peaks["area"][s1s])]]
            drift = int(s2["time"] - s1["time"])
            row.update(
                s1_area=s1["area"],
                drift_time=drift,
                cs2_area=s2["area"] * np.exp(drift / self.options.electron_lifetime),
            )
        return row


PLUGINS: list[type[sd.Plugin]] = [
    SimRecords,
    Hits,
    Peaklets,
    PeakletClassification,
    PeakBasics,
    PeakProximity,
    Events,
    EventBasics,
]
"""The analysis chain, in dependency order."""
