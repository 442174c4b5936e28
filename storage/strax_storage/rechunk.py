"""Rechunking: turn a stream of chunks into chunks of about a target size, keeping the laws.

Plugins choose their chunk sizes for computing; storage wants neither thousands of tiny chunks
(one index entry and one load step each) nor a few huge ones (a loader must hold a whole chunk
in memory). ``rechunk`` combines touching chunks until they reach the target and splits chunks
of twice the target or more into pieces of about the target. It only ever cuts where no row
is cut and where rows leave a gap of at least ``min_gap`` ns: a cut inside a cluster of
touching rows (a pulse, a peak) would change what chunk-by-chunk consumers compute later.

Output chunks touch and cover exactly what the input covered, so every law that held for the
input holds for the output. Each byte is copied at most once (when small chunks are combined);
chunks already of a good size pass through untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from strax_storage.chunk import Chunk, check_touches, concatenate, endtimes

__all__ = ["SPLIT_GAP_NS", "Rechunker", "rechunk", "split_chunk", "split_times"]

MB = 1_000_000

SPLIT_GAP_NS = 1000
"""Savers and loaders split stored chunks only at gaps of at least this many ns between rows
(as strax does), so clusters of touching rows stay in one chunk for chunk-wise consumers."""


def split_times(chunk: Chunk, target_bytes: float, min_gap: int = 0) -> list[int]:
    """Times cutting ``chunk`` into pieces of at least ``target_bytes``, at gaps >= ``min_gap``.

    Each piece ends at the first suitable gap after it reaches the target, so pieces are as
    close to the target as the gaps allow; a rest smaller than the target stays with the last
    piece. Empty when the chunk is smaller than twice the target or has no suitable gap. Each
    cut lies in the middle of its gap, so it is safe for every row of the chunk.
    """
    data = chunk.data
    n = len(data)
    if n < 2 or chunk.nbytes < 2 * target_bytes:
        return []
    time = data["time"].astype(np.int64)
    ended = np.maximum.accumulate(endtimes(data))  # latest end among rows [0, i]
    gaps = time[1:] - ended[:-1]  # free time before row i+1
    candidates = np.flatnonzero(gaps >= min_gap) + 1  # row indices that may start a piece
    per_piece = max(1, int(np.ceil(target_bytes / data.itemsize)))
    cuts: list[int] = []
    first = 0
    while True:
        j = int(np.searchsorted(candidates, first + per_piece, side="left"))
        if j == len(candidates) or n - int(candidates[j]) < per_piece:
            break
        first = int(candidates[j])
        cuts.append(first)
    return [int(ended[i - 1] + (time[i] - ended[i - 1]) // 2) for i in cuts]


def split_chunk(chunk: Chunk, target_bytes: float, min_gap: int = 0) -> list[Chunk]:
    """``chunk`` cut at ``split_times`` into touching pieces (views, no copy); or ``[chunk]``."""
    times = split_times(chunk, target_bytes, min_gap)
    if not times:
        return [chunk]
    data = chunk.data
    rows = np.searchsorted(data["time"], times, side="left")
    bounds = [chunk.start, *times, chunk.end]
    cuts = [0, *rows.tolist(), len(data)]
    return [
        Chunk(bounds[k], bounds[k + 1], data[cuts[k] : cuts[k + 1]]) for k in range(len(bounds) - 1)
    ]


def check_target(target_mb: float, where: str) -> float:
    """``target_mb`` in bytes; ValueError unless it is positive."""
    if not target_mb > 0:
        raise ValueError(f"{where}: target size must be positive, got {target_mb} MB")
    return float(target_mb) * MB


class Rechunker:
    """Push interface of ``rechunk``: ``receive`` each chunk, then ``flush`` once.

    Savers in send/close mode use it directly; ``rechunk`` wraps it as a generator.
    """

    def __init__(
        self,
        target_mb: float,
        *,
        combine: bool = True,
        min_gap: int = 0,
        where: str = "rechunk",
    ) -> None:
        self.target_bytes = check_target(target_mb, where)
        if min_gap < 0:
            raise ValueError(f"{where}: min_gap must be >= 0 ns, got {min_gap}")
        self.combine = combine
        self.min_gap = int(min_gap)
        self.where = where
        self._buffer: list[Chunk] = []
        self._buffered_bytes = 0
        self._end: int | None = None  # end of the last chunk received

    def receive(self, chunk: Chunk) -> list[Chunk]:
        """Take the next chunk; return the chunks that are ready (possibly none)."""
        check_touches(self.where, chunk, self._end)
        self._end = chunk.end
        if not self.combine or (not self._buffer and chunk.nbytes >= self.target_bytes):
            return self._split(chunk)  # no copy: already big enough on its own
        self._buffer.append(chunk)
        self._buffered_bytes += chunk.nbytes
        if self._buffered_bytes < self.target_bytes:
            return []
        return self._split(self._take())

    def flush(self) -> list[Chunk]:
        """The rest of the stream: what is buffered, combined into one chunk."""
        return [self._take()] if self._buffer else []

    def _take(self) -> Chunk:
        combined = concatenate(self._buffer)
        self._buffer = []
        self._buffered_bytes = 0
        return combined

    def _split(self, chunk: Chunk) -> list[Chunk]:
        return split_chunk(chunk, self.target_bytes, self.min_gap)


def rechunk(
    chunks: Iterable[Chunk],
    target_mb: float,
    *,
    combine: bool = True,
    min_gap: int = 0,
    where: str = "rechunk",
) -> Iterator[Chunk]:
    """Chunks of about ``target_mb`` MB (1e6 bytes) holding exactly the rows of ``chunks``.

    With ``combine``, touching chunks are joined until they reach the target, so every output
    chunk but the last holds at least the target; chunks of twice the target or more are split
    into pieces of at least the target at gaps of at least ``min_gap`` ns (pieces are bigger
    where gaps are rare). ``combine=False`` only splits (for loaders,
    which want to bound memory without delaying the first chunk).
    """
    rechunker = Rechunker(target_mb, combine=combine, min_gap=min_gap, where=where)
    for chunk in chunks:
        yield from rechunker.receive(chunk)
    yield from rechunker.flush()
