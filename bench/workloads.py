"""The reference workloads of ``shared/bench/workloads.md``: data generation and every kernel.

Every implementation (strax 2.2.3, the bare loop, strax_decl) imports this module, so the data and
the per-chunk computation are identical byte for byte and only the framework around them differs.
Plugins stay thin: they call the ``*_chunk`` / ``compute_*`` wrappers below and nothing else.

W1 "chain":    records (source) -> peaks -> peak_basics -> events (overlap window).
W2 "overhead": a source of tiny chunks -> a chain of L trivial ``+1`` plugins.
W3 "wide":     records -> 8 independent per-record features -> one merge of the 8.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numba
import numpy as np

__all__ = [
    "EVENT_DTYPE",
    "EVENT_WINDOW_NS",
    "FEATURE_DTYPES",
    "MERGED_FEATURES_DTYPE",
    "N_FEATURES",
    "PEAK_BASICS_DTYPE",
    "PEAK_DTYPE",
    "RECORD_DTYPE",
    "W2_DTYPE",
    "Size",
    "compute_events",
    "compute_feature",
    "compute_peak_basics",
    "compute_peaks",
    "events_whole_run",
    "merge_features",
    "plus_one",
    "records_chunk",
    "records_chunk_bounds",
    "size_for",
    "w2_chunk",
]

SEED = 20_240_611

# ---------------------------------------------------------------------------------------------
# Constants (workloads.md)
# ---------------------------------------------------------------------------------------------
RECORD_LENGTH = 110  # samples per record
RECORD_DT = 10  # ns per sample
RECORD_NS = RECORD_LENGTH * RECORD_DT  # 1100 ns per record
BLOCK_RECORDS = 1000  # records back to back, then a gap
BLOCK_GAP_NS = 50_000
BLOCK_PITCH_NS = BLOCK_RECORDS * RECORD_NS + BLOCK_GAP_NS  # 1.15 ms
# Blocks sit in the middle of their pitch (half a gap before and after), so that chunk boundaries
# fall in the middle of gaps and no row ever straddles one.
BLOCK_OFFSET_NS = BLOCK_GAP_NS // 2
POOL_ROWS = 65_536  # seeded waveform pool; records are consecutive rows of it
PULSE_EVERY = 8  # an exponential pulse on one pool row in 8
PULSE_TAU = 12.1  # samples
# Mean pulse amplitude (ADC) and decay (PULSE_TAU): calibrated so that W1 gives the reference's
# 10,806 events (workloads.md); the reference's generator is not published, so this matches the
# trigger rate and merging, not the exact rows. The count is a step function of these two numbers
# (10,794 / 10,806 / 10,808 within +-0.0002 of the scale): `python bench/workloads.py` checks it.
PULSE_SCALE = 37.889
N_CHANNELS = 494

RECORDS_PER_PEAK = 10
PEAK_LENGTH = 110
PEAK_DT = RECORDS_PER_PEAK * RECORD_NS // PEAK_LENGTH  # 100 ns: 10 records downsampled to 110
SAMPLES_PER_PEAK_SAMPLE = RECORDS_PER_PEAK * RECORD_LENGTH // PEAK_LENGTH  # 10

EVENT_WINDOW_NS = 700_000  # overlap window of the events plugin
TRIGGER_AREA = 2500.0
EVENT_LEFT_NS = 20_000
EVENT_RIGHT_NS = 50_000

W2_ROW_NS = 100  # W2 rows are 10 ns long, one every 100 ns
N_FEATURES = 8

# ---------------------------------------------------------------------------------------------
# Dtypes (sizes as in workloads.md)
# ---------------------------------------------------------------------------------------------
RECORD_DTYPE = np.dtype(
    [
        ("time", "<i8"),
        ("length", "<i4"),
        ("dt", "<i2"),
        ("channel", "<i2"),
        ("area", "<f4"),
        ("data", "<i2", (RECORD_LENGTH,)),
    ]
)
PEAK_DTYPE = np.dtype(
    [
        ("time", "<i8"),
        ("length", "<i4"),
        ("dt", "<i4"),
        ("area", "<f4"),
        ("n_records", "<i4"),
        ("data", "<f4", (PEAK_LENGTH,)),
    ]
)
PEAK_BASICS_DTYPE = np.dtype(
    [
        ("time", "<i8"),
        ("endtime", "<i8"),
        ("area", "<f4"),
        ("max_amplitude", "<f4"),
        ("time_of_max", "<i8"),
        ("center_time", "<i8"),
        ("range_50p_area", "<f4"),
        ("range_90p_area", "<f4"),
    ]
)
EVENT_DTYPE = np.dtype(
    [
        ("time", "<i8"),
        ("endtime", "<i8"),
        ("n_peaks", "<i4"),
        ("n_triggers", "<i4"),
        ("area", "<f4"),
        ("largest_peak_area", "<f4"),
    ]
)
W2_DTYPE = np.dtype([("time", "<i8"), ("length", "<i4"), ("dt", "<i2"), ("value", "<f8")])
FEATURE_DTYPES = tuple(
    np.dtype([("time", "<i8"), ("endtime", "<i8"), (f"feature_{k}", "<f4")])
    for k in range(N_FEATURES)
)
MERGED_FEATURES_DTYPE = np.dtype(
    [("time", "<i8"), ("endtime", "<i8")] + [(f"feature_{k}", "<f4") for k in range(N_FEATURES)]
)
assert RECORD_DTYPE.itemsize == 240
assert PEAK_DTYPE.itemsize == 464
assert PEAK_BASICS_DTYPE.itemsize == 48


# ---------------------------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Size:
    """How much data a workload run produces; ``rows_per_chunk`` is a multiple of 1000 for W1/W3."""

    n_chunks: int
    rows_per_chunk: int
    row_bytes: int = RECORD_DTYPE.itemsize  # of the source data type

    @property
    def source_bytes(self) -> int:
        """Uncompressed bytes of the source data type (records, or W2's rows): MB/s is of this."""
        return self.n_chunks * self.rows_per_chunk * self.row_bytes


_W2_ROW = W2_DTYPE.itemsize
_SIZES: dict[str, dict[str, Size]] = {
    "W1": {"full": Size(40, 200_000), "quick": Size(4, 20_000), "warmup": Size(2, 2_000)},
    "W1x2": {"full": Size(80, 200_000), "quick": Size(8, 20_000), "warmup": Size(2, 2_000)},
    "W2": {
        "full": Size(5_000, 10, _W2_ROW),
        "quick": Size(500, 10, _W2_ROW),
        "warmup": Size(5, 10, _W2_ROW),
    },
    "W3": {"full": Size(10, 200_000), "quick": Size(2, 20_000), "warmup": Size(2, 2_000)},
}


def size_for(workload: str, scale: str) -> Size:
    """Size of ``workload`` at ``scale`` ('full', 'quick' or 'warmup')."""
    return _SIZES[workload][scale]


# ---------------------------------------------------------------------------------------------
# Records source (W1, W3)
# ---------------------------------------------------------------------------------------------
@functools.cache
def _pool() -> np.ndarray:
    """The seeded pool: 65,536 complete record rows (time/channel patched per chunk).

    Built once per process (~50 ms, inside the warm-up run); chunks are then whole-row memcpys
    out of it, so generating 1.9 GB costs about one page-fault + memcpy pass.
    """
    rng = np.random.default_rng(SEED)
    data = rng.integers(-2, 3, size=(POOL_ROWS, RECORD_LENGTH)).astype(np.float64)
    pulsed = np.arange(0, POOL_ROWS, PULSE_EVERY)
    t0 = rng.integers(0, RECORD_LENGTH // 2, size=len(pulsed))
    amplitude = PULSE_SCALE * rng.exponential(size=len(pulsed))
    t = np.arange(RECORD_LENGTH)[None, :] - t0[:, None]
    pulse = np.where(t >= 0, amplitude[:, None] * np.exp(-np.maximum(t, 0) / PULSE_TAU), 0.0)
    data[pulsed] += pulse
    pool = np.zeros(POOL_ROWS, RECORD_DTYPE)
    pool["data"] = np.clip(np.rint(data), -32768, 32767).astype(np.int16)
    pool["area"] = pool["data"].sum(axis=1, dtype=np.int64)
    pool["length"] = RECORD_LENGTH
    pool["dt"] = RECORD_DT
    pool.flags.writeable = False
    return pool


def _chunk_pool_start(chunk_i: int) -> int:
    """First pool row of chunk ``chunk_i``: a seeded hash, so chunks do not repeat each other."""
    return int((chunk_i * 0x9E3779B97F4A7C15 + SEED) % (2**64) >> 40) % POOL_ROWS


def records_chunk_bounds(chunk_i: int, rows_per_chunk: int) -> tuple[int, int]:
    """Half-open time interval [start, end) of records chunk ``chunk_i`` (ns)."""
    pitch = rows_per_chunk // BLOCK_RECORDS * BLOCK_PITCH_NS
    return chunk_i * pitch, (chunk_i + 1) * pitch


@numba.njit(nogil=True, cache=False)
def _patch_records(time: np.ndarray, channel: np.ndarray, first: int) -> None:
    for i in range(len(time)):
        g = first + i
        block = g // BLOCK_RECORDS
        time[i] = block * BLOCK_PITCH_NS + BLOCK_OFFSET_NS + (g - block * BLOCK_RECORDS) * RECORD_NS
        channel[i] = g % N_CHANNELS


def records_chunk(chunk_i: int, rows_per_chunk: int) -> tuple[int, int, np.ndarray]:
    """(start, end, records) of chunk ``chunk_i``: consecutive pool rows, times patched in."""
    if rows_per_chunk % BLOCK_RECORDS:
        raise ValueError(f"rows_per_chunk must be a multiple of {BLOCK_RECORDS}")
    pool = _pool().view(np.uint8)
    out = np.empty(rows_per_chunk, RECORD_DTYPE)
    flat = out.view(np.uint8)
    row_bytes = RECORD_DTYPE.itemsize
    first = _chunk_pool_start(chunk_i)
    done = 0
    while done < rows_per_chunk:
        n = min(rows_per_chunk - done, POOL_ROWS - first)
        flat[done * row_bytes : (done + n) * row_bytes] = pool[
            first * row_bytes : (first + n) * row_bytes
        ]
        done += n
        first = 0
    _patch_records(out["time"], out["channel"], chunk_i * rows_per_chunk)
    start, end = records_chunk_bounds(chunk_i, rows_per_chunk)
    return start, end, out


# ---------------------------------------------------------------------------------------------
# W1 kernels
# ---------------------------------------------------------------------------------------------
@numba.njit(nogil=True, cache=False)
def _peaks(
    r_time: np.ndarray,
    r_data: np.ndarray,
    p_time: np.ndarray,
    p_area: np.ndarray,
    p_data: np.ndarray,
) -> None:
    per_record = RECORD_LENGTH // SAMPLES_PER_PEAK_SAMPLE  # 11 peak samples per record
    for p in range(len(p_time)):
        r0 = p * RECORDS_PER_PEAK
        p_time[p] = r_time[r0]
        total = 0.0
        for r in range(RECORDS_PER_PEAK):
            for s in range(per_record):
                acc = 0
                for k in range(SAMPLES_PER_PEAK_SAMPLE):
                    acc += r_data[r0 + r, s * SAMPLES_PER_PEAK_SAMPLE + k]
                p_data[p, r * per_record + s] = acc
                total += acc
        p_area[p] = total


def compute_peaks(records: np.ndarray) -> np.ndarray:
    """One peak per 10 consecutive records: waveforms concatenated and summed 10:1 (dt 100 ns)."""
    n = len(records) // RECORDS_PER_PEAK
    peaks = np.empty(n, PEAK_DTYPE)
    peaks["length"] = PEAK_LENGTH
    peaks["dt"] = PEAK_DT
    peaks["n_records"] = RECORDS_PER_PEAK
    _peaks(records["time"], records["data"], peaks["time"], peaks["area"], peaks["data"])
    return peaks


@numba.njit(nogil=True, cache=False)
def _peak_basics(
    p_time: np.ndarray,
    p_length: np.ndarray,
    p_dt: np.ndarray,
    p_data: np.ndarray,
    time: np.ndarray,
    endtime: np.ndarray,
    area: np.ndarray,
    max_amplitude: np.ndarray,
    time_of_max: np.ndarray,
    center_time: np.ndarray,
    range_50: np.ndarray,
    range_90: np.ndarray,
) -> None:
    n_samples = p_data.shape[1]
    levels = np.array([0.05, 0.25, 0.75, 0.95])
    where = np.empty(4, np.float64)  # fractional sample where the cumulative area reaches a level
    for i in range(len(p_time)):
        dt = p_dt[i]
        time[i] = p_time[i]
        endtime[i] = p_time[i] + p_length[i] * dt
        total = 0.0
        weighted = 0.0
        best = p_data[i, 0]
        best_j = 0
        for j in range(n_samples):
            x = p_data[i, j]
            total += x
            weighted += x * (j + 0.5)
            if x > best:
                best = x
                best_j = j
        area[i] = total
        max_amplitude[i] = best
        time_of_max[i] = p_time[i] + best_j * dt + dt // 2
        if total <= 0:
            center_time[i] = p_time[i] + p_length[i] * dt // 2
            range_50[i] = 0.0
            range_90[i] = 0.0
            continue
        center_time[i] = p_time[i] + np.int64(weighted / total * dt)
        # One scan for all four levels: a higher level is first reached no earlier than a lower.
        level = 0
        cum = 0.0
        for j in range(n_samples):
            prev = cum
            cum += p_data[i, j]
            while level < 4 and cum >= levels[level] * total:
                step = cum - prev
                frac = (levels[level] * total - prev) / step if step > 0 else 0.0
                where[level] = j + frac
                level += 1
            if level == 4:
                break
        for k in range(level, 4):
            where[k] = n_samples
        range_50[i] = (where[2] - where[1]) * dt
        range_90[i] = (where[3] - where[0]) * dt


def compute_peak_basics(peaks: np.ndarray) -> np.ndarray:
    """Per-peak features: area, max amplitude, time of max, center time, 50%/90% area widths."""
    out = np.empty(len(peaks), PEAK_BASICS_DTYPE)
    _peak_basics(
        peaks["time"],
        peaks["length"],
        peaks["dt"],
        peaks["data"],
        out["time"],
        out["endtime"],
        out["area"],
        out["max_amplitude"],
        out["time_of_max"],
        out["center_time"],
        out["range_50p_area"],
        out["range_90p_area"],
    )
    return out


@numba.njit(nogil=True, cache=False)
def _events(
    time: np.ndarray,
    endtime: np.ndarray,
    area: np.ndarray,
    start: int,
    end: int,
    e_time: np.ndarray,
    e_endtime: np.ndarray,
    e_n_peaks: np.ndarray,
    e_n_triggers: np.ndarray,
    e_area: np.ndarray,
    e_largest: np.ndarray,
) -> int:
    # Pass 1: trigger windows, overlapping ones merged; clipped to the chunk [start, end).
    n_events = -1
    current_end = start
    for i in range(len(time)):
        if area[i] <= TRIGGER_AREA:
            continue
        t0 = max(time[i] - EVENT_LEFT_NS, start)
        t1 = min(endtime[i] + EVENT_RIGHT_NS, end)
        if n_events >= 0 and t0 < current_end:
            current_end = max(current_end, t1)
            e_endtime[n_events] = current_end
            e_n_triggers[n_events] += 1
        else:
            n_events += 1
            e_time[n_events] = t0
            e_endtime[n_events] = t1
            e_n_triggers[n_events] = 1
            current_end = t1
    n_events += 1
    # Pass 2: every peak that starts inside an event belongs to it.
    j = 0
    for e in range(n_events):
        while j < len(time) and time[j] < e_time[e]:
            j += 1
        n = 0
        total = 0.0
        largest = 0.0
        while j < len(time) and time[j] < e_endtime[e]:
            n += 1
            total += area[j]
            largest = max(largest, area[j])
            j += 1
        e_n_peaks[e] = n
        e_area[e] = total
        e_largest[e] = largest
    return n_events


def compute_events(peak_basics: np.ndarray, start: int, end: int) -> np.ndarray:
    """Events of the peaks in [start, end): trigger area > 2500, [t - 20 us, endtime + 50 us).

    Windows are clipped to the chunk so the output obeys the chunk laws; as an overlap-window
    plugin (window ``EVENT_WINDOW_NS``) only the run's first and last event can be clipped.
    """
    n_max = int(np.count_nonzero(peak_basics["area"] > TRIGGER_AREA))
    out = np.zeros(n_max, EVENT_DTYPE)
    n = _events(
        peak_basics["time"],
        peak_basics["endtime"],
        peak_basics["area"],
        start,
        end,
        out["time"],
        out["endtime"],
        out["n_peaks"],
        out["n_triggers"],
        out["area"],
        out["largest_peak_area"],
    )
    return out[:n]


def events_whole_run(size: Size) -> np.ndarray:
    """W1's events computed in one go over the whole run: the truth the chunked runs must match."""
    basics = []
    for c in range(size.n_chunks):
        _, _, records = records_chunk(c, size.rows_per_chunk)
        basics.append(compute_peak_basics(compute_peaks(records)))
    run_end = records_chunk_bounds(size.n_chunks - 1, size.rows_per_chunk)[1]
    return compute_events(np.concatenate(basics), 0, run_end)


# ---------------------------------------------------------------------------------------------
# W2
# ---------------------------------------------------------------------------------------------
@numba.njit(nogil=True, cache=False)
def _fill_w2(
    time: np.ndarray, length: np.ndarray, dt: np.ndarray, value: np.ndarray, t0: int
) -> None:
    for i in range(len(time)):
        time[i] = t0 + i * W2_ROW_NS
        length[i] = 1
        dt[i] = 10
        value[i] = i


def w2_chunk(chunk_i: int, rows_per_chunk: int) -> tuple[int, int, np.ndarray]:
    """(start, end, rows) of W2 chunk ``chunk_i``: tiny chunks, so framework overhead dominates."""
    start = chunk_i * rows_per_chunk * W2_ROW_NS
    out = np.empty(rows_per_chunk, W2_DTYPE)
    _fill_w2(out["time"], out["length"], out["dt"], out["value"], start)
    return start, start + rows_per_chunk * W2_ROW_NS, out


@numba.njit(nogil=True, cache=False)
def _add_one(value: np.ndarray) -> None:
    for i in range(len(value)):
        value[i] += 1.0


def plus_one(rows: np.ndarray) -> np.ndarray:
    """The trivial W2 plugin body: a copy with ``value + 1``."""
    out = rows.copy()
    _add_one(out["value"])
    return out


# ---------------------------------------------------------------------------------------------
# W3
# ---------------------------------------------------------------------------------------------
@numba.njit(nogil=True, cache=False)
def _feature(
    r_time: np.ndarray,
    r_length: np.ndarray,
    r_dt: np.ndarray,
    r_data: np.ndarray,
    kind: int,
    time: np.ndarray,
    endtime: np.ndarray,
    out: np.ndarray,
) -> None:
    # Integer accumulators and branch-free inner loops: the noise's random sign would otherwise
    # make the kernels (not the frameworks) dominate W3.
    n_samples = r_data.shape[1]
    for i in range(len(r_time)):
        time[i] = r_time[i]
        endtime[i] = r_time[i] + r_length[i] * r_dt[i]
        acc = 0.0
        s = 0
        if kind == 0:  # area
            for j in range(n_samples):
                s += r_data[i, j]
            acc = s
        elif kind == 1:  # maximum
            m = r_data[i, 0]
            for j in range(n_samples):
                m = max(m, r_data[i, j])
            acc = m
        elif kind == 2:  # minimum
            m = r_data[i, 0]
            for j in range(n_samples):
                m = min(m, r_data[i, j])
            acc = m
        elif kind == 3:  # sample of the (first) maximum
            m = r_data[i, 0]
            for j in range(n_samples):
                if r_data[i, j] > m:
                    m = r_data[i, j]
                    s = j
            acc = s
        elif kind == 4:  # rms
            for j in range(n_samples):
                s += np.int32(r_data[i, j]) * np.int32(r_data[i, j])
            acc = np.sqrt(s / n_samples)
        elif kind == 5:  # samples above 2 ADC
            for j in range(n_samples):
                s += r_data[i, j] > 2
            acc = s
        elif kind == 6:  # positive area
            for j in range(n_samples):
                s += max(r_data[i, j], 0)
            acc = s
        else:  # area-weighted mean sample
            w = 0
            for j in range(n_samples):
                s += r_data[i, j]
                w += np.int32(r_data[i, j]) * j
            acc = w / s if s != 0 else 0.0
        out[i] = acc


def compute_feature(records: np.ndarray, k: int) -> np.ndarray:
    """Feature ``k`` (0..7) of every record, one row per record (same data kind as records)."""
    out = np.empty(len(records), FEATURE_DTYPES[k])
    _feature(
        records["time"],
        records["length"],
        records["dt"],
        records["data"],
        k,
        out["time"],
        out["endtime"],
        out[f"feature_{k}"],
    )
    return out


def merge_features(features: list[np.ndarray]) -> np.ndarray:
    """The bare equivalent of a merge-only plugin: one row per record with all 8 features."""
    out = np.empty(len(features[0]), MERGED_FEATURES_DTYPE)
    out["time"] = features[0]["time"]
    out["endtime"] = features[0]["endtime"]
    for f in features:
        name = f.dtype.names[2]
        out[name] = f[name]
    return out


if __name__ == "__main__":
    # Check the W1 calibration: the reference produced 10,806 events.
    w1 = size_for("W1", "full")
    events = events_whole_run(w1)
    print(f"W1 events (whole run at once): {len(events)} (reference 10,806)")
