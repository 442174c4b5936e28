"""The saver's part in the final prefix (``final_prefix``): records, live flushes, resuming.

A mixin of ``Saver`` (kept apart so the saver stays readable). The saver calls

- ``_collected(z, nbytes)`` for every field file of Zarr chunk ``z`` written (in order);
  once all fields of ``z`` are written, the strax chunks whose rows are now all on disk are
  final, and one record says so;
- ``_maybe_flush()`` after each chunk: with ``flush_every`` (seconds; 0: every chunk), the
  rows not yet in a whole Zarr chunk are written as a tail file and recorded, so the
  watermark follows the last chunk sent (for live data and readers of a growing data set);
- ``_adopt(resume)`` instead of starting afresh: it takes over a dead writer's temporary
  directory (renamed to this writer's own name while holding the key's claim), drops what is
  beyond the recorded final prefix and continues after it, so that the data set it closes is
  the one an uninterrupted write would have made, byte for byte;
- ``suspend()`` when the run stopped on purpose: what was sent becomes final and the data
  set ``partial``, for a later writer to ``_adopt``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from strax_storage.backend import Backend
from strax_storage.chunk import Chunk
from strax_storage.codec import Codec, decode, encode
from strax_storage.dtypes import INDEX_GROUP, FieldSpec
from strax_storage.errors import ChunkLawViolation, WriteLost
from strax_storage.final_prefix import Prefix, record_key, records_dir, tail_key
from strax_storage.keys import DataKey
from strax_storage.layout import (
    DIGESTS,
    INDEX_FIELDS,
    array_documents,
    chunk_key,
    index_path,
    metadata_key,
)
from strax_storage.ownership import WriteGuard

__all__ = ["LiveWriting", "ResumeFrom", "resumable_prefix"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResumeFrom:
    """Where a resumed write continues: the dead writer's directory and its final prefix
    (``resumable_prefix``: trailing empty chunks at the watermark dropped), and the layout
    it wrote with (rows per Zarr chunk, each field's codec, the index arrays' zstd level),
    which the resumed write keeps whatever the resuming store's own settings are: one data
    set has one layout."""

    path: str
    prefix: Prefix
    rows_per_chunk: int
    codecs: dict[str, Codec]
    level: int

    @property
    def watermark(self) -> int:
        wm = self.prefix.watermark
        assert wm is not None
        return wm


def resumable_prefix(prefix: Prefix) -> Prefix | None:
    """``prefix`` without trailing zero-length chunks at its end (a resumed computation
    starting at the watermark makes them again); None if nothing would be left."""
    n = prefix.n_chunks
    while n and prefix.starts[n - 1] == prefix.ends[n - 1] == prefix.ends[-1]:
        n -= 1
    return prefix.truncated(n) if n else None


class LiveWriting:
    """Records, flushes and resumes of one ``Saver`` (see the module doc)."""

    key: DataKey
    dtype: np.dtype
    _backend: Backend
    _path: str
    _within: str | None
    _specs: list[FieldSpec]
    _codecs: list[Codec]
    _level: int
    _rows_per_chunk: int
    _starts: list[int]
    _ends: list[int]
    _first_rows: list[int]
    _counts: list[int]
    _n_rows: int
    _pending: list[np.ndarray]
    _n_pending: int
    _next_zarr_chunk: int
    _digests: dict[tuple[int, int], int]
    _stored_bytes: int
    _guard: WriteGuard
    _index_crcs: dict[str, int]
    _metadata: dict[str, Any]
    _state: str
    _lock: threading.RLock

    def _init_live(self, flush_every: float | None) -> None:
        if flush_every is not None and (
            isinstance(flush_every, bool) or not isinstance(flush_every, int | float)
        ):
            raise TypeError(f"flush_every must be seconds or None, not {flush_every!r}")
        self._flush_every = flush_every
        self._last_flush = time.monotonic()
        self._seq = 0  # next record number
        self._n_final = 0  # strax chunks recorded final
        self._z_done = 0  # whole Zarr chunks written and recorded
        self._z_recorded = 0  # Zarr chunks [0, _z_recorded) are in a record
        self._z_fields: dict[int, int] = {}
        self._z_bytes: dict[int, int] = {}
        self._atomic_below = 0  # Zarr chunks below this may be read now: replace atomically
        self._tails: list[str] = []  # tail files written, oldest first
        self._skip: Prefix | None = None  # resumed: the prefix chunks still to be skipped
        self._skip_pos = 0

    # ---------------------------------------------------------------- recording
    def _collected(self, z: int, nbytes: int) -> None:
        """One field file of Zarr chunk ``z`` is written (called in ``z`` order)."""
        self._stored_bytes += nbytes
        self._z_bytes[z] = self._z_bytes.get(z, 0) + nbytes
        self._z_fields[z] = self._z_fields.get(z, 0) + 1
        if self._z_fields[z] == len(self._specs) and z == self._z_done:
            self._z_done = z + 1
            del self._z_fields[z]

    def _record_new(self) -> None:
        """Write a record if whole Zarr chunks were written since the last one."""
        if self._z_done > self._z_recorded:
            self._record(None)

    def _on_disk(self, tail_rows: int) -> int:
        return self._z_done * self._rows_per_chunk + tail_rows

    def _record(self, tail: dict[str, Any] | None) -> None:
        rows = self._on_disk(tail["rows"] if tail else 0)
        n_final = self._n_final
        while (
            n_final < len(self._starts)
            and self._first_rows[n_final] + self._counts[n_final] <= rows
        ):
            n_final += 1
        n_fields = len(self._specs)
        z0 = self._z_recorded
        doc = {
            "seq": self._seq,
            "chunks": {
                "first": self._n_final,
                "entries": [
                    [self._starts[i], self._ends[i], self._counts[i]]
                    for i in range(self._n_final, n_final)
                ],
            },
            "zarr": {
                "first": z0,
                "crcs": [
                    [self._digests[(j, z)] for j in range(n_fields)]
                    for z in range(z0, self._z_done)
                ],
                "nbytes": [self._z_bytes.pop(z) for z in range(z0, self._z_done)],
            },
            "tail": tail,
        }
        try:
            self._backend.write_atomic(
                record_key(self._path, self._seq), json.dumps(doc).encode(), within=self._within
            )
        except WriteLost as e:
            raise self._guard.lost(e) from None
        self._seq += 1
        self._n_final = n_final
        self._z_recorded = self._z_done

    def _maybe_flush(self) -> None:
        """With ``flush_every``: make every chunk sent so far final (see the module doc)."""
        if self._flush_every is None or self._n_final == len(self._starts):
            return
        now = time.monotonic()
        if now - self._last_flush < self._flush_every:
            return
        self._last_flush = now
        self._flush()

    def _flush(self) -> None:
        """Make every chunk sent so far final: whole Zarr chunks recorded, the rest a tail."""
        self._reap(block=True)
        self._record_new()
        if self._n_final == len(self._starts):
            return
        rows = np.concatenate(self._pending) if self._pending else np.zeros(0, self.dtype)
        name = f"tail-{self._seq:08d}"
        frame, crc = encode(np.ascontiguousarray(rows).view(np.uint8), self._level)
        try:
            self._backend.write(tail_key(self._path, name), (frame, crc), within=self._within)
        except WriteLost as e:
            raise self._guard.lost(e) from None
        self._record({"key": name, "rows": len(rows), "crc": int.from_bytes(crc, "little")})
        self._tails.append(name)
        while len(self._tails) > 2:  # a reader of the record before still finds its tail
            self._backend.delete(tail_key(self._path, self._tails.pop(0)))

    def _reap(self, *, block: bool, ignore_errors: bool = False) -> None:
        raise NotImplementedError  # the Saver's

    def _write_group_attrs(self, status: str, exception: str | None = None) -> None:
        raise NotImplementedError  # the Saver's

    def _release_claim(self) -> None:
        raise NotImplementedError  # the Saver's

    def discard(self) -> None:
        raise NotImplementedError  # the Saver's

    # ---------------------------------------------------------------- stopping, kept
    def suspend(self) -> bool:
        """Stop writing, keeping every chunk sent as a final prefix another write resumes.

        For a resumable data set whose run stopped on purpose (an interrupt, an early stop,
        a time range covered): the rows sent are made final (a tail file for those after the
        last whole Zarr chunk), the attributes say ``partial`` (not ``failed``: nothing went
        wrong; not ``writing``: nobody writes it), and the claim is released. The directory
        stays where it is; the next writer that claims the key resumes it or, if it cannot,
        deletes it. Nothing sent, a write that failed or a lost claim: discarded instead
        (returns False). Idempotent, a no-op after ``close``, ``fail`` or ``discard``.
        """
        with self._lock:
            if self._state != "open":
                return self._state == "suspended"
            if not self._starts or self._guard.claim_problem() is not None:
                self.discard()
                return False
            try:
                self._flush()
                self._write_group_attrs("partial")
            except Exception:
                log.exception("could not keep the final prefix of %s; discarding it", self.key)
                self.discard()
                return False
            self._state = "suspended"
            self._release_claim()
            return True

    def _drop_records(self, path: str) -> None:
        """Once complete (not yet published): the full index replaces the records."""
        self._backend.delete_tree(records_dir(path))

    def _atomic(self, z: int) -> bool:
        """Whether Zarr chunk ``z`` must be replaced atomically (readers may read it now)."""
        return z < self._atomic_below

    # ---------------------------------------------------------------- the full index
    def _write_index(self) -> None:
        """The chunk index and the digests (``DIGESTS``), each array in one Zarr chunk."""
        n_fields = len(self._specs)
        digests = [
            self._digests[(j, z)] for z in range(self._next_zarr_chunk) for j in range(n_fields)
        ]
        columns = (self._starts, self._ends, self._first_rows, self._counts, digests)
        for name, values in zip((*INDEX_FIELDS, DIGESTS), columns, strict=True):
            if values:
                frame, crc = encode(np.asarray(values, dtype="<i8"), self._level)
                self._index_crcs[name] = int.from_bytes(crc, "little")
                key = chunk_key(index_path(self._path, name), 1, 0)
                self._backend.write(key, (frame, crc), within=self._within)
                self._stored_bytes += len(frame) + len(crc)

    def _write_array_metadata(self) -> None:
        """Metadata of every field and index array, with the final shapes (before the attrs)."""
        docs = array_documents(
            self._path,
            self._specs,
            self._n_rows,
            self._rows_per_chunk,
            self._level,
            len(self._starts),
            self._metadata.get("fields"),
            self._codecs,
        )
        for key, doc in docs:
            self._backend.write(key, [doc], within=self._within)

    # ---------------------------------------------------------------- resuming
    def _skipped(self, chunk: object) -> bool:
        """Resumed: True for a chunk of the stored prefix (checked, then skipped). The
        producer sends either every chunk or only those after the watermark."""
        prefix = self._skip
        if prefix is None or not isinstance(chunk, Chunk):
            return False
        i = self._skip_pos
        if i == 0 and chunk.start == prefix.watermark:
            self._skip = None  # the producer starts at the watermark
            return False
        got = (chunk.start, chunk.end, len(chunk.data))
        want = (int(prefix.starts[i]), int(prefix.ends[i]), int(prefix.counts[i]))
        if got != want:
            raise ChunkLawViolation(
                f"data set {self.key}: resumed after chunk {prefix.n_chunks - 1} (watermark "
                f"{prefix.watermark}), but chunk {i} sent is [{got[0]}, {got[1]}) with {got[2]} "
                f"rows, and the one stored is [{want[0]}, {want[1]}) with {want[2]} rows: the "
                "producer does not make the chunks it made before"
            )
        self._skip_pos += 1
        if self._skip_pos == prefix.n_chunks:
            self._skip = None
        return True

    def _adopt(self, resume: ResumeFrom) -> None:
        """Take over ``resume.path`` (a dead writer's work) and continue after its prefix."""
        backend, prefix = self._backend, resume.prefix
        if resume.path != self._path:
            backend.rename_tree(resume.path, self._path)
        n, rpc = prefix.n_rows, self._rows_per_chunk
        z0 = n // rpc  # the Zarr chunk the rows after the prefix start in
        # what the dead writer wrote beyond the prefix, and what only closing writes
        keep_z0 = z0 < prefix.n_zarr and n > z0 * rpc  # holds rows of the prefix
        for spec in self._specs:
            array = f"{self._path}/{spec.name}"
            backend.delete(metadata_key(array))
            for name in backend.children(f"{array}/c"):
                if name.isdigit() and (int(name) > z0 or (int(name) == z0 and not keep_z0)):
                    backend.delete(chunk_key(array, 1 + len(spec.shape), int(name)))
        for name in backend.children(f"{self._path}/{INDEX_GROUP}"):
            if name != "final":
                backend.delete_tree(f"{self._path}/{INDEX_GROUP}/{name}")
        first = prefix.first_rows
        self._starts = [int(x) for x in prefix.starts]
        self._ends = [int(x) for x in prefix.ends]
        self._counts = [int(x) for x in prefix.counts]
        self._first_rows = [int(x) for x in first]
        self._n_rows = n
        for z in range(z0):
            for j in range(len(self._specs)):
                self._digests[(j, z)] = prefix.crcs[z][j]
        self._stored_bytes = sum(prefix.nbytes[:z0])
        self._next_zarr_chunk = self._z_done = self._z_recorded = z0
        self._atomic_below = prefix.n_zarr  # z0 may still be read by readers of the prefix
        self._n_final = prefix.n_chunks
        self._seq = prefix.n_records
        self._skip = prefix
        if n > z0 * rpc:  # the rows of the prefix in Zarr chunk z0: written again with it
            self._pending = [self._prefix_rows(prefix, z0)]
            self._n_pending = n - z0 * rpc

    def _prefix_rows(self, prefix: Prefix, z0: int) -> np.ndarray:
        """Rows ``[z0 * R, n_rows)`` of the prefix (from Zarr chunk ``z0`` or the tail)."""
        rpc, count = self._rows_per_chunk, prefix.n_rows - z0 * self._rows_per_chunk
        if z0 >= prefix.n_zarr:
            tail = prefix.tail
            assert tail is not None
            raw = self._backend.read(tail_key(self._path, str(tail["key"])))
            if raw is None:
                raise FileNotFoundError(f"tail {tail['key']} of {self._path} is gone")
            data = decode(raw, int(tail["rows"]) * self.dtype.itemsize)
            return np.frombuffer(data, self.dtype)[:count].copy()
        rows = np.zeros(count, self.dtype)
        for j, spec in enumerate(self._specs):
            raw = self._backend.read(
                chunk_key(f"{self._path}/{spec.name}", 1 + len(spec.shape), z0)
            )
            if raw is None:
                raise FileNotFoundError(f"Zarr chunk {z0} of {spec.name} in {self._path} is gone")
            data = decode(raw, rpc * spec.row_nbytes, self._codecs[j])
            rows[spec.name] = np.frombuffer(data, spec.stored).reshape((rpc, *spec.shape))[:count]
        return rows
