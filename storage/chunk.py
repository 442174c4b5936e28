"""The chunk and its laws: the one place both the store and the framework check them.

A chunk is a half-open time interval ``[start, end)`` plus the rows of one data type inside
it. The laws (DESIGN.md, "Vocabulary"):

- every row has ``time`` and ``endtime`` (or ``dt`` and ``length``, ``endtime = time + dt*length``);
- rows are sorted by ``time``;
- every row lies wholly inside its chunk: ``start <= time`` and ``endtime <= end``;
- zero-duration (and negative-duration) rows are forbidden; empty chunks are allowed;
- consecutive chunks touch: ``end == next.start``.

They live in ``storage`` (the lowest layer) so that the saver and the plugin runner enforce
exactly the same rules without ``storage`` importing anything from ``strax_decl``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Chunk",
    "ChunkLawViolation",
    "check_chunk",
    "endtimes",
    "time_fields_problem",
]


class ChunkLawViolation(ValueError):
    """A chunk breaks one of the chunk laws; the message names where and which row."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """Rows of one data type inside the half-open time interval ``[start, end)`` (ns)."""

    start: int
    end: int
    data: np.ndarray

    def __post_init__(self) -> None:
        start, end = self.start, self.end
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
    where: str,
    dtype: np.dtype | None = None,
    previous_end: int | None = None,
) -> None:
    """Raise ChunkLawViolation (or TypeError for a dtype mismatch) naming ``where``.

    ``where`` says who produced the chunk, e.g. ``"plugin PeakFinder, output 'peaks', chunk 3"``.
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
    if len(data) == 0:
        return
    problem = time_fields_problem(data.dtype)
    if problem is not None:
        raise ChunkLawViolation(f"{where}: dtype {problem}")
    time = data["time"]
    ends = endtimes(data)
    bad = np.flatnonzero(ends <= time)
    if len(bad):
        i = int(bad[0])
        raise ChunkLawViolation(
            f"{where}: row {i} has non-positive duration (time {int(time[i])}, "
            f"endtime {int(ends[i])}); zero-duration rows are forbidden"
        )
    if len(data) > 1:
        unsorted = np.flatnonzero(time[1:] < time[:-1])
        if len(unsorted):
            i = int(unsorted[0]) + 1
            raise ChunkLawViolation(
                f"{where}: rows are not sorted by time: row {i} (time {int(time[i])}) "
                f"comes after row {i - 1} (time {int(time[i - 1])})"
            )
    if time[0] < chunk.start:
        raise ChunkLawViolation(
            f"{where}: row 0 starts at {int(time[0])}, before the chunk start {chunk.start}"
        )
    late = np.flatnonzero(ends > chunk.end)
    if len(late):
        i = int(late[0])
        raise ChunkLawViolation(
            f"{where}: row {i} ends at {int(ends[i])}, after the chunk end {chunk.end}"
        )
