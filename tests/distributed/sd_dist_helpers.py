"""Helpers of the distributed tests: comparing whole stores."""

from __future__ import annotations

from typing import Any

import numpy as np

from strax_storage import Store


def snapshot(store: Store) -> dict[tuple[str, str, str], dict[str, Any]]:
    """What a store holds, comparable between stores: data sets, chunk bounds and rows."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for info in store.list():
        key = info.key
        entry: dict[str, Any] = {"status": info.status, "n_rows": info.n_rows}
        if info.status == "complete":
            chunks = list(store.load(key))
            entry["bounds"] = [(c.start, c.end, len(c)) for c in chunks]
            entry["rows"] = store.load_array(key).tobytes()
            entry["dtype"] = str(store.load_array(key).dtype)
        out[(key.run_id, key.data_type, key.lineage_hash)] = entry
    return out


def assert_same_store(a: Store, b: Store) -> None:
    sa, sb = snapshot(a), snapshot(b)
    assert sorted(sa) == sorted(sb)
    for k in sa:
        assert sa[k] == sb[k], f"data set {k} differs"


def field_equal(x: np.ndarray, y: np.ndarray) -> bool:
    return x.shape == y.shape and bool(np.array_equal(x, y))


def storage_pool_kind() -> str:
    """On a worker: the kind of executor its saves compress and write with."""
    import strax_storage.pool

    return type(strax_storage.pool.pool()).__name__
