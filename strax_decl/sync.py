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
    common_split_point,
    concatenate,
    split,
)

__all__ = ["aligned"]


class _Input:
    """One input stream plus the not-yet-consumed part of it, ``[cursor, buffer.end)``."""

    def __init__(self, name: str, stream: Iterator[Chunk]) -> None:
        self.name = name
        self.stream = stream
        self.buffer: Chunk | None = None
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
        if self.buffer is None:
            self.buffer = chunk
        else:
            check_touches(f"input {self.name!r}", chunk, self.buffer.end)
            self.buffer = (
                concatenate([self.buffer, chunk])
                if len(self.buffer)
                else Chunk(self.buffer.start, chunk.end, chunk.data)
            )
        return True

    @property
    def end(self) -> int:
        assert self.buffer is not None
        return self.buffer.end


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
    present = [s for s in streams if s.buffer is not None]
    if not present:
        return
    if len(streams) == 1:
        # Fast path: nothing to align.
        only = streams[0]
        assert only.buffer is not None
        yield {only.name: only.buffer}
        for chunk in only.stream:
            yield {only.name: chunk}
        return
    cursor = min(s.buffer.start for s in present if s.buffer is not None)
    for s in streams:
        if s.buffer is None:
            continue
        if s.buffer.start > cursor:  # pad a late starter
            s.buffer = Chunk(cursor, s.buffer.end, s.buffer.data)
    while True:
        for s in streams:
            # Every unfinished input must reach past the cursor before we can cut anywhere.
            while not s.exhausted and (s.buffer is None or s.buffer.end <= cursor):
                s.pull()
        unfinished = [s for s in streams if not s.exhausted]
        live = [s for s in streams if s.buffer is not None and s.buffer.end > cursor]
        if not live:
            return
        # An exhausted input has no more rows: it can be padded to any time.
        cut = min(s.end for s in unfinished) if unfinished else max(s.end for s in live)
        for s in streams:
            if s.exhausted:
                if s.buffer is None or s.buffer.end <= cursor:
                    s.buffer = Chunk(cursor, cut, np.zeros(0, dtype=dtypes[s.name]))
                elif s.buffer.end < cut:
                    s.buffer = Chunk(s.buffer.start, cut, s.buffer.data)
        # Iterate to the fixed point: a bounded number of passes could stop at a cut that is
        # still unsafe for some input (interleaved overlapping rows), and split would refuse.
        cut = common_split_point([s.buffer for s in streams if s.buffer is not None], cut)
        if cut <= cursor:
            if not unfinished:
                raise ChunkLawViolation(
                    f"inputs {sorted(inputs)} cannot be cut at a common time after {cursor}"
                )
            # No common cut yet: extend the shortest unfinished input and try again.
            min(unfinished, key=lambda s: s.end).pull()
            continue
        step: dict[str, Chunk] = {}
        for s in streams:
            assert s.buffer is not None
            head, tail = split(s.buffer, cut)
            step[s.name] = head
            s.buffer = tail
        yield step
        cursor = cut
