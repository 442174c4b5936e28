"""The final prefix of a data set being written: append-only records of what is on disk.

While a data set is written (in its temporary directory, or in place), the saver records,
after each Zarr chunk whose files are all written (and, for live data, after a flush of the
rows not yet in a whole Zarr chunk), one small **record** ``_index/final/<seq>.json``
(``write_atomic``: a reader sees a whole record or none). Records are numbered ``0, 1, ...``;
a reader takes them in order up to the first one missing. Each holds only what changed since
the one before, so recording costs O(1) per strax chunk however long the data set:

- ``chunks``: ``{"first": i, "entries": [[start, end, n_rows], ...]}``, strax chunks ``i,
  i+1, ...`` that became final (every row on disk); a later record may repeat a position (a
  resumed writer re-sends what it recomputes) and then replaces it;
- ``zarr``: ``{"first": z, "crcs": [[crc of field 0, ...], ...], "nbytes": [...]}``, the
  CRC32C (and stored size, all fields) of Zarr chunks ``z, z+1, ...`` whose files are written;
- ``tail``: ``null``, or ``{"key": name, "rows": n, "crc": c}``: the rows after the last whole
  Zarr chunk, in the file ``_index/final/<name>`` (zstd, the rows' bytes), so that a live
  data set's watermark follows its last chunk and not its last 16 MB.

The **watermark** is the end of the last final strax chunk: every row before it is final and
never changes; nothing after it may be read. A data set marked complete has its full chunk
index (``_index/start`` ...) and no records (the saver deletes them before publishing): the
published layout is the same whether it was written in one go, flushed live, or resumed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from strax_storage.backend import Backend
from strax_storage.dtypes import INDEX_GROUP

__all__ = ["RECORDS", "Prefix", "read_prefix", "record_key", "records_dir", "tail_key"]

RECORDS = "final"
"""The folder of the records, inside the ``_index`` group."""


def records_dir(path: str) -> str:
    return f"{path}/{INDEX_GROUP}/{RECORDS}"


def record_key(path: str, seq: int) -> str:
    return f"{records_dir(path)}/{seq:08d}.json"


def tail_key(path: str, name: str) -> str:
    return f"{records_dir(path)}/{name}"


@dataclass
class Prefix:
    """What the records of one data set say is final (see the module doc)."""

    starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ends: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    crcs: list[list[int]] = field(default_factory=list)  # per whole Zarr chunk, per field
    nbytes: list[int] = field(default_factory=list)  # per whole Zarr chunk, all fields
    tail: dict[str, Any] | None = None
    n_records: int = 0

    @property
    def n_chunks(self) -> int:
        return len(self.starts)

    @property
    def n_rows(self) -> int:
        return int(self.counts.sum())

    @property
    def first_rows(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)

    @property
    def n_zarr(self) -> int:
        """Whole Zarr chunks written (contiguous from 0)."""
        return len(self.crcs)

    @property
    def start(self) -> int | None:
        return int(self.starts[0]) if self.n_chunks else None

    @property
    def watermark(self) -> int | None:
        """The end of the last final strax chunk (None: nothing is final yet)."""
        return int(self.ends[-1]) if self.n_chunks else None

    def truncated(self, n_chunks: int) -> Prefix:
        """The first ``n_chunks`` chunks only (a resumed writer continues after them)."""
        return Prefix(
            self.starts[:n_chunks].copy(),
            self.ends[:n_chunks].copy(),
            self.counts[:n_chunks].copy(),
            self.crcs,
            self.nbytes,
            self.tail,
            self.n_records,
        )


class BadRecord(ValueError):
    """A record that does not parse or contradicts the ones before it."""


def _ints(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadRecord(f"{what} is not a list")
    return value


def read_prefix(backend: Backend, path: str, rows_per_chunk: int, n_fields: int) -> Prefix:
    """The final prefix recorded for the data set at ``path`` (empty: no records yet).

    Reads records ``0, 1, ...`` up to the first missing one. A record that is damaged or
    contradicts the others ends the prefix there (what came before it stays final): a
    record is only written after what it describes, so the prefix read is never more than
    what is on disk. Raises BadRecord only for a damaged first record.
    """
    names = set(backend.children(records_dir(path)))
    entries: list[list[int]] = []
    crcs: list[list[int]] = []
    nbytes: list[int] = []
    tail: dict[str, Any] | None = None
    seq = 0
    while f"{seq:08d}.json" in names:
        raw = backend.read(record_key(path, seq), limit=2**26)
        if raw is None:
            break
        try:
            doc = json.loads(raw)
            chunks, zarr = doc["chunks"], doc["zarr"]
            i0, z0 = int(chunks["first"]), int(zarr["first"])
            new = _ints(chunks["entries"], "chunks")
            new_crcs = _ints(zarr["crcs"], "crcs")
            new_bytes = _ints(zarr["nbytes"], "nbytes")
            if i0 > len(entries) or z0 > len(crcs) or len(new_crcs) != len(new_bytes):
                raise BadRecord(f"record {seq} leaves a gap")
            if any(len(e) != 3 for e in new) or any(len(c) != n_fields for c in new_crcs):
                raise BadRecord(f"record {seq} has entries of the wrong size")
            entries = entries[:i0] + [[int(x) for x in e] for e in new]
            crcs = crcs[:z0] + [[int(x) for x in c] for c in new_crcs]
            nbytes = nbytes[:z0] + [int(x) for x in new_bytes]
            tail = doc.get("tail")
        except (ValueError, KeyError, TypeError) as e:
            if seq == 0:
                raise BadRecord(f"record 0 of {backend.where(path)} is unreadable: {e}") from e
            break
        seq += 1
    arr = np.asarray(entries, dtype=np.int64).reshape(-1, 3)
    prefix = Prefix(arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy(), crcs, nbytes, tail, seq)
    covered = prefix.n_zarr * rows_per_chunk + (int(tail["rows"]) if tail else 0)
    if prefix.n_rows > covered:  # cannot happen with a well-behaved writer; be safe
        keep = int(np.searchsorted(np.cumsum(prefix.counts), covered, side="right"))
        prefix = prefix.truncated(keep)
    return prefix
