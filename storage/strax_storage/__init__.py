"""Chunk store: time-chunked structured arrays in Zarr v3, keyed by (run, data type, lineage hash).

A standalone layer: it imports nothing from ``strax_decl``. Typical use::

    store = open_store("./strax_data")
    key = DataKey("run_1", "peaks", "abc234def")
    with store.saver(key, dtype, {"plugin": "PeakFinder"}) as saver:
        for chunk in chunks:
            saver.send(chunk)
    for chunk in store.load(key, time_range=(t0, t1)):
        ...

Layout: ``<root>/<run_id>/<data_type>-<lineage_hash>/`` is one Zarr group with one array per
field; see ``strax_storage.layout``.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - the names, for type checkers and IDEs
    from strax_storage.catalog import RunFolder
    from strax_storage.chunk import Chunk, check_chunk, endtimes, time_fields_problem
    from strax_storage.claims import Claim, ClaimInfo
    from strax_storage.errors import (
        ChunkLawViolation,
        ClaimHeld,
        ClaimTimeout,
        DataCorrupted,
        DataExistsError,
        DataNotFound,
        SaverClosedError,
        StorageError,
        StorageIOError,
        UnsafePath,
        WriteLost,
        WriterGone,
    )
    from strax_storage.info import DataSetInfo, Status
    from strax_storage.keys import DataKey
    from strax_storage.names import validate_name
    from strax_storage.run_removal import RunRemoval
    from strax_storage.saver import Saver
    from strax_storage.store import Store, open_store

#: Where each public name lives; it is imported on first use (PEP 562), so listing a store
#: (``strax-decl ls``) imports neither zarr nor numba: only what the listing needs.
_HOMES: dict[str, str] = {
    "RunFolder": "catalog",
    **dict.fromkeys(["Chunk", "check_chunk", "endtimes", "time_fields_problem"], "chunk"),
    **dict.fromkeys(["Claim", "ClaimInfo"], "claims"),
    **dict.fromkeys(
        [
            "ChunkLawViolation",
            "ClaimHeld",
            "ClaimTimeout",
            "DataCorrupted",
            "DataExistsError",
            "DataNotFound",
            "SaverClosedError",
            "StorageError",
            "StorageIOError",
            "UnsafePath",
            "WriteLost",
            "WriterGone",
        ],
        "errors",
    ),
    **dict.fromkeys(["DataSetInfo", "Status"], "info"),
    "DataKey": "keys",
    "validate_name": "names",
    "RunRemoval": "run_removal",
    "Saver": "saver",
    **dict.fromkeys(["Store", "open_store"], "store"),
}


def __getattr__(name: str) -> Any:
    """A public name, imported from its module the first time it is asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'strax_storage' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"strax_storage.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))


__all__ = [
    "Chunk",
    "ChunkLawViolation",
    "Claim",
    "ClaimHeld",
    "ClaimInfo",
    "ClaimTimeout",
    "DataCorrupted",
    "DataExistsError",
    "DataKey",
    "DataNotFound",
    "DataSetInfo",
    "RunFolder",
    "RunRemoval",
    "Saver",
    "SaverClosedError",
    "Status",
    "StorageError",
    "StorageIOError",
    "Store",
    "UnsafePath",
    "WriteLost",
    "WriterGone",
    "check_chunk",
    "endtimes",
    "open_store",
    "time_fields_problem",
    "validate_name",
]
