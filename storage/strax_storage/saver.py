"""Saver: writes one data set from a stream of strax chunks, in either of two modes.

- iterate: ``saver.save_from(chunks)`` pulls to exhaustion, then ``close()``;
- send/close: ``saver.send(chunk)`` ... ``saver.close()``, or as a context manager where an
  exception marks the data set failed (and is re-raised).

Both modes go through ``send``. Each chunk is checked against the chunk laws
(``chunk.check_chunk``) before anything is buffered; a violation marks the data set failed.

Rows are buffered (by reference, no copy) until a whole Zarr chunk of ``rows_per_chunk`` rows
is available; then one task per field gathers that field's rows into a contiguous scratch
buffer, compresses, checksums and writes the chunk on the shared pool (``pool.py``), outside the
GIL. At most a few Zarr chunks are in flight, so memory stays bounded and ``send`` applies
backpressure. After each Zarr chunk (and, with ``flush_every``, after each flush) a record
says which strax chunks are final (``final_prefix``, ``live_saver``); a saver may resume a
dead writer's work after its final prefix. The array metadata (with the final shape), the
chunk index and finally the group attributes with ``complete: true`` are written at
``close``; locally the whole directory is then renamed into place (``catalog.publish``).

Rows handed to ``send`` must not be modified afterwards (chunks are immutable by convention):
the saver reads them when their Zarr chunk is written.
"""

from __future__ import annotations

import logging
import threading
import traceback
import uuid
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import numpy as np

from strax_storage import catalog
from strax_storage.backend import Backend
from strax_storage.chunk import Chunk, check_chunk
from strax_storage.claims import Claim, Claims
from strax_storage.codec import encode, scratch
from strax_storage.codec_choice import CodecChoice, field_codecs
from strax_storage.dtypes import FieldSpec, dtype_to_json, field_specs
from strax_storage.errors import SaverClosedError, StorageError, StorageIOError, WriteLost
from strax_storage.info import DataSetInfo
from strax_storage.keys import DataKey
from strax_storage.layout import (
    ATTRS_KEY,
    chunk_key,
    fixed_attrs,
    group_metadata,
    metadata_json,
    metadata_key,
)
from strax_storage.live_saver import LiveWriting, ResumeFrom
from strax_storage.ownership import WriteGuard
from strax_storage.pool import n_threads, pool
from strax_storage.process import process_identity

__all__ = ["Saver"]

log = logging.getLogger(__name__)

_INFLIGHT_ZARR_CHUNKS = 3
"""Zarr chunks (all fields) being compressed/written at once before ``send`` waits."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def exception_text(exc: BaseException) -> str:
    """Type, message and traceback of ``exc``, as stored in a failed data set's attributes."""
    return "".join(traceback.format_exception(exc)).rstrip()


class Saver(LiveWriting):
    """Writes one data set. Create it with ``Store.saver``.

    One producer thread sends; ``fail`` may also come from another thread (e.g. the pipeline
    when upstream dies).
    """

    def __init__(
        self,
        backend: Backend,
        key: DataKey,
        dtype: np.dtype,
        metadata: dict[str, Any],
        *,
        overwrite: bool,
        rows_per_chunk: int,
        level: int,
        claims: Claims | None = None,
        codec: CodecChoice = None,
        flush_every: float | None = None,
        resume: ResumeFrom | None = None,
    ) -> None:
        self.key = key
        self.dtype = dtype
        self._backend = backend
        self._metadata = metadata
        self._overwrite = overwrite
        if resume is not None:  # continued in the dead writer's layout (see ResumeFrom)
            rows_per_chunk, level = resume.rows_per_chunk, resume.level
        self._rows_per_chunk = rows_per_chunk
        self._level = level
        self._specs: list[FieldSpec] = field_specs(dtype)
        try:  # one codec per field (see codec_choice); the index arrays: zstd at ``level``
            self._codecs = field_codecs(self._specs, codec, level)
            if resume is not None:
                self._codecs = [resume.codecs[s.name] for s in self._specs]
        except (TypeError, ValueError) as e:
            raise type(e)(f"data set {key}: {e}") from None
        except KeyError as e:
            raise ValueError(f"data set {key}: the write resumed has no field {e}") from None
        self._fixed = fixed_attrs(
            level, {s.name: c for s, c in zip(self._specs, self._codecs, strict=True)}
        )
        self._created = _now()
        self._state = "open"
        self._info: DataSetInfo | None = None
        # fail() may come from another thread (the pipeline, when upstream dies) while the
        # producer thread is inside send(): one lock keeps the state and the queues consistent
        self._lock = threading.RLock()
        # chunk index: one entry per strax chunk exactly as sent (its boundaries are part of
        # the result: consumers of the loaded data must see the chunks the producer made)
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._first_rows: list[int] = []
        self._counts: list[int] = []
        self._n_rows = 0
        # rows sent but not yet handed to a write task
        self._pending: list[np.ndarray] = []
        self._n_pending = 0
        self._next_zarr_chunk = 0
        self._inflight: deque[tuple[int, Future[int]]] = deque()  # (Zarr chunk, task)
        self._stored_bytes = 0
        # CRC32C of every (field, Zarr chunk) written: recorded in the index (see DIGESTS)
        self._digests: dict[tuple[int, int], int] = {}
        self._index_crcs: dict[str, int] = {}
        self._writer = process_identity()
        # this write's identity: recorded in the attributes, checked before publishing (the
        # temporary directory is still ours) and binding the chunk digests to this write
        self._write_id = uuid.uuid4().hex
        self._within: str | None = None  # the temporary directory, once created
        self._init_live(flush_every)
        self.resumed_from = resume
        """Where this write continued a dead writer's (None: it started afresh)."""
        self._replaceable: tuple[object, object] | None = None
        self._claim: Claim | None = None
        if claims is not None:
            keep = () if resume is None else (resume.path,)
            self._claim = catalog.claim_for_writing(claims, key, keep)
        in_place = not backend.supports_rename
        self._path = key.path if in_place else f"{key.run_id}/{key.tmp_dirname()}"
        self._guard = WriteGuard(backend, key, self._path, self._write_id, claims, self._claim)
        try:
            self._start(backend, key, resume)
        except BaseException:
            self._release_claim()
            raise

    def _start(self, backend: Backend, key: DataKey, resume: ResumeFrom | None) -> None:
        if self._overwrite:
            # the one complete data set this write may replace: the one there now (publishing
            # never replaces a complete data set that appeared while this write ran)
            existing = catalog.final_info(backend, key)
            if existing is not None and existing.status == "complete":
                self._replaceable = catalog.identity(existing)
        if not backend.supports_rename and resume is None:
            backend.delete_tree(self._path)  # Store.saver checked it may be replaced
        try:
            if resume is not None:
                self._adopt(resume)
            # the root and the run are plain (empty) Zarr groups, so the store is browsable
            for parent in ("", key.run_id):
                doc = metadata_key(parent)
                if backend.read(doc) is None:
                    backend.write_atomic(doc, metadata_json(group_metadata({})))
            self._write_group_attrs("writing")
            if backend.supports_rename:
                # from now on never re-created behind a cleanup
                self._within = self._guard.within = self._path
        except StorageIOError as e:
            raise StorageIOError(
                e.errno or 0, f"cannot start writing data set {key}: {e.strerror}", e.filename
            ) from e
        except Exception as e:
            raise StorageError(
                f"cannot start writing data set {key} at {backend.where(self._path)}: "
                f"{type(e).__name__}: {e}"
            ) from e

    # ---------------------------------------------------------------- public API
    @property
    def n_rows(self) -> int:
        """Rows accepted so far."""
        return self._n_rows

    @property
    def n_chunks(self) -> int:
        """Strax chunks accepted so far."""
        return len(self._starts)

    @property
    def closed(self) -> bool:
        """True after ``close``, ``fail`` or ``discard``."""
        return self._state != "open"

    def send(self, chunk: Chunk) -> None:
        """Check and buffer one strax chunk; writes whole Zarr chunks as they fill up.

        The chunk becomes one entry of the chunk index, with its own start and end, so a
        loader hands consumers exactly the chunks the producer made. The rows land in
        fixed-size Zarr chunks whatever the strax chunk sizes: many tiny strax chunks cost
        one index entry each, not one file each.
        """
        with self._lock:
            self._send(chunk)

    def _send(self, chunk: Chunk) -> None:
        self._check_open("send")
        i = len(self._starts)
        try:
            if self._skipped(chunk):
                return
            if not isinstance(chunk, Chunk):
                raise TypeError(
                    f"data set {self.key} chunk {i}: expected a storage.Chunk, "
                    f"got {type(chunk).__name__}"
                )
            check_chunk(
                chunk,
                where=f"data set {self.key} chunk {i}",
                dtype=self.dtype,
                previous_end=self._ends[-1] if self._ends else None,
            )
            self._reap(block=False)
            self._add(chunk)
            self._record_new()
            self._maybe_flush()
        except BaseException as e:
            self.fail(e)
            raise

    def _add(self, chunk: Chunk) -> None:
        """Record a checked chunk as the next index entry and queue its rows for writing."""
        n = len(chunk.data)
        self._starts.append(chunk.start)
        self._ends.append(chunk.end)
        self._first_rows.append(self._n_rows)
        self._counts.append(n)
        self._n_rows += n
        if n:
            self._pending.append(chunk.data)
            self._n_pending += n
        while self._n_pending >= self._rows_per_chunk:
            self._emit(self._rows_per_chunk)

    def close(self) -> DataSetInfo:
        """Write the remaining rows, the index and ``complete: true``; return the info.

        Calling it again returns the same info. After ``fail`` it raises SaverClosedError.
        """
        with self._lock:
            return self._close()

    def _close(self) -> DataSetInfo:
        if self._state == "closed" and self._info is not None:
            return self._info
        self._check_open("close")
        try:
            if self._n_pending:
                self._emit(self._n_pending)
            self._reap(block=True)
            self._guard.check()
            self._write_index()
            self._write_array_metadata()
            self._write_group_attrs("complete")
            self._guard.check(self._specs, self._next_zarr_chunk)
            self._drop_records(self._path)  # the full index replaces them (readers wait)
            if self._backend.supports_rename:  # written under a temporary name
                catalog.publish(
                    self._backend,
                    self.key,
                    self._path,
                    complete=True,
                    replace=self._replaceable,
                )
            info = catalog.final_info(self._backend, self.key)
            if info is None or info.status != "complete":
                raise StorageError(
                    f"data set {self.key} in {self._backend.url} is not complete after closing"
                )
        except WriteLost as e:
            lost = self._guard.lost(e)
            self.fail(lost)
            if lost is e:
                raise
            raise lost from None
        except BaseException as e:
            self.fail(e)
            raise
        self._state = "closed"
        self._info = info
        self._release_claim()
        return info

    def fail(self, exc: BaseException) -> None:
        """Mark the data set failed, recording ``exc`` (type, message, traceback).

        Idempotent, and a no-op after ``close``. Never raises: it runs while another exception
        is propagating, and a second error must not hide the first (it is logged instead).
        """
        with self._lock:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self._state != "open":
            return
        self._state = "failed"
        try:
            self._reap(block=True, ignore_errors=True)
            self._pending.clear()
            if isinstance(exc, WriteLost):
                self._guard.drop()
                return
            try:
                self._write_group_attrs("failed", exception_text(exc))
            except Exception:
                # e.g. the disk is full: the failure cannot be recorded, so the partial data
                # set must not stay around (it would look like a write in progress)
                log.exception("could not record the failure of data set %s", self.key)
                self._backend.delete_tree(self._path)
                return
            if self._backend.supports_rename:  # written under a temporary name
                catalog.publish(self._backend, self.key, self._path, complete=False)
        except Exception:
            log.exception("could not record the failure of data set %s", self.key)
        finally:
            self._release_claim()

    def discard(self) -> None:
        """Remove what was written, quietly: the data set is absent, as if never started.

        For work stopped on purpose (an interrupt, a reader that stopped early), which is not
        a failure and must not show as one. Idempotent, a no-op after ``close`` or ``fail``;
        never raises (errors are logged).
        """
        with self._lock:
            if self._state != "open":
                return
            try:  # an interrupt here leaves it open, so discarding again finishes the job
                self._reap(block=True, ignore_errors=True)
                self._pending.clear()
                if self._guard.claim_problem() is None:
                    self._backend.delete_tree(self._path)
                else:  # claim lost: in place, the path is another writer's now
                    self._guard.drop()
            except Exception:
                log.exception("could not discard the partial data set %s", self.key)
            self._state = "discarded"
            self._release_claim()

    def _release_claim(self) -> None:
        if self._claim is not None:
            try:
                self._claim.release()
            except Exception:
                log.exception("could not release the claim on data set %s", self.key)

    def save_from(self, chunks: Iterable[Chunk]) -> DataSetInfo:
        """Iterate mode: send every chunk of ``chunks``, then close. Failures mark it failed."""
        try:
            for chunk in chunks:
                self.send(chunk)
        except BaseException as e:
            self.fail(e)
            raise
        return self.close()

    def __enter__(self) -> Saver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.fail(exc)
        elif not self.closed:
            self.close()

    def __repr__(self) -> str:
        return f"<Saver {self.key} {self._state}, {self.n_chunks} chunks, {self.n_rows} rows>"

    # ---------------------------------------------------------------- internals
    def _check_open(self, what: str) -> None:
        if self._state != "open":
            raise SaverClosedError(
                f"cannot {what}: the saver of data set {self.key} is already {self._state}"
            )

    def _attrs(self, status: str, exception: str | None = None) -> dict[str, Any]:
        complete = status == "complete"
        ours: dict[str, Any] = {
            **self._fixed,
            "run_id": self.key.run_id,
            "data_type": self.key.data_type,
            "lineage_hash": self.key.lineage_hash,
            "status": status,
            "complete": complete,
            "exception": exception,
            "dtype": dtype_to_json(self.dtype),
            "dtype_descr": str(self.dtype.descr),
            "fields": [s.name for s in self._specs],
            "n_rows": self._n_rows,
            "n_chunks": len(self._starts),
            "start": self._starts[0] if self._starts else None,
            "end": self._ends[-1] if self._ends else None,
            "nbytes": self._n_rows * self.dtype.itemsize,
            "stored_bytes": self._stored_bytes if complete else None,
            "rows_per_chunk": self._rows_per_chunk,
            "digests": {**self._fixed["digests"], "index_crc32c": self._index_crcs},
            "created": self._created,
            "finished": None if status == "writing" else _now(),
            "writer": self._writer,
            "write_id": self._write_id,
            "metadata": self._metadata,
        }
        return {ATTRS_KEY: ours}

    def _emit(self, n: int) -> None:
        """Hand the next ``n`` pending rows (one Zarr chunk, padded if short) to write tasks."""
        parts: list[np.ndarray] = []
        need = n
        while need:
            head = self._pending[0]
            if len(head) <= need:
                parts.append(self._pending.pop(0))
                need -= len(head)
            else:
                parts.append(head[:need])
                self._pending[0] = head[need:]
                need = 0
        self._n_pending -= n
        z = self._next_zarr_chunk
        self._next_zarr_chunk += 1
        submit = pool().submit
        for j, spec in enumerate(self._specs):
            self._inflight.append((z, submit(self._write_chunk, spec, j, parts, z)))
        limit = max(_INFLIGHT_ZARR_CHUNKS, n_threads()) * len(self._specs)
        while len(self._inflight) > limit:
            done_z, future = self._inflight.popleft()
            self._collected(done_z, future.result())

    def _write_chunk(self, spec: FieldSpec, j: int, parts: list[np.ndarray], z: int) -> int:
        """Pool task: gather, compress, checksum and write one field's Zarr chunk ``z``."""
        buf = scratch((self._rows_per_chunk, *spec.shape), spec.stored)
        offset = 0
        for part in parts:
            buf[offset : offset + len(part)] = part[spec.name]
            offset += len(part)
        if offset < len(buf):
            buf[offset:] = 0  # the last chunk is padded to full size, as Zarr expects
        frame, crc = encode(buf, self._codecs[j])
        self._digests[(j, z)] = int.from_bytes(crc, "little")  # already computed: no extra pass
        key = chunk_key(f"{self._path}/{spec.name}", 1 + len(spec.shape), z)
        try:
            if self._atomic(z):  # resumed: readers of the final prefix may read it now
                self._backend.write_atomic(key, frame + crc, within=self._within)
            else:
                self._backend.write(key, (frame, crc), within=self._within)
        except WriteLost as e:
            raise self._guard.lost(e) from None
        return len(frame) + len(crc)

    def _reap(self, *, block: bool, ignore_errors: bool = False) -> None:
        """Collect finished write tasks (all of them if ``block``); re-raise the first error."""
        first_error: BaseException | None = None
        while self._inflight and (block or self._inflight[0][1].done()):
            z, future = self._inflight.popleft()
            try:
                self._collected(z, future.result())
            except BaseException as e:
                if first_error is None:
                    first_error = e
                if not block:
                    break
        if first_error is not None and not ignore_errors:
            raise first_error

    def _write_group_attrs(self, status: str, exception: str | None = None) -> None:
        """Replace the group's ``zarr.json`` atomically: readers see old or new, never half."""
        doc = metadata_json(group_metadata(self._attrs(status, exception)))
        self._backend.write_atomic(metadata_key(self._path), doc, within=self._within)
