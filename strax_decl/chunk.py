"""Operations on chunks: split at a time, concatenate, merge same-kind chunks field-wise.

The ``Chunk`` type and the chunk laws themselves live in :mod:`storage.chunk` (the lowest
layer, so the store enforces the same laws); this module adds what the framework needs to
move chunks between plugins.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from storage.chunk import Chunk, ChunkLawViolation, check_chunk, endtimes

__all__ = [
    "TIME_FIELDS",
    "CannotSplit",
    "Chunk",
    "ChunkLawViolation",
    "check_chunk",
    "concatenate",
    "empty_chunk",
    "endtimes",
    "merge",
    "merged_dtype",
    "safe_split_point",
    "split",
]

#: Fields every data type of one kind shares; they may appear in several same-kind inputs.
TIME_FIELDS = ("time", "endtime", "dt", "length")


class CannotSplit(ChunkLawViolation):
    """Splitting at the requested time would cut a row in two."""


def empty_chunk(start: int, end: int, dtype: np.dtype) -> Chunk:
    return Chunk(start, end, np.zeros(0, dtype=dtype))


def concatenate(chunks: Sequence[Chunk]) -> Chunk:
    """One chunk covering consecutive, touching ``chunks`` (zero-copy for a single chunk)."""
    if not chunks:
        raise ValueError("concatenate needs at least one chunk")
    if len(chunks) == 1:
        return chunks[0]
    for before, after in zip(chunks[:-1], chunks[1:], strict=True):
        if before.end != after.start:
            raise ChunkLawViolation(
                f"cannot concatenate {before!r} and {after!r}: they do not touch"
            )
    nonempty = [c.data for c in chunks if len(c.data)]
    data = np.concatenate(nonempty) if len(nonempty) > 1 else (
        nonempty[0] if nonempty else chunks[0].data
    )
    return Chunk(chunks[0].start, chunks[-1].end, data)


def safe_split_point(chunk: Chunk, t: int) -> int:
    """The latest time ``<= t`` (and ``>= chunk.start``) where no row of ``chunk`` is cut."""
    t = min(max(t, chunk.start), chunk.end)
    data = chunk.data
    if not len(data) or t == chunk.end:
        return t
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
    max_before = np.where(first_of_time > 0, running_max[np.maximum(first_of_time - 1, 0)], -1)
    ok = np.flatnonzero(max_before <= time[:i])
    if len(ok) == 0:
        return chunk.start
    return max(int(time[ok[-1]]), chunk.start)


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


@lru_cache(maxsize=256)
def merged_dtype(dtypes: tuple[np.dtype, ...]) -> np.dtype:
    """Union of fields of same-kind dtypes, in input order; shared fields must agree."""
    fields: dict[str, tuple[np.dtype, int]] = {}
    descr: list[tuple[str, np.dtype]] = []
    for i, dt in enumerate(dtypes):
        for name in dt.names or ():
            sub = dt.fields[name][0] if dt.fields else dt[name]
            if name in fields:
                if fields[name][0] != sub:
                    raise TypeError(
                        f"field {name!r} has dtype {fields[name][0]} in one input and {sub} "
                        "in another of the same kind"
                    )
                continue
            fields[name] = (sub, i)
            descr.append((name, sub))
    return np.dtype(descr)


def merge(chunks: Sequence[Chunk]) -> Chunk:
    """Merge same-kind chunks (same interval, same rows) into one array with all fields."""
    if len(chunks) == 1:
        return chunks[0]
    first = chunks[0]
    for other in chunks[1:]:
        if (other.start, other.end) != (first.start, first.end) or len(other) != len(first):
            raise ChunkLawViolation(
                f"cannot merge {first!r} with {other!r}: same-kind inputs must cover the same "
                "interval with the same rows"
            )
    dtype = merged_dtype(tuple(c.data.dtype for c in chunks))
    out = np.empty(len(first), dtype=dtype)
    done: set[str] = set()
    for c in chunks:
        for name in c.data.dtype.names or ():
            if name in done:
                continue
            out[name] = c.data[name]
            done.add(name)
    return Chunk(first.start, first.end, out)
