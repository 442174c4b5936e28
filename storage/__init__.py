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
field; see ``storage.layout``.
"""

from storage.backend import StorageIOError, UnsafePath
from storage.chunk import Chunk, ChunkLawViolation, check_chunk, endtimes, time_fields_problem
from storage.claims import Claim, ClaimHeld, ClaimInfo, ClaimTimeout, WriterGone
from storage.errors import (
    DataCorrupted,
    DataExistsError,
    DataNotFound,
    SaverClosedError,
    StorageError,
)
from storage.info import DataSetInfo, Status
from storage.keys import DataKey
from storage.names import validate_name
from storage.saver import Saver
from storage.store import Store, open_store

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
    "Saver",
    "SaverClosedError",
    "Status",
    "StorageError",
    "StorageIOError",
    "Store",
    "UnsafePath",
    "WriterGone",
    "check_chunk",
    "endtimes",
    "open_store",
    "time_fields_problem",
    "validate_name",
]
