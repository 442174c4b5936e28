"""The chunk and its laws: the one place both the store and the framework check them.

A chunk is a half-open time interval ``[start, end)`` plus the rows of one data type inside
it. The laws (DESIGN.md, "Vocabulary"):

- every row has ``time`` and ``endtime`` (or ``dt`` and ``length``, ``endtime = time + dt*length``);
- rows are sorted by ``time``;
- every row lies wholly inside its chunk: ``start <= time < end`` and ``endtime <= end``;
- point-like rows (zero duration, ``endtime == time``, which strax stores) are allowed;
  negative-duration rows are forbidden; empty chunks are allowed;
- consecutive chunks touch: ``end == next.start``.

The boundary rule for a point-like row: a row belongs to the chunk whose ``[start, end)``
holds its ``time``. A zero-duration row at a chunk boundary ``t`` therefore belongs to the
chunk *starting* at ``t``, never to the one ending there (``time < end`` is a law of its own
only for such rows: any other row has ``time < endtime <= end``), and an empty chunk
``[t, t)`` holds no row. Splitting at ``t`` keeps this: rows with ``time < t`` go left, so a
point at ``t`` goes right, and a split at a point row's time never cuts it.

They live in ``storage`` (the lowest layer) so that the saver and the plugin runner enforce
exactly the same rules without ``storage`` importing anything from ``strax_decl``. So do the
operations that must keep the laws (split at a safe time, concatenate touching chunks): the
rechunker in ``strax_storage.rechunk`` needs them, and ``strax_decl.chunk`` re-exports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numba
import numpy as np

from strax_storage.errors import CannotSplit, ChunkLawViolation

__all__ = [
    "CannotSplit",
    "Chunk",
    "ChunkLawViolation",
    "check_chunk",
    "check_touches",
    "common_split_point",
    "concatenate",
    "endtimes",
    "safe_split_point",
    "split",
    "time_fields_problem",
]


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True, slots=True)
class Chunk:
    """Rows of one data type inside the half-open time interval ``[start, end)`` (ns)."""

    start: int
    end: int
    data: np.ndarray
    # Set by check_chunk once the rows passed the laws: a chunk is immutable, so the stages
    # it passes later (a saver after the plugin that made it) need not scan its rows again.
    _laws_checked: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        start, end, data = self.start, self.end, self.data
        # The common case first (a chunk per step per data type is made: keep it cheap).
        if (
            type(start) is int
            and type(end) is int
            and type(data) is np.ndarray
            and data.dtype.names is not None
            and data.ndim == 1
            and INT64_MIN <= start <= end <= INT64_MAX
        ):
            return
        if isinstance(start, bool) or not isinstance(start, int | np.integer):
            raise TypeError(f"chunk start must be an integer (ns), got {start!r}")
        if isinstance(end, bool) or not isinstance(end, int | np.integer):
            raise TypeError(f"chunk end must be an integer (ns), got {end!r}")
        if not isinstance(self.data, np.ndarray) or self.data.dtype.names is None:
            raise TypeError(
                f"chunk data must be a numpy structured array, got {type(self.data).__name__}"
            )
        if self.data.ndim != 1:
            raise ValueError(f"chunk data must be 1-D, got shape {self.data.shape}")
        # Normalise numpy integers to Python ints so that chunks compare and serialise simply.
        object.__setattr__(self, "start", int(start))
        object.__setattr__(self, "end", int(end))
        for name, t in (("start", self.start), ("end", self.end)):
            if not INT64_MIN <= t <= INT64_MAX:
                raise ChunkLawViolation(
                    f"chunk {name} {t} is outside the int64 range of times (ns) that rows and "
                    "the store can hold"
                )
        if self.start > self.end:
            raise ChunkLawViolation(f"chunk start {self.start} is after its end {self.end}")

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"Chunk([{self.start}, {self.end}), {len(self.data)} rows)"


def time_fields_problem(dtype: np.dtype) -> str | None:
    """Why ``dtype`` cannot carry time-ordered rows, or None if it can."""
    names = dtype.names or ()
    if "time" not in names:
        return "has no 'time' field"
    if dtype["time"].kind not in "iu" or dtype["time"].shape:
        return f"has a 'time' field of type {dtype['time']}, expected a scalar integer (ns)"
    if "endtime" not in names and not ("dt" in names and "length" in names):
        return "has neither an 'endtime' field nor both 'dt' and 'length'"
    return None


def endtimes(data: np.ndarray) -> np.ndarray:
    """Exclusive end time of every row, from ``endtime`` or ``time + dt * length``."""
    names = data.dtype.names or ()
    if "endtime" in names:
        return np.asarray(data["endtime"], dtype=np.int64)
    return data["time"].astype(np.int64) + data["dt"].astype(np.int64) * data["length"].astype(
        np.int64
    )


def check_chunk(
    chunk: Chunk,
    *,
    where: object,
    dtype: np.dtype | None = None,
    previous_end: int | None = None,
) -> None:
    """Raise ChunkLawViolation (or TypeError for a dtype mismatch) naming ``where``.

    ``where`` says who produced the chunk, e.g. ``"plugin PeakFinder, output 'peaks', chunk 3"``
    (a str, or any object whose ``str()`` says it: formatted only when a law is broken). The
    rows are scanned once per chunk: a chunk that passed is marked, and the checks of later
    stages (a saver after the plugin) only compare its dtype and its start.
    ``previous_end`` is the end of the chunk before it, to check that the two touch.
    """
    if dtype is not None and chunk.data.dtype != dtype:
        raise TypeError(
            f"{where}: rows have dtype {chunk.data.dtype.descr}, expected {np.dtype(dtype).descr}"
        )
    if previous_end is not None and chunk.start != previous_end:
        raise ChunkLawViolation(
            f"{where}: chunk [{chunk.start}, {chunk.end}) does not touch the previous chunk, "
            f"which ended at {previous_end}"
        )
    data = chunk.data
    if len(data) == 0 or chunk._laws_checked:
        return  # rows checked once per chunk, however many stages it passes
    problem = time_fields_problem(data.dtype)
    if problem is not None:
        raise ChunkLawViolation(f"{where}: dtype {problem}")
    time = data["time"]
    short, unsorted, early, late = _violations(data, chunk.start, chunk.end)
    if short >= 0:
        end_i = int(endtimes(data[short : short + 1])[0])
        raise ChunkLawViolation(
            f"{where}: row {short} has negative duration (time {int(time[short])}, "
            f"endtime {end_i}); a row ends at or after its time"
        )
    if unsorted >= 0:
        i = unsorted
        raise ChunkLawViolation(
            f"{where}: rows are not sorted by time: row {i} (time {int(time[i])}) "
            f"comes after row {i - 1} (time {int(time[i - 1])})"
        )
    if early >= 0:
        raise ChunkLawViolation(
            f"{where}: row 0 starts at {int(time[0])}, before the chunk start {chunk.start}"
        )
    if late >= 0:
        end_i = int(endtimes(data[late : late + 1])[0])
        if int(time[late]) >= chunk.end:  # a point-like row at the end: the next chunk's
            raise ChunkLawViolation(
                f"{where}: row {late} (time {int(time[late])}, endtime {end_i}) is at the chunk "
                f"end {chunk.end}; a zero-duration row at a boundary belongs to the chunk "
                "starting there"
            )
        raise ChunkLawViolation(
            f"{where}: row {late} ends at {end_i}, after the chunk end {chunk.end}"
        )
    object.__setattr__(chunk, "_laws_checked", True)


def check_touches(where: str, chunk: Chunk, previous_end: int | None) -> None:
    """Chunk law: a stream's chunks follow each other without gap or overlap.

    ``where`` names the stream (plugin and output, saver, input) in the message.
    """
    if previous_end is not None and chunk.start != previous_end:
        raise ChunkLawViolation(
            f"{where}: chunk {chunk!r} does not touch the previous chunk, which ended at "
            f"{previous_end}"
        )


def _violations(data: np.ndarray, start: int, end: int) -> tuple[int, int, int, int]:
    names = data.dtype.names or ()
    fields = ("time", "endtime") if "endtime" in names else ("time", "length", "dt")
    if all(data.dtype[f].isnative for f in fields):
        arrays = [data[f] for f in fields]
        kernel = _first_violations if len(arrays) == 2 else _first_violations_dt
        found = kernel(*arrays, start, end)  # type: ignore[arg-type, call-arg]
        return (int(found[0]), int(found[1]), int(found[2]), int(found[3]))
    # Non-native byte order (rare: data from elsewhere): the same checks in numpy.
    time = data["time"].astype(np.int64)
    ends = endtimes(data)

    def first(mask: np.ndarray, offset: int = 0) -> int:
        hits = np.flatnonzero(mask)
        return int(hits[0]) + offset if len(hits) else -1

    return (
        first(ends < time),
        first(time[1:] < time[:-1], 1),
        0 if time[0] < start else -1,
        first((ends > end) | (time >= end)),
    )


# One pass over the rows, compiled: the laws are checked on every chunk a plugin emits and
# every chunk a saver writes, so a numpy version (several temporaries per check) was ~15% of
# a whole pipeline's time. Each returns the first offending row of each law, or -1:
# (negative duration, unsorted, starts before the chunk, ends after the chunk or, for a
# point-like row, lies at its end).
@numba.njit(nogil=True, cache=True)
def _first_violations(
    time: np.ndarray, endtime: np.ndarray, start: int, end: int
) -> tuple[int, int, int, int]:  # pragma: no cover - compiled
    short = unsorted = late = -1
    early = 0 if time[0] < start else -1
    for i in range(len(time)):
        t = time[i]
        e = endtime[i]
        if short < 0 and e < t:
            short = i
        if unsorted < 0 and i > 0 and t < time[i - 1]:
            unsorted = i
        if late < 0 and (e > end or t >= end):
            late = i
    return short, unsorted, early, late


@numba.njit(nogil=True, cache=True)
def _first_violations_dt(
    time: np.ndarray, length: np.ndarray, dt: np.ndarray, start: int, end: int
) -> tuple[int, int, int, int]:  # pragma: no cover - compiled
    short = unsorted = late = -1
    early = 0 if time[0] < start else -1
    for i in range(len(time)):
        t = time[i]
        e = np.int64(t) + np.int64(length[i]) * np.int64(dt[i])
        if short < 0 and e < t:
            short = i
        if unsorted < 0 and i > 0 and t < time[i - 1]:
            unsorted = i
        if late < 0 and (e > end or t >= end):
            late = i
    return short, unsorted, early, late


def concatenate(chunks: Sequence[Chunk]) -> Chunk:
    """One chunk covering consecutive, touching ``chunks`` (zero-copy for a single chunk)."""
    if not chunks:
        raise ValueError("concatenate needs at least one chunk")
    if len(chunks) == 1:
        return chunks[0]
    for before, after in pairwise(chunks):
        if before.end != after.start:
            raise ChunkLawViolation(
                f"cannot concatenate {before!r} and {after!r}: they do not touch"
            )
    nonempty = [c.data for c in chunks if len(c.data)]
    if len(nonempty) > 1:
        data = np.concatenate(nonempty)
    else:
        data = nonempty[0] if nonempty else chunks[0].data
    return Chunk(chunks[0].start, chunks[-1].end, data)


def safe_split_point(chunk: Chunk, t: int, *, follows: bool = False) -> int:
    """The latest time ``<= t`` (and ``>= chunk.start``) where no row of ``chunk`` is cut.

    ``follows``: ``chunk`` is a later piece of a longer buffer (earlier rows all end by its
    start), so the result is that of the whole buffer at ``t`` (``sync`` cuts buffers kept
    as pieces; without it, a first row before time -1 is never a candidate, as always).
    """
    before0 = INT64_MIN if follows else -1
    t = min(max(t, chunk.start), chunk.end)
    data = chunk.data
    if not len(data) or t == chunk.end:
        return t
    names = data.dtype.names or ()
    fields = ("time", "endtime") if "endtime" in names else ("time", "length", "dt")
    if all(data.dtype[f].isnative and not data.dtype[f].shape for f in fields):
        # One compiled pass (this runs for every step of every aligned or windowed input).
        if len(fields) == 2:
            return int(_safe_point(data["time"], data["endtime"], t, chunk.start, before0))
        ends = endtimes(data)
        return int(_safe_point(data["time"], ends, t, chunk.start, before0))
    return _safe_point_numpy(chunk, t, before0)


def _safe_point_numpy(chunk: Chunk, t: int, before0: int = -1) -> int:
    data = chunk.data
    time = data["time"]
    i = int(np.searchsorted(time, t, side="left"))  # rows [0, i) start before t
    if i == 0:
        return t
    ends = endtimes(data[:i])
    running_max = np.maximum.accumulate(ends)
    if running_max[-1] <= t:
        return t
    # Candidate split points are row start times time[k]: rows before k (time < time[k])
    # must all have ended by time[k]. Take the latest such k below i.
    first_of_time = np.searchsorted(time[:i], time[:i], side="left")
    max_before = np.where(first_of_time > 0, running_max[np.maximum(first_of_time - 1, 0)], before0)
    ok = np.flatnonzero(max_before <= time[:i])
    if len(ok) == 0:
        return chunk.start
    return max(int(time[ok[-1]]), chunk.start)


@numba.njit(nogil=True, cache=True)
def _safe_point(
    time: np.ndarray, ends: np.ndarray, t: int, start: int, before0: int
) -> int:  # pragma: no cover - compiled
    """``_safe_point_numpy`` in one pass (same result, also for equal row times)."""
    i = np.searchsorted(time, t, side="left")
    if i == 0:
        return t
    reach = np.empty(i, np.int64)
    m = np.int64(ends[0])
    for j in range(i):
        if ends[j] > m:
            m = ends[j]
        reach[j] = m
    if m <= t:
        return t
    k = i - 1
    while k >= 0:
        f = k  # the first row with time[k]: rows before it start earlier
        while f > 0 and time[f - 1] == time[k]:
            f -= 1
        before = reach[f - 1] if f > 0 else before0
        if before <= time[k]:
            return max(time[k], start)
        k = f - 1
    return start


def common_split_point(chunks: Sequence[Chunk], t: int) -> int:
    """The latest time ``<= t`` that cuts no row of any of ``chunks`` (which share a start).

    Each chunk's safe point can only move the cut earlier, and it stops at a row start or at
    the common start, so the fixed point is reached after finitely many passes.
    """
    while True:
        previous = t
        for c in chunks:
            t = min(t, safe_split_point(c, t))
        if t == previous:
            return t


def split(chunk: Chunk, t: int) -> tuple[Chunk, Chunk]:
    """Split into ``[start, t)`` and ``[t, end)``; raises CannotSplit if a row would be cut."""
    if not chunk.start <= t <= chunk.end:
        raise CannotSplit(f"cannot split {chunk!r} at {t}: outside the chunk")
    data = chunk.data
    if t == chunk.end:
        return chunk, Chunk(t, t, data[len(data) :])
    if safe_split_point(chunk, t) != t:
        raise CannotSplit(f"cannot split {chunk!r} at {t}: a row would be cut in two")
    i = int(np.searchsorted(data["time"], t, side="left")) if len(data) else 0
    return Chunk(chunk.start, t, data[:i]), Chunk(t, chunk.end, data[i:])
