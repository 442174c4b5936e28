"""Time synchronisation: turn several input streams into steps covering the same interval.

A plugin with inputs of several kinds (or same-kind inputs chunked differently) must see,
per call, the rows of every input inside one common ``[start, end)``. ``aligned`` pulls from
each input lazily, buffers only what it must, and cuts every buffer at the latest time that
cuts no row of any input. A chunk boundary of an input is always a safe cut for that input,
so when inputs share their chunking (the common case) no data is copied.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from strax_decl.chunk import (
    Chunk,
    ChunkLawViolation,
    check_touches,
    concatenate,
    safe_split_point,
    split,
)

__all__ = ["aligned"]


class _Input:
    """One input stream plus the not-yet-consumed part of it, ``[start, end)``.

    The buffer is kept as the list of chunks pulled (``parts``, touching), never
    re-concatenated while a common cut is searched: reaching one through many tiny chunks
    would otherwise copy the buffer once per chunk pulled (quadratic). A chunk boundary is a
    safe cut (rows lie inside their chunk), so the safe point at ``t`` is found in the one
    part holding ``t``; only the rows of a step are joined, once, when it is cut off.
    """

    def __init__(self, name: str, stream: Iterator[Chunk]) -> None:
        self.name = name
        self.stream = stream
        self.parts: list[Chunk] = []
        self.exhausted = False

    def pull(self) -> bool:
        """Append the next chunk to the buffer; False when the stream has ended."""
        if self.exhausted:
            return False
        try:
            chunk = next(self.stream)
        except StopIteration:
            self.exhausted = True
            return False
        if self.parts:
            check_touches(f"input {self.name!r}", chunk, self.parts[-1].end)
        self.parts.append(chunk)
        return True

    @property
    def has_buffer(self) -> bool:
        return bool(self.parts)

    @property
    def start(self) -> int:
        return self.parts[0].start

    @property
    def end(self) -> int:
        return self.parts[-1].end

    def replace(self, start: int, end: int) -> None:
        """Widen the buffer to ``[start, end)`` (padding: no rows there)."""
        first, last = self.parts[0], self.parts[-1]
        if len(self.parts) == 1:
            self.parts[0] = Chunk(start, end, first.data)
            return
        self.parts[0] = Chunk(start, first.end, first.data)
        self.parts[-1] = Chunk(last.start, end, last.data)

    def set_empty(self, start: int, end: int, dtype: np.dtype) -> None:
        self.parts = [Chunk(start, end, np.zeros(0, dtype=dtype))]

    def safe_point(self, t: int) -> int:
        """``safe_split_point`` of the whole buffer at ``t``, from the part holding ``t``."""
        parts = self.parts
        if t >= parts[-1].end:
            return parts[-1].end
        if t <= parts[0].start:
            return parts[0].start
        rows_before = False  # whether an earlier part has rows (which all end by part.start)
        for part in parts:  # few parts: those pulled since the last cut
            if t < part.end:
                if rows_before:
                    return safe_split_point(part, t, follows=True)
                return safe_split_point(Chunk(parts[0].start, part.end, part.data), t)
            rows_before = rows_before or len(part.data) > 0
        raise AssertionError("unreachable")  # pragma: no cover

    def take(self, cut: int) -> Chunk:
        """The buffer before ``cut`` (joined once); the rest stays."""
        parts = self.parts
        n = 0
        while n < len(parts) and parts[n].end <= cut:
            n += 1
        head = parts[:n]
        rest = parts[n:]
        if rest and rest[0].start < cut:
            left, right = split(rest[0], cut)
            head.append(left)
            rest[0] = right
        elif not rest:
            last = head[-1]  # cut == the buffer's end: an empty rest, as split gives
            rest = [Chunk(cut, cut, last.data[len(last.data) :])]
        self.parts = rest
        return concatenate(head) if len(head) > 1 else head[0]


def aligned(
    inputs: Mapping[str, Iterator[Chunk]], dtypes: Mapping[str, np.dtype]
) -> Iterator[dict[str, Chunk]]:
    """Yield ``{input name: chunk}`` steps whose chunks all share one ``[start, end)``.

    Inputs that start later or end earlier than the others are padded with empty chunks of
    their ``dtypes``, so every step covers the full span of the data.
    """
    streams = [_Input(name, iter(stream)) for name, stream in inputs.items()]
    for s in streams:
        s.pull()
    present = [s for s in streams if s.has_buffer]
    if not present:
        return
    if len(streams) == 1:
        # Fast path: nothing to align.
        only = streams[0]
        yield {only.name: only.parts[0]}
        for chunk in only.stream:
            yield {only.name: chunk}
        return
    cursor = min(s.start for s in present)
    for s in present:
        if s.start > cursor:  # pad a late starter
            s.replace(cursor, s.end)
    while True:
        for s in streams:
            # Every unfinished input must reach past the cursor before we can cut anywhere.
            while not s.exhausted and (not s.has_buffer or s.end <= cursor):
                s.pull()
        unfinished = [s for s in streams if not s.exhausted]
        live = [s for s in streams if s.has_buffer and s.end > cursor]
        if not live:
            return
        # An exhausted input has no more rows: it can be padded to any time.
        cut = min(s.end for s in unfinished) if unfinished else max(s.end for s in live)
        for s in streams:
            if s.exhausted:
                if not s.has_buffer or s.end <= cursor:
                    s.set_empty(cursor, cut, dtypes[s.name])
                elif s.end < cut:
                    s.replace(s.start, cut)
        # Iterate to the fixed point: a bounded number of passes could stop at a cut that is
        # still unsafe for some input (interleaved overlapping rows), and split would refuse.
        cut = _common_cut([s for s in streams if s.has_buffer], cut)
        if cut <= cursor:
            if not unfinished:
                raise ChunkLawViolation(
                    f"inputs {sorted(inputs)} cannot be cut at a common time after {cursor}"
                )
            # No common cut yet: extend the shortest unfinished input and try again.
            min(unfinished, key=lambda s: s.end).pull()
            continue
        yield {s.name: s.take(cut) for s in streams}
        cursor = cut


def _common_cut(streams: list[_Input], t: int) -> int:
    """``common_split_point`` over the streams' buffers (which share a start)."""
    while True:
        previous = t
        for s in streams:
            t = min(t, s.safe_point(t))
        if t == previous:
            return t
