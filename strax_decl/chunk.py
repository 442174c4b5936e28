"""Operations on chunks: split at a time, concatenate, merge same-kind chunks field-wise.

The ``Chunk`` type, the chunk laws and the law-keeping operations (split, concatenate) live
in :mod:`strax_storage.chunk` (the lowest layer, so the store and its rechunker use the same code);
this module re-exports them and adds what the framework needs to move chunks between plugins.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from strax_storage.chunk import (
    CannotSplit,
    Chunk,
    ChunkLawViolation,
    check_chunk,
    check_touches,
    common_split_point,
    concatenate,
    endtimes,
    safe_split_point,
    split,
)

__all__ = [
    "TIME_FIELDS",
    "CannotSplit",
    "Chunk",
    "ChunkLawViolation",
    "OutputWhere",
    "check_chunk",
    "check_touches",
    "common_split_point",
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


def empty_chunk(start: int, end: int, dtype: np.dtype) -> Chunk:
    return Chunk(start, end, np.zeros(0, dtype=dtype))


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


def merge(chunks: Sequence[Chunk], names: Sequence[str] | None = None) -> Chunk:
    """Merge same-kind chunks (same interval, same rows) into one array with all fields.

    The rule for a field several of them have (strax's): time fields (``time``, ``endtime``,
    ``dt``, ``length``) must agree row by row; any other shared field takes the values of the
    *last* chunk holding it (inputs in declaration order: the later input wins). Fields are
    in first-appearance order. ``names``: the data types of ``chunks``, for the messages.
    """
    if len(chunks) == 1:
        return chunks[0]
    labels = list(names) if names is not None else [f"input {i}" for i in range(len(chunks))]
    first = chunks[0]
    for label, other in zip(labels[1:], chunks[1:], strict=True):
        same_rows = len(other) == len(first) and (
            np.array_equal(other.data["time"], first.data["time"]) if len(first) else True
        )
        if (other.start, other.end) != (first.start, first.end) or not same_rows:
            raise ChunkLawViolation(
                f"cannot merge {labels[0]} {first!r} with {label} {other!r}: data types of "
                "one kind must cover the same interval with the same rows (same number, same "
                "times); one of their plugins gave rows that are not those of the kind"
            )
    try:
        dtype = merged_dtype(tuple(c.data.dtype for c in chunks))
    except TypeError as e:
        raise TypeError(f"cannot merge {', '.join(labels)}: {e}") from None
    out = np.empty(len(first), dtype=dtype)
    done: dict[str, str] = {}
    for label, c in reversed(list(zip(labels, chunks, strict=True))):
        for name in c.data.dtype.names or ():
            if name in done:
                if name in TIME_FIELDS and name != "time":
                    _check_agree(name, out[name], c.data[name], done[name], label)
                continue
            out[name] = c.data[name]
            done[name] = label
    return Chunk(first.start, first.end, out)


def _check_agree(field: str, later: np.ndarray, earlier: np.ndarray, a: str, b: str) -> None:
    bad = np.flatnonzero(later != earlier)
    if len(bad):
        i = int(bad[0])
        raise ChunkLawViolation(
            f"cannot merge {b} with {a}: time field {field!r} differs in row {i} "
            f"({earlier[i]} vs {later[i]}); data types of one kind must have the same rows"
        )


class OutputWhere:
    """``where`` of a chunk-law message, formatted only if there is one (once per chunk)."""

    __slots__ = ("chunk", "output", "plugin")

    def __init__(self, plugin: str, output: str, chunk: Chunk) -> None:
        self.plugin, self.output, self.chunk = plugin, output, chunk

    def __str__(self) -> str:
        return f"plugin {self.plugin}, output {self.output!r}, chunk {self.chunk!r}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)
