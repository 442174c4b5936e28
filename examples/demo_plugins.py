"""Plugins of the demo: a small simulated detector, from waveforms to events.

::

    SimRecords ─records─> PeakFinder ─peaks─> PeakBasics ─peak_basics
                                        │                     │
                                        └──────────┬──────────┘
                                                   v
                                 EventFinder ─events─> EventBasics ─event_basics─┬─> CutS1
                                                                                 └─> CutDrift
    EventInfo = event_basics + cut_s1 + cut_drift (merged on the fly)

- ``SimRecords`` (source) simulates a detector with ``n_channels`` photosensors: each
  interaction gives a prompt light signal (S1) and, after a drift time, a larger and wider one
  (S2); photosensors also see single dark-count photons. Each pulse on a channel becomes one
  fixed-length record of ADC samples with electronic noise.
- ``PeakFinder`` (``parallel``: chunks in a thread pool) finds hits above threshold in each
  record and clusters hits of all channels into peaks; ``PeakBasics`` measures and classifies
  them (S1 / S2).
- ``EventFinder`` (an *overlap window* plugin) opens an event window around each large S2;
  ``EventBasics`` (a *loop* plugin) picks the main S1 and S2 of each event; ``CutS1`` and
  ``CutDrift`` (*cut* plugins) flag good events; ``EventInfo`` (a *merge-only* plugin) serves
  the event fields and the cuts as one data type.

The heavy loops are numba kernels (``@njit(nogil=True, cache=True)``): they run without the
GIL, so the threaded pipeline overlaps them with compression and saving, and they are compiled
once and cached next to this file.

Use it from Python (``examples/demo.py``) or the command line::

    strax-decl run --plugins examples/demo_plugins.py demo_000
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import numpy as np
from numba import njit

import strax_decl as sd

__all__ = [
    "PLUGINS",
    "CutDrift",
    "CutS1",
    "Event",
    "EventBasic",
    "EventBasics",
    "EventFinder",
    "EventInfo",
    "Peak",
    "PeakBasic",
    "PeakBasics",
    "PeakFinder",
    "Record",
    "SimRecords",
]

RECORD_SAMPLES = 110  # samples per record
SAMPLE_NS = 10  # ns per record sample
PEAK_SAMPLES = 50  # samples of a peak's summed waveform
MAX_HIT_SAMPLES = 4  # long runs above threshold are split into hits of this many samples
SPE_TEMPLATE = np.array([0.5, 0.3, 0.15, 0.05])  # shape of one photon's pulse (sums to 1)

# --------------------------------------------------------------------------- row schemas


class Record(sd.Schema):
    time: sd.i64 = sd.field("start time of the record", unit="ns")
    length: sd.i32 = sd.field("number of samples", unit="samples")
    dt: sd.i16 = sd.field("sample width", unit="ns")
    channel: sd.i16 = sd.field("photosensor channel")
    data: sd.array(sd.i16, RECORD_SAMPLES) = sd.field(  # type: ignore[valid-type]
        "baseline-subtracted waveform", unit="ADC"
    )


class Peak(sd.Schema):
    time: sd.i64 = sd.field("start time of the first hit", unit="ns")
    endtime: sd.i64 = sd.field("end time of the last hit (exclusive)", unit="ns")
    area: sd.f32 = sd.field("total area of the hits", unit="PE")
    n_hits: sd.i32 = sd.field("hits clustered into the peak")
    n_channels: sd.i16 = sd.field("channels with at least one hit")
    sample_width: sd.i32 = sd.field("width of one waveform sample", unit="ns")
    data: sd.array(sd.f32, PEAK_SAMPLES) = sd.field(  # type: ignore[valid-type]
        "summed waveform: hit area per sample", unit="PE"
    )


class PeakBasic(sd.Schema):
    time: sd.i64 = sd.field("start time", unit="ns")
    endtime: sd.i64 = sd.field("end time (exclusive)", unit="ns")
    width: sd.i32 = sd.field("width containing the central 50% of the area", unit="ns")
    rise_time: sd.i32 = sd.field("time from 10% to 50% of the area", unit="ns")
    peak_type: sd.i8 = sd.field("0: unclassified, 1: S1, 2: S2")


class Event(sd.Schema):
    time: sd.i64 = sd.field("start of the event window", unit="ns")
    endtime: sd.i64 = sd.field("end of the event window (exclusive)", unit="ns")
    n_peaks: sd.i32 = sd.field("peaks fully inside the window")
    trigger_area: sd.f32 = sd.field("area of the largest triggering S2", unit="PE")


class EventBasic(sd.Schema):
    time: sd.i64 = sd.field("start of the event window", unit="ns")
    endtime: sd.i64 = sd.field("end of the event window (exclusive)", unit="ns")
    s1_area: sd.f32 = sd.field("area of the main S1 (0: none)", unit="PE")
    s1_n_channels: sd.i16 = sd.field("channels seeing the main S1")
    s2_area: sd.f32 = sd.field("area of the main S2", unit="PE")
    s2_width: sd.i32 = sd.field("50% area width of the main S2", unit="ns")
    drift_time: sd.i64 = sd.field("main S2 time minus main S1 time (-1: no S1)", unit="ns")


# --------------------------------------------------------------------------- numba kernels


@njit(nogil=True, cache=True)
def deposit_photons(
    data: np.ndarray, record: np.ndarray, sample: np.ndarray, area: np.ndarray, spe: np.ndarray
) -> None:  # pragma: no cover - compiled by numba
    """Add one photon pulse (``area`` x ``spe``) to ``data[record, sample:]`` per photon."""
    n_samples = data.shape[1]
    for i in range(len(record)):
        r = record[i]
        for k in range(len(spe)):
            j = sample[i] + k
            if j < n_samples:
                data[r, j] += area[i] * spe[k]


@njit(nogil=True, cache=True)
def find_hits(
    time: np.ndarray,
    channel: np.ndarray,
    data: np.ndarray,
    dt: int,
    threshold: float,
    max_samples: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - numba
    """Runs of samples above ``threshold`` (split every ``max_samples``).

    Returns (start, end, channel, area) of every hit, in record order.
    """
    n = 0
    for r in range(data.shape[0]):
        run = 0
        for j in range(data.shape[1]):
            if data[r, j] > threshold:
                if run % max_samples == 0:
                    n += 1
                run += 1
            else:
                run = 0
    h_start = np.empty(n, np.int64)
    h_end = np.empty(n, np.int64)
    h_channel = np.empty(n, np.int16)
    h_area = np.empty(n, np.float64)
    i = -1
    for r in range(data.shape[0]):
        run = 0
        for j in range(data.shape[1]):
            value = data[r, j]
            if value > threshold:
                if run % max_samples == 0:
                    i += 1
                    h_start[i] = time[r] + j * dt
                    h_channel[i] = channel[r]
                    h_area[i] = 0.0
                h_end[i] = time[r] + (j + 1) * dt
                h_area[i] += value
                run += 1
            else:
                run = 0
    return h_start, h_end, h_channel, h_area


@njit(nogil=True, cache=True)
def cluster_hits(start: np.ndarray, end: np.ndarray, gap: int) -> np.ndarray:  # pragma: no cover
    """Peak number of each hit (hits sorted by start): a gap > ``gap`` ns starts a new peak."""
    out = np.empty(len(start), np.int64)
    peak = -1
    reach = np.iinfo(np.int64).min
    for i in range(len(start)):
        if peak < 0 or start[i] > reach + gap:
            peak += 1
            reach = end[i]
        elif end[i] > reach:
            reach = end[i]
        out[i] = peak
    return out


@njit(nogil=True, cache=True)
def fill_peaks(
    peak_of_hit: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    channel: np.ndarray,
    area: np.ndarray,
    p_time: np.ndarray,
    p_end: np.ndarray,
    p_area: np.ndarray,
    p_hits: np.ndarray,
    p_channels: np.ndarray,
    p_width: np.ndarray,
    p_data: np.ndarray,
    min_sample_ns: int,
) -> None:  # pragma: no cover - compiled by numba
    """Per-peak span, area, counts and summed waveform (hits grouped by peak, in order)."""
    n_peaks = len(p_time)
    n_samples = p_data.shape[1]
    first = 0
    for p in range(n_peaks):
        last = first
        while last < len(peak_of_hit) and peak_of_hit[last] == p:
            last += 1
        t0 = start[first]
        t1 = end[first]
        total = 0.0
        seen = np.zeros(64, np.bool_)
        for i in range(first, last):
            t1 = max(t1, end[i])
            total += area[i]
            seen[channel[i] % 64] = True
        width = max(min_sample_ns, -(-(t1 - t0) // n_samples))
        for i in range(first, last):
            mid = (start[i] + end[i]) // 2
            k = min((mid - t0) // width, n_samples - 1)
            p_data[p, k] += area[i]
        p_time[p] = t0
        p_end[p] = t1
        p_area[p] = total
        p_hits[p] = last - first
        p_channels[p] = seen.sum()
        p_width[p] = width
        first = last


@njit(nogil=True, cache=True)
def area_quantile_times(
    data: np.ndarray, sample_width: np.ndarray, quantiles: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled by numba
    """Time (ns after the peak start) at which each area quantile is reached, per peak."""
    out = np.zeros((data.shape[0], len(quantiles)), np.float64)
    for p in range(data.shape[0]):
        total = 0.0
        for k in range(data.shape[1]):
            total += data[p, k]
        if total <= 0:
            continue
        for q in range(len(quantiles)):
            target = quantiles[q] * total
            running = 0.0
            for k in range(data.shape[1]):
                value = data[p, k]
                if running + value >= target and value > 0:
                    frac = (target - running) / value
                    out[p, q] = (k + frac) * sample_width[p]
                    break
                running += value
    return out


# --------------------------------------------------------------------------- plugins


class SimRecords(sd.Plugin):
    """Source: simulated waveform records of one run, chunk by chunk (seeded per run)."""

    version = "0.1.0"

    class Outputs(sd.Outputs):
        records: Record = sd.output(description="digitised pulses of every channel")

    class Options(sd.Options):
        n_channels: int = sd.option(8, ge=1, le=64, description="photosensor channels")
        run_duration: int = sd.option(
            500_000_000, gt=0, description="length of each simulated run [ns]"
        )
        chunk_duration: int = sd.option(
            50_000_000, ge=1_000_000, description="length of one source chunk [ns]"
        )
        event_rate: float = sd.option(200.0, ge=0, description="interactions per second")
        dark_rate: float = sd.option(2000.0, ge=0, description="dark counts per second and channel")
        s1_photons: float = sd.option(40.0, ge=0, description="mean photons detected per S1")
        s2_photons: float = sd.option(2000.0, ge=0, description="mean photons detected per S2")
        max_drift: int = sd.option(100_000, ge=0, description="longest drift time [ns]")
        gain: float = sd.option(50.0, gt=0, description="area of one photon [ADC x samples]")
        noise: float = sd.option(2.0, ge=0, description="electronic noise sigma [ADC]")
        seed: int = sd.option(0, description="random seed (combined with the run id)")

    def run_end(self, run_id: str) -> int:
        """The simulated run spans ``[0, run_duration)``: the progress bar's ETA uses it."""
        return self.options.run_duration

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        o = self.options
        run_seed = zlib.crc32(run_id.encode())
        for i, start in enumerate(range(0, o.run_duration, o.chunk_duration)):
            end = min(start + o.chunk_duration, o.run_duration)
            rng = np.random.default_rng([o.seed, run_seed, i])
            yield sd.Chunk(start, end, self.simulate(rng, start, end))

    def simulate(self, rng: np.random.Generator, start: int, end: int) -> np.ndarray:
        """Records of one chunk ``[start, end)``: every record lies wholly inside it."""
        o = self.options
        record_ns = RECORD_SAMPLES * SAMPLE_NS
        margin = 2 * record_ns
        # Interactions: S1 at t, S2 at t + drift; both inside the chunk with their pulses.
        lo, hi = start + margin, end - margin - o.max_drift
        n_int = rng.poisson(o.event_rate * (end - start) / 1e9) if hi > lo else 0
        t_int = np.sort(rng.integers(lo, hi, n_int)) if n_int else np.zeros(0, np.int64)
        drift = rng.integers(0, o.max_drift + 1, n_int)
        n1 = rng.poisson(o.s1_photons, n_int)
        n2 = rng.poisson(o.s2_photons, n_int)
        signal_t0 = np.concatenate([t_int, t_int + drift])
        photons = np.concatenate([n1, n2])
        spread = np.concatenate([np.full(n_int, 25.0), np.full(n_int, 150.0)])
        is_s2 = np.concatenate([np.zeros(n_int, bool), np.ones(n_int, bool)])
        sig = np.repeat(np.arange(len(signal_t0)), photons)
        offset = np.where(
            is_s2[sig],
            rng.normal(0, 1, len(sig)) * spread[sig],
            rng.exponential(1, len(sig)) * spread[sig],
        )
        p_time = signal_t0[sig] + offset.astype(np.int64)
        p_channel = rng.integers(0, o.n_channels, len(sig))
        # Dark counts: one photon, its own record.
        n_dark = rng.poisson(o.dark_rate * o.n_channels * (end - start) / 1e9)
        d_time = rng.integers(start + record_ns, max(end - margin, start + record_ns + 1), n_dark)
        p_time = np.concatenate([p_time, d_time])
        p_channel = np.concatenate([p_channel, rng.integers(0, o.n_channels, n_dark)])
        group = np.concatenate([sig, len(signal_t0) + np.arange(n_dark)])
        # One record per (signal, channel): it starts 30 ns before its first photon.
        order = np.lexsort((p_time, p_channel, group))
        p_time, p_channel, group = p_time[order], p_channel[order], group[order]
        new = np.ones(len(group), bool)
        new[1:] = (group[1:] != group[:-1]) | (p_channel[1:] != p_channel[:-1])
        first = np.flatnonzero(new)
        rec_of_photon = np.cumsum(new) - 1
        rec_time = (p_time[first] - 30) // SAMPLE_NS * SAMPLE_NS
        rec_time = np.clip(rec_time, start, end - record_ns)
        sample = (p_time - rec_time[rec_of_photon]) // SAMPLE_NS
        area = o.gain * np.clip(rng.normal(1.0, 0.3, len(p_time)), 0.1, None)
        waveforms = rng.normal(0.0, o.noise, (len(first), RECORD_SAMPLES))
        inside = (sample >= 0) & (sample < RECORD_SAMPLES)
        deposit_photons(
            waveforms, rec_of_photon[inside], sample[inside], area[inside], SPE_TEMPLATE
        )
        rows = Record.zeros(len(first))
        rows["time"] = rec_time
        rows["length"] = RECORD_SAMPLES
        rows["dt"] = SAMPLE_NS
        rows["channel"] = p_channel[first]
        rows["data"] = np.clip(np.round(waveforms), -32768, 32767)
        return rows[np.argsort(rows["time"], kind="stable")]


class PeakFinder(sd.Plugin):
    """Hits above threshold in every record, clustered across channels into peaks."""

    version = "0.1.0"
    parallel = True  # chunks are independent; the numba kernels release the GIL

    class Inputs(sd.Inputs):
        records: Record

    class Outputs(sd.Outputs):
        peaks: Peak = sd.output(description="clusters of hits on any channel")

    class Options(sd.Options):
        hit_threshold: float = sd.option(10.0, gt=0, description="hit threshold [ADC]")
        peak_gap: int = sd.option(
            200, ge=0, description="largest gap between hits of one peak [ns]"
        )
        gain: float = sd.option(50.0, gt=0, description="area of one photon [ADC x samples]")

    def compute(self, records: np.ndarray) -> np.ndarray:
        o = self.options
        h_start, h_end, h_channel, h_area = find_hits(
            records["time"],
            records["channel"],
            records["data"],
            SAMPLE_NS,
            o.hit_threshold,
            MAX_HIT_SAMPLES,
        )
        order = np.argsort(h_start, kind="stable")
        h_start, h_end, h_channel = h_start[order], h_end[order], h_channel[order]
        h_area = h_area[order] / o.gain
        peak_of_hit = cluster_hits(h_start, h_end, o.peak_gap)
        peaks = Peak.zeros(int(peak_of_hit[-1]) + 1 if len(peak_of_hit) else 0)
        # Structured-array fields are strided views; numba writes through them in place.
        cols = {
            name: np.zeros(len(peaks), peaks.dtype[name].base)
            for name in ("time", "endtime", "area", "n_hits", "n_channels", "sample_width")
        }
        waveform = np.zeros((len(peaks), PEAK_SAMPLES), np.float32)
        fill_peaks(
            peak_of_hit,
            h_start,
            h_end,
            h_channel,
            h_area,
            cols["time"],
            cols["endtime"],
            cols["area"],
            cols["n_hits"],
            cols["n_channels"],
            cols["sample_width"],
            waveform,
            SAMPLE_NS,
        )
        for name, values in cols.items():
            peaks[name] = values
        peaks["data"] = waveform
        return peaks


class PeakBasics(sd.Plugin):
    """Width, rise time and type (S1/S2) of each peak, from its summed waveform."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        peaks: Peak

    class Outputs(sd.Outputs):
        peak_basics: PeakBasic = sd.output(kind="peaks", description="peak shape and type")

    class Options(sd.Options):
        s1_max_width: int = sd.option(100, gt=0, description="widest S1 (50% area width) [ns]")
        s1_min_channels: int = sd.option(2, ge=1, description="fewest channels of an S1")
        s2_min_area: float = sd.option(100.0, ge=0, description="smallest S2 area [PE]")

    def compute(self, peaks: np.ndarray) -> np.ndarray:
        o = self.options
        q = area_quantile_times(
            peaks["data"], peaks["sample_width"], np.array([0.1, 0.25, 0.5, 0.75])
        )
        out = PeakBasic.zeros(len(peaks))
        out["time"] = peaks["time"]
        out["endtime"] = peaks["endtime"]
        out["width"] = np.maximum(q[:, 3] - q[:, 1], 0).astype(np.int32)
        out["rise_time"] = np.maximum(q[:, 2] - q[:, 0], 0).astype(np.int32)
        s1 = (out["width"] <= o.s1_max_width) & (peaks["n_channels"] >= o.s1_min_channels)
        s2 = (out["width"] > o.s1_max_width) & (peaks["area"] >= o.s2_min_area)
        out["peak_type"] = np.where(s1, 1, np.where(s2, 2, 0))
        return out


class EventFinder(sd.OverlapWindowPlugin):
    """An event window around every S2 above ``trigger_area``; overlapping windows merge.

    An overlap-window plugin: whether a window merges with its neighbours depends on peaks
    up to a drift time away, possibly in the next chunk; the framework keeps that much input
    across chunk boundaries, so the events do not depend on how the data was chunked.
    """

    version = "0.1.0"

    class Inputs(sd.Inputs):
        peaks: Peak
        peak_basics: PeakBasic

    class Outputs(sd.Outputs):
        events: Event = sd.output(description="time windows around triggering S2s")

    class Options(sd.Options):
        trigger_area: float = sd.option(200.0, ge=0, description="smallest triggering S2 [PE]")
        max_drift: int = sd.option(100_000, ge=0, description="longest drift time [ns]")
        window_after: int = sd.option(
            5_000, ge=0, description="event window after the trigger S2 [ns]"
        )

    def window_size(self) -> tuple[int, int]:
        """(left, right) ns of input an event depends on beyond its own span."""
        o = self.options
        return o.window_after + 1_000, o.max_drift + 2_000

    def compute(self, peaks: np.ndarray, start: int, end: int) -> np.ndarray:
        o = self.options
        trig = peaks[(peaks["peak_type"] == 2) & (peaks["area"] >= o.trigger_area)]
        lo = np.clip(trig["time"] - o.max_drift - 1_000, start, end)
        hi = np.clip(trig["endtime"] + o.window_after, start, end)
        # Merge overlapping windows (trigger times are sorted, so lo is too).
        new = np.ones(len(lo), bool)
        if len(lo):
            new[1:] = lo[1:] > np.maximum.accumulate(hi)[:-1]
        first_of_event = np.flatnonzero(new)
        events = Event.zeros(len(first_of_event))
        if len(events):
            events["time"] = lo[new]
            events["endtime"] = np.maximum.reduceat(hi, first_of_event)
            events["trigger_area"] = np.maximum.reduceat(trig["area"], first_of_event)
        first = np.searchsorted(peaks["time"], events["time"], side="left")
        last = np.searchsorted(peaks["time"], events["endtime"], side="left")
        events["n_peaks"] = last - first
        return events


class EventBasics(sd.LoopPlugin):
    """Main S1 and S2 of each event, and the drift time between them.

    A loop plugin: ``compute_loop`` runs once per event with the peaks inside it.
    """

    version = "0.1.0"
    loop_over = "events"

    class Inputs(sd.Inputs):
        events: Event
        peaks: Peak
        peak_basics: PeakBasic

    class Outputs(sd.Outputs):
        event_basics: EventBasic = sd.output(kind="events", description="main S1/S2 per event")

    def compute_loop(self, event: np.void, peaks: np.ndarray) -> dict[str, float]:
        s2s = np.flatnonzero(peaks["peak_type"] == 2)
        if not len(s2s):
            return {"drift_time": -1}
        s2 = peaks[s2s[np.argmax(peaks["area"][s2s])]]
        row = {"s2_area": s2["area"], "s2_width": s2["width"], "drift_time": -1}
        s1s = np.flatnonzero((peaks["peak_type"] == 1) & (peaks["time"] < s2["time"]))
        if len(s1s):
            s1 = peaks[s1s[np.argmax(peaks["area"][s1s])]]
            row.update(
                s1_area=s1["area"],
                s1_n_channels=s1["n_channels"],
                drift_time=s2["time"] - s1["time"],
            )
        return row


class CutS1(sd.CutPlugin):
    """Cut: the event has an S1 seen by at least ``cut_s1_min_channels`` channels."""

    version = "0.1.0"
    kind = "events"  # rows of the events kind (event_basics is one of its data types)
    cut_description = "the event has an S1 seen by enough channels"

    class Inputs(sd.Inputs):
        event_basics: EventBasic

    class Options(sd.Options):
        cut_s1_min_channels: int = sd.option(3, ge=1, description="fewest channels of the S1")

    def cut_by(self, events: np.ndarray) -> np.ndarray:
        return events["s1_n_channels"] >= self.options.cut_s1_min_channels


class CutDrift(sd.CutPlugin):
    """Cut: the drift time lies inside the fiducial range."""

    version = "0.1.0"
    kind = "events"  # rows of the events kind (event_basics is one of its data types)
    cut_description = "the drift time is inside the fiducial range"

    class Inputs(sd.Inputs):
        event_basics: EventBasic

    class Options(sd.Options):
        cut_drift_range: tuple[int, int] = sd.option(
            (5_000, 95_000), description="accepted drift times [ns] (low, high)"
        )

    def cut_by(self, events: np.ndarray) -> np.ndarray:
        lo, hi = self.options.cut_drift_range
        drift = events["drift_time"]
        return (drift >= lo) & (drift <= hi)


CutS1Row = CutS1.outputs["cut_s1"].schema  # the row schemas the cut plugins derived
CutDriftRow = CutDrift.outputs["cut_drift"].schema


class EventInfo(sd.MergeOnlyPlugin):
    """Everything known about an event in one data type; merged on the fly, not stored."""

    version = "0.1.0"
    provides = "event_info"
    kind = "events"

    class Inputs(sd.Inputs):
        event_basics: EventBasic
        cut_s1: CutS1Row
        cut_drift: CutDriftRow


PLUGINS: list[type[sd.Plugin]] = [
    SimRecords,
    PeakFinder,
    PeakBasics,
    EventFinder,
    EventBasics,
    CutS1,
    CutDrift,
    EventInfo,
]
"""The demo's plugins, in dependency order (the CLI registers ``PLUGINS`` if present)."""
