"""Lazy Dask arrays over the final prefix of a data set that is not complete.

``ctx.to_dask(..., allow_incomplete=True)``: a data set being written (or left partial by a
stopped or killed writer) has no Zarr array metadata yet (written when it is published), so
its fields cannot be opened with ``da.from_zarr``. Instead, the final prefix as it is when
``to_dask`` is called (its watermark then) is cut into blocks of whole strax chunks of about
one Zarr chunk of rows, and each block is one task reading exactly the rows of its chunks
(verified, as every prefix read, by ``Store.load_array(allow_incomplete=True)``). The rows
never change, so a block reads the same whether the writer went on, published or was
resumed meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from strax_storage import DataKey, DataNotFound, StorageError, Store

if TYPE_CHECKING:  # pragma: no cover - Dask is an optional extra
    import dask.array as da

__all__ = ["prefix_arrays"]


def prefix_arrays(
    stores: Sequence[Store], key: DataKey, names: Sequence[str], dtype: np.dtype
) -> dict[str, da.Array]:
    """One lazy array per field in ``names`` over the final prefix of ``key`` (now)."""
    import dask
    import dask.array as dask_array

    store, found = next(
        ((s, p) for s in stores if (p := s.progress(key)) is not None), (None, None)
    )
    if store is None or found is None:
        raise DataNotFound(
            f"{key.data_type} of run {key.run_id} ({key}) is neither stored complete nor being "
            "written; allow_incomplete=True reads stored data only, it never computes"
        )
    ours = found.info.attrs.get("strax_decl", {}) if found.info.attrs else {}
    target = ours.get("rows_per_chunk") if isinstance(ours, dict) else None
    blocks = _blocks(found.prefix.starts, found.prefix.ends, found.prefix.counts, target)
    out: dict[str, da.Array] = {}
    reads = [
        dask.delayed(_rows, pure=True)(
            store, key, t0, t1, n, dask_key_name=f"strax-prefix-{key.run_id}-{key.dirname}-{t0}"
        )
        for t0, t1, n in blocks
    ]
    for name in names:
        sub = dtype.fields[name][0] if dtype.fields else dtype
        parts = [
            dask_array.from_delayed(read[name], shape=(n, *sub.shape), dtype=sub.base)
            for read, (_, _, n) in zip(reads, blocks, strict=True)
        ]
        out[name] = (
            dask_array.concatenate(parts, axis=0)
            if parts
            else dask_array.zeros((0, *sub.shape), dtype=sub.base)
        )
    return out


def _blocks(
    starts: np.ndarray, ends: np.ndarray, counts: np.ndarray, target: Any
) -> list[tuple[int, int, int]]:
    """``(t0, t1, rows)`` of consecutive strax chunks holding about ``target`` rows each
    (blocks without rows left out)."""
    size = target if isinstance(target, int) and target > 0 else 1
    blocks: list[tuple[int, int, int]] = []
    first, rows = 0, 0
    for i, count in enumerate(counts.tolist()):
        rows += count
        if rows >= size or i == len(counts) - 1:
            if rows:
                blocks.append((int(starts[first]), int(ends[i]), rows))
            first, rows = i + 1, 0
    return blocks


def _rows(store: Store, key: DataKey, t0: int, t1: int, n: int) -> np.ndarray:
    """The rows of the strax chunks spanning ``[t0, t1)`` (a task: runs on a worker)."""
    rows = store.load_array(key, (t0, t1), allow_incomplete=True)
    if len(rows) != n:
        raise StorageError(
            f"the final prefix of {key} has {len(rows)} rows in [{t0}, {t1}), not the {n} "
            "recorded when the Dask arrays were made"
        )
    return rows
