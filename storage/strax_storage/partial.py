"""Reading the final prefix of a data set that is not complete (``allow_incomplete``).

A data set being written, or left by a writer that was killed, has a final prefix
(``final_prefix``): the strax chunks up to its watermark, whose rows are on disk and never
change. ``PrefixReader`` reads exactly those, verified as a complete data set is (each
Zarr chunk's CRC32C against the one recorded, every strax chunk inside its interval and
sorted), and never a row after the watermark. If the writer publishes while the prefix is
read, the reader follows the data set to its final path (the same write: same files).

``WriteProgress`` is what ``strax-decl ls``/``info`` show of such a data set: its watermark
and whether its writer is alive.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from strax_storage import catalog
from strax_storage.backend import Backend
from strax_storage.catalog import RunFolder
from strax_storage.chunk import Chunk
from strax_storage.codec import Codec
from strax_storage.dtypes import FieldSpec, check_storable, field_specs
from strax_storage.errors import DataCorrupted, DataNotFound, StorageError
from strax_storage.final_prefix import BadRecord, Prefix, read_prefix, tail_key
from strax_storage.info import DataSetInfo
from strax_storage.keys import DataKey
from strax_storage.layout import (
    ATTRS_KEY,
    FORMAT_VERSION,
    METADATA_LIMIT,
    metadata_key,
    read_field_codecs,
)
from strax_storage.live_saver import ResumeFrom, resumable_prefix
from strax_storage.loader import DataSetReader

__all__ = [
    "PrefixReader",
    "WriteProgress",
    "find_prefix",
    "prefix_chunks",
    "progress",
    "resume_point",
]


@dataclass(frozen=True)
class WriteProgress:
    """How far a data set that is not complete has got."""

    key: DataKey
    status: str  # "writing" (its writer is alive), "partial" (stopped) or "failed" (dead)
    writer_alive: bool
    n_chunks: int  # final strax chunks
    n_rows: int  # rows in them
    start: int | None
    watermark: int | None  # every row before it is final (None: nothing final yet)
    location: str
    info: DataSetInfo
    prefix: Prefix

    @property
    def resumable(self) -> bool:
        """A dead or stopped writer's work with a final prefix: a writer holding the claim
        continues it."""
        ours = self.info.attrs.get(ATTRS_KEY) if self.info.attrs else None
        # never said failed: it died writing, or stopped on purpose (``Saver.suspend``)
        died = isinstance(ours, dict) and ours.get("status") in ("writing", "partial")
        return died and not self.writer_alive and self.n_chunks > 0


def _layout(info: DataSetInfo) -> tuple[int, list[str]]:
    ours: dict[str, Any] = info.attrs.get(ATTRS_KEY, {}) if info.attrs else {}
    rpc, fields = ours.get("rows_per_chunk"), ours.get("fields")
    if not isinstance(rpc, int) or rpc < 1 or not isinstance(fields, list):
        raise BadRecord(f"data set {info.key}: unreadable attributes at {info.location}")
    return rpc, fields


def _path_of(backend: Backend, info: DataSetInfo) -> str:
    root = backend.where("")
    loc = info.location
    return loc[len(root) :].lstrip("/") if loc.startswith(root) else info.key.path


def progress(backend: Backend, info: DataSetInfo) -> WriteProgress | None:
    """The progress of the not-complete data set ``info`` (None: complete, or unreadable)."""
    ours = info.attrs.get(ATTRS_KEY) if info.attrs else None
    if info.status == "complete" or not isinstance(ours, dict) or ours.get("complete"):
        return None  # complete, or being published this instant (its records are gone)
    try:
        rpc, fields = _layout(info)
        path = _path_of(backend, info)
        prefix = read_prefix(backend, path, rpc, len(fields))
        if prefix.n_records and _being_published(backend, path):
            return None
    except (BadRecord, StorageError, OSError):
        return None
    return WriteProgress(
        info.key,
        info.status,
        info.status == "writing",
        prefix.n_chunks,
        prefix.n_rows,
        prefix.start,
        prefix.watermark,
        info.location,
        info,
        prefix,
    )


def _being_published(backend: Backend, path: str) -> bool:
    """Whether the data set at ``path`` was marked complete (or moved) since ``info`` was read.

    A saver marks a data set complete *before* it drops the records (``Saver.close``), and
    drops them one file at a time: records read after that are a shrinking view, and a
    monitor must never see a prefix shorter than one it saw before. Reading the attributes
    again after the records tells: then the caller waits for the published data set.
    """
    try:
        raw = backend.read(metadata_key(path), limit=METADATA_LIMIT)
    except StorageError:
        return True
    if raw is None:
        return True  # moved (published, or removed) meanwhile
    try:
        ours = json.loads(raw)["attributes"][ATTRS_KEY]
    except (ValueError, KeyError, TypeError, RecursionError):
        return True
    return not isinstance(ours, dict) or ours.get("complete") is not False


def _candidates(
    backend: Backend, key: DataKey, folder: RunFolder | None = None
) -> list[DataSetInfo]:
    out: list[DataSetInfo] = []
    final = catalog.final_info(backend, key)
    if final is not None and final.status in ("writing", "partial"):  # in place
        out.append(final)
    out += catalog.tmp_infos(backend, key, folder)
    return out


def find_prefix(backend: Backend, key: DataKey) -> WriteProgress | None:
    """The not-complete data set of ``key`` with the most final rows (a live writer's first)."""
    found = [p for p in map(lambda i: progress(backend, i), _candidates(backend, key)) if p]
    found.sort(key=lambda p: (not p.writer_alive, -p.n_rows))
    return found[0] if found else None


def resume_point(
    backend: Backend, key: DataKey, folder: RunFolder | None = None
) -> ResumeFrom | None:
    """Where a writer of ``key`` holding its claim may continue a dead writer's work
    (``folder``: the run folder's listing the caller has)."""
    candidates = _candidates(backend, key, folder)
    found = [p for p in map(lambda i: progress(backend, i), candidates) if p]
    found = [p for p in found if p.resumable]
    if not found:
        return None
    best = max(found, key=lambda p: p.n_rows)
    prefix = resumable_prefix(best.prefix)
    if prefix is None:
        return None
    ours: dict[str, Any] = best.info.attrs[ATTRS_KEY]
    try:
        rpc, fields = _layout(best.info)
        compressor = ours.get("compressor")
        if ours.get("format_version") != FORMAT_VERSION or not isinstance(compressor, dict):
            return None  # an older layout is not continued: the claimant starts afresh
        codecs = read_field_codecs(compressor, FORMAT_VERSION, fields)
        level = compressor["zstd_level"]
    except (BadRecord, ValueError, KeyError, TypeError):
        return None
    path = _path_of(backend, best.info)
    return ResumeFrom(path, prefix, rpc, dict(zip(fields, codecs, strict=True)), level)


class PrefixReader(DataSetReader):
    """The final prefix of a data set being written (see the module doc)."""

    def __init__(self, backend: Backend, key: DataKey, found: WriteProgress) -> None:
        self.key = key
        self._backend = backend
        self.path = _path_of(backend, found.info)
        self.info = found.info
        ours: dict[str, Any] = found.info.attrs[ATTRS_KEY]
        version = ours.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise StorageError(f"data set {key} has format version {version!r}")
        if found.info.dtype is None:
            self._corrupt(f"its dtype attribute is unreadable: {ours.get('dtype')!r}")
        assert found.info.dtype is not None
        self.dtype = check_storable(found.info.dtype, where=f"data set {key}")
        self.specs: list[FieldSpec] = field_specs(self.dtype)
        self.rows_per_chunk = self._attr_int(ours, "rows_per_chunk", minimum=1)
        try:
            self._codecs: list[Codec] = read_field_codecs(
                ours.get("compressor"), version, [s.name for s in self.specs]
            )
        except ValueError as e:
            self._corrupt(str(e))
        self._padded = self.dtype.itemsize > sum(s.row_nbytes for s in self.specs)
        self._field_pos = {s.name: j for j, s in enumerate(self.specs)}
        prefix = found.prefix
        self.prefix = prefix
        self.n_rows, self.n_chunks = prefix.n_rows, prefix.n_chunks
        self.starts, self.ends, self.counts = prefix.starts, prefix.ends, prefix.counts
        self.first_rows = prefix.first_rows
        self.watermark = prefix.watermark
        n_zarr = -(-self.n_rows // self.rows_per_chunk)
        crcs = prefix.crcs[:n_zarr]
        self._digests = np.asarray(crcs, dtype=np.int64).reshape(len(crcs), len(self.specs))
        self._n_whole = len(crcs)
        self._tail: np.ndarray | None = None
        self._write_id = catalog.write_id(found.info)

    def _decoded(self, spec: FieldSpec, z: int) -> np.ndarray:
        if z >= self._n_whole:
            return self._tail_rows(spec, z)
        try:
            return super()._decoded(spec, z)
        except DataCorrupted:
            if not self._follow():
                raise
            return super()._decoded(spec, z)

    def _follow(self) -> bool:
        """The writer published meanwhile: read on at the final path (False: it did not)."""
        info = catalog.final_info(self._backend, self.key)
        if info is not None and info.complete and catalog.write_id(info) == self._write_id:
            self.path = self.key.path
            return True
        in_place = self.path == self.key.path
        gone = info is None if in_place else not self._backend.exists_tree(self.path)
        replaced = in_place and info is not None and catalog.write_id(info) != self._write_id
        if gone or replaced:
            raise DataNotFound(
                f"the data set {self.key} being read was moved (resumed or removed) while "
                "its final prefix was read; read it again"
            )
        return False

    def _tail_rows(self, spec: FieldSpec, z: int) -> np.ndarray:
        """Field ``spec`` of the rows after the last whole Zarr chunk (padded to a chunk).

        The writer keeps the last two tails only: if this prefix's tail was replaced, the
        newer records say where its rows are now (a newer tail holding them first, or Zarr
        chunk ``z``, whole by then); after publishing, they are in Zarr chunk ``z``.
        """
        if self._tail is None:
            prefix = self.prefix
            for _ in range(100):
                tail = prefix.tail
                if prefix.n_zarr > z:  # whole now: read it with its recorded CRC32C
                    self._n_whole = z + 1
                    self._digests = np.asarray(prefix.crcs[: z + 1], np.int64)
                    return super()._decoded(spec, z)
                # a tail the writer replaced meanwhile is gone: then the newer records say
                # where its rows are (one read: a look first could be overtaken)
                if tail is not None:
                    key = tail_key(self.path, str(tail["key"]))
                    n = int(tail["rows"])
                    raw = self._fetch_if_there(key, n * self.dtype.itemsize, int(tail["crc"]))
                    if raw is not None:
                        self._tail = np.frombuffer(raw, self.dtype)
                        break
                if self._follow():  # published: same write, same bytes, CRC not recorded
                    self._n_whole, self._digests = z + 1, None
                    return super()._decoded(spec, z)
                # asked after the records were read: records dropped by a writer that
                # published meanwhile are a shrinking view, not a shorter prefix
                if _being_published(self._backend, self.path):
                    time.sleep(0.01)  # marked complete, records dropped, renamed in a moment
                    continue
                if tail is None and prefix.n_records >= self.prefix.n_records:
                    self._corrupt("rows after the last whole Zarr chunk have no tail record")
                again = read_prefix(self._backend, self.path, self.rows_per_chunk, len(self.specs))
                if tail is None or again.tail == tail:
                    # fewer records than before, or the newest record's tail gone (a writer
                    # never deletes that one): the data set is being removed or published
                    time.sleep(0.01)
                prefix = again
            else:
                if self._follow():  # published after all (or DataNotFound: gone)
                    self._n_whole, self._digests = z + 1, None
                    return super()._decoded(spec, z)
                self._corrupt("the tail of the final prefix keeps being replaced")
        assert self._tail is not None
        out = np.zeros((self.rows_per_chunk, *spec.shape), spec.stored)
        n = min(len(self._tail), self.n_rows - z * self.rows_per_chunk)
        out[:n] = self._tail[spec.name][:n]
        return out


def prefix_chunks(backend: Backend, key: DataKey, resume: ResumeFrom) -> Iterator[Chunk]:
    """The chunks of ``resume``'s prefix, read from the data set its saver now continues."""
    found = find_prefix(backend, key)
    want = resume.prefix
    if found is None or found.prefix.n_chunks < want.n_chunks:
        raise DataNotFound(f"the final prefix of {key} that was resumed is gone")
    got = found.prefix.truncated(want.n_chunks)
    if not (np.array_equal(got.starts, want.starts) and np.array_equal(got.ends, want.ends)):
        raise DataNotFound(f"the final prefix of {key} changed while it was resumed")
    yield from PrefixReader(backend, key, replace(found, prefix=got)).chunks()
