"""The plan of a whole-data-set read: which output chunk comes from which rows, worked out once
per read with numpy instead of once per stored chunk in Python.

A data set written in many small strax chunks (during data taking: thousands per run of a
fraction of a second each) holds several strax chunks in each Zarr chunk. Reading it back, the
loader decodes each Zarr chunk once, into one structured *segment* covering the output chunks
that lie wholly inside it; each such output chunk is then a view of that segment (no copy, no
allocation per chunk). Only an output chunk spanning several Zarr chunks (big strax chunks) is
assembled into its own buffer, each Zarr chunk copying its part straight into it.

An output chunk is one stored strax chunk (the producer's own chunks, the default) or, when a
reader asks for it explicitly (``DataSetReader.chunks(combine_rows=...)``, for readers that only
concatenate), a run of consecutive stored chunks: its boundaries are then a subset of the
producer's, so the chunk laws hold for it as they hold for each of its parts.

``first_bad``: the loader's guard against rows from the wrong place (swapped chunk files), for
a whole segment at once: every stored chunk's rows sorted and inside its ``[start, end)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ReadPlan", "first_bad", "plan_read"]


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """Output chunk ``k`` covers stored chunks ``[chunk_first[k], chunk_first[k + 1])``.

    Per output chunk (Python lists: the loop that yields them indexes them one at a time):
    ``starts``/``ends`` its time bounds, ``firsts``/``counts`` its rows, ``inside`` the one
    Zarr chunk holding all its rows (-1: it has no row, or spans several), ``z_need`` the
    Zarr chunks ``[0, z_need)`` to decode before it is complete. Per Zarr chunk: the rows
    ``[seg_first, seg_stop)`` of the output chunks inside it (its segment; empty: none).
    """

    index: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    """The stored chunks' ``first_rows``, ``counts``, ``starts``, ``ends``."""
    rows_per_chunk: int
    n_rows: int
    chunk_first: np.ndarray
    starts: list[int]
    ends: list[int]
    firsts: list[int]
    counts: list[int]
    inside: list[int]
    z_need: list[int]
    row_ends: np.ndarray
    seg_first: list[int]
    seg_stop: list[int]

    @property
    def n_out(self) -> int:
        return len(self.starts)

    @property
    def n_zarr(self) -> int:
        return len(self.seg_first)

    def containing(self, row: int) -> int:
        """The output chunk holding ``row`` (one with rows: empty ones hold none)."""
        return int(np.searchsorted(self.row_ends, row, side="right"))

    def spans(self, z: int) -> list[tuple[int, slice, slice]]:
        """The output chunks spanning several Zarr chunks with rows in Zarr chunk ``z``: each
        with its rows there (``dst`` in the output chunk, ``src`` in the Zarr chunk)."""
        lo = z * self.rows_per_chunk
        hi = min(lo + self.rows_per_chunk, self.n_rows)
        found = []
        for k in sorted({self.containing(lo), self.containing(hi - 1)}):
            if self.inside[k] < 0:
                first = self.firsts[k]
                a, b = max(lo, first), min(hi, first + self.counts[k])
                found.append((k, slice(a - first, b - first), slice(a - lo, b - lo)))
        return found

    def first_bad(self, data: np.ndarray, row0: int, k_lo: int, k_hi: int) -> tuple[int, int]:
        """The first output chunk of ``[k_lo, k_hi)`` (and its stored chunk) whose rows, in
        ``data`` from data set row ``row0`` on, are not its own; ``(n_out, -1)`` if none."""
        c_lo, c_hi = int(self.chunk_first[k_lo]), int(self.chunk_first[k_hi])
        first_rows, counts, starts, ends = (a[c_lo:c_hi] for a in self.index)
        bad = first_bad(data["time"], row0, first_rows, counts, starts, ends)
        if bad < 0:
            return self.n_out, -1
        return int(np.searchsorted(self.chunk_first, c_lo + bad, side="right")) - 1, c_lo + bad


def plan_read(
    starts: np.ndarray,
    ends: np.ndarray,
    first_rows: np.ndarray,
    counts: np.ndarray,
    rows_per_chunk: int,
    combine_rows: int | None = None,
) -> ReadPlan:
    """The plan of reading every stored chunk (the chunk index's columns) in order.

    ``combine_rows``: join consecutive stored chunks whose first rows fall in the same block
    of that many rows into one output chunk (None: one output chunk per stored chunk).
    """
    n = rows_per_chunk
    n_chunks = len(starts)
    if combine_rows is None or n_chunks == 0:
        chunk_first = np.arange(n_chunks + 1, dtype=np.int64)
    else:
        if combine_rows < 1:
            raise ValueError(f"combine_rows must be at least 1, got {combine_rows}")
        block = first_rows // combine_rows
        new = np.flatnonzero(block[1:] != block[:-1]) + 1
        chunk_first = np.concatenate([[0], new, [n_chunks]]).astype(np.int64)
    lo, last = chunk_first[:-1], chunk_first[1:] - 1
    out_firsts = first_rows[lo] if n_chunks else first_rows
    row_ends = first_rows[last] + counts[last] if n_chunks else first_rows
    out_counts = row_ends - out_firsts
    z_lo = out_firsts // n
    z_hi = (row_ends - 1) // n
    inside = np.where((out_counts > 0) & (z_lo == z_hi), z_lo, -1)
    z_need = np.where(out_counts > 0, z_hi + 1, 0)
    n_zarr = -(-int(row_ends[-1] if len(row_ends) else 0) // n)
    seg_first = np.zeros(n_zarr, np.int64)
    seg_stop = np.zeros(n_zarr, np.int64)
    ins = np.flatnonzero(inside >= 0)
    if len(ins):
        zs = inside[ins]
        # output chunks are in row order: the first and last inside each Zarr chunk
        head = np.concatenate([[True], zs[1:] != zs[:-1]])
        tail = np.concatenate([zs[1:] != zs[:-1], [True]])
        seg_first[zs[head]] = out_firsts[ins[head]]
        seg_stop[zs[tail]] = row_ends[ins[tail]]
    return ReadPlan(
        index=(first_rows, counts, starts, ends),
        rows_per_chunk=n,
        n_rows=int(row_ends[-1]) if len(row_ends) else 0,
        chunk_first=chunk_first,
        starts=(starts[lo] if n_chunks else starts).tolist(),
        ends=(ends[last] if n_chunks else ends).tolist(),
        firsts=out_firsts.tolist(),
        counts=out_counts.tolist(),
        inside=inside.tolist(),
        z_need=z_need.tolist(),
        row_ends=row_ends,
        seg_first=seg_first.tolist(),
        seg_stop=seg_stop.tolist(),
    )


def first_bad(
    time: np.ndarray,
    row0: int,
    first_rows: np.ndarray,
    counts: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
) -> int:
    """The first of these stored chunks whose rows (``time[first_rows - row0:]``, ``counts``
    of them) are unsorted or outside its ``[start, end)``; -1 if none is.

    Sorted over the whole of ``time`` and each chunk's first row at or after its start and
    last row before its end is the same as each chunk sorted and inside: touching chunks
    order their rows across boundaries too (a row that breaks the order across one lies
    outside one of the two chunks, which marks that chunk instead).
    """
    has = counts > 0
    rel = first_rows - row0
    bad = np.zeros(len(counts), bool)
    if has.any():
        f = rel[has]
        bad[has] = (time[f] < starts[has]) | (time[f + counts[has] - 1] >= ends[has])
    unsorted = np.flatnonzero(time[1:] < time[:-1]) + 1
    if len(unsorted):  # the chunk holding the row that comes too early
        bad[np.searchsorted(rel + counts, unsorted, side="right")] = True
    hits = np.flatnonzero(bad)
    return int(hits[0]) if len(hits) else -1
