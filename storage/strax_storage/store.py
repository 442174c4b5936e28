"""Store: the public face of the chunk store (find, status, list, info, remove, save, load).

``open_store`` turns what a user writes (a path, ``memory://``, an fsspec URL) into a Store
over the right backend. The Store itself holds no state besides its backend and its tuning
(rows per Zarr chunk, zstd level); everything it knows is read from the data sets' attributes,
so several processes can share one store directory.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from strax_storage import catalog, run_docs, run_scan, status_records, waiting
from strax_storage.backend import Backend
from strax_storage.catalog import RunFolder
from strax_storage.claims import DEFAULT_STALE_AFTER, Claim, ClaimInfo, Claims
from strax_storage.codec import DEFAULT_LEVEL, check_zstd_level
from strax_storage.errors import (
    ClaimHeld,
    DataCorrupted,
    DataExistsError,
    DataNotFound,
    StorageError,
    UnsafePath,
)
from strax_storage.info import DataSetInfo, Status
from strax_storage.keys import DataKey
from strax_storage.layout import ATTRS_KEY, group_metadata, metadata_json, metadata_key

if TYPE_CHECKING:  # pragma: no cover - imported where used, so listing needs no zarr/numba
    import numpy as np
    import zarr
    from zarr.abc.store import Store as ZarrStore

    from strax_storage.chunk import Chunk
    from strax_storage.codec_choice import CodecChoice
    from strax_storage.live_saver import ResumeFrom
    from strax_storage.loader import DataSetReader
    from strax_storage.partial import WriteProgress
    from strax_storage.rechunk import Rechunker
    from strax_storage.run_removal import RunRemoval
    from strax_storage.saver import Saver

__all__ = ["DEFAULT_CHUNK_BYTES", "Store", "open_store"]

DEFAULT_CHUNK_BYTES = 16 * 2**20
"""Target uncompressed bytes of one Zarr row-chunk (all fields together); see the bench."""


class Store:
    """A chunk store rooted somewhere. Build it with ``open_store``."""

    def __init__(
        self,
        backend: Backend,
        *,
        rows_per_chunk: int | None = None,
        zstd_level: int = DEFAULT_LEVEL,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        claim_stale_after: float = DEFAULT_STALE_AFTER,
    ) -> None:
        if rows_per_chunk is not None and (
            isinstance(rows_per_chunk, bool)
            or not isinstance(rows_per_chunk, int)
            or rows_per_chunk < 1
        ):
            raise ValueError(f"rows_per_chunk must be a positive integer, got {rows_per_chunk!r}")
        self.backend = backend
        self.rows_per_chunk = rows_per_chunk
        self.zstd_level = check_zstd_level(zstd_level)
        self.chunk_bytes = chunk_bytes
        self.claims = Claims(backend, claim_stale_after)

    @property
    def url(self) -> str:
        """Where the store lives, for messages."""
        return self.backend.url

    @property
    def readonly(self) -> bool:
        return self.backend.readonly

    @property
    def zarr_store(self) -> ZarrStore:
        """The underlying Zarr store: ``zarr.open_group(store.zarr_store, path=key.path)``."""
        return self.backend.zarr_store

    def __repr__(self) -> str:
        return f"Store({self.url!r}{', readonly' if self.readonly else ''})"

    # ---------------------------------------------------------------- queries
    def find(self, key: DataKey) -> DataSetInfo | None:
        """The data set under ``key`` if it is complete, else None.

        DataCorrupted (naming the file) if a data set was published under ``key`` and its
        group metadata is damaged: that is not a failed write to silently redo.
        """
        info = catalog.final_info(self.backend, _check_key(key))
        if info is not None and info.corrupted is not None:
            raise DataCorrupted(info.corrupted, key, metadata_key(info.location))
        return info if info is not None and info.status == "complete" else None

    def status(self, key: DataKey) -> Status:
        """``absent``, ``writing`` (a live writer at work), ``failed`` (incl. a dead writer's
        leftovers), ``complete``."""
        return catalog.status(self.backend, _check_key(key))

    def list(
        self,
        run_id: str | None = None,
        data_type: str | None = None,
        *,
        folder: RunFolder | None = None,
    ) -> list[DataSetInfo]:
        """Every data set, any status (a live writer's work shows as ``writing``, a dead one's
        leftovers as ``failed``). ``folder``: the run's ``run_folder``, not listed again."""
        return catalog.list_infos(self.backend, run_id, data_type, folder)

    def run_folder(self, run_id: str) -> RunFolder:
        """One listing of ``run_id``'s folder, to hand to ``list`` and ``claim_all`` so that
        one request lists it once however many data types it asks about."""
        return catalog.list_folder(self.backend, run_id)

    def info(self, key: DataKey) -> DataSetInfo:
        """The data set under ``key`` in whatever status; DataNotFound if there is none."""
        key = _check_key(key)
        info = catalog.final_info(self.backend, key)
        if info is not None:
            return info
        for path in catalog.tmp_dirs(self.backend, key):
            return catalog.info_at(self.backend, key, path, writing=True)
        raise DataNotFound(f"no data set {key} in {self.url}")

    def zarr_group(self, key: DataKey) -> zarr.Group:
        """The data set's Zarr group, opened read-only with plain Zarr (for inspection)."""
        import zarr

        key = _check_key(key)
        if catalog.final_info(self.backend, key) is None:
            raise DataNotFound(f"no data set {key} in {self.url}")
        link = self.backend.symlink_under(key.path)  # plain Zarr would follow it: refuse
        if link is not None:
            raise UnsafePath(f"data set {key} contains the symbolic link {link}; not opened")
        try:
            return zarr.open_group(self.backend.zarr_store, path=key.path, mode="r")
        except Exception as e:  # whatever Zarr makes of damaged metadata
            where = self.backend.where(key.path)
            raise DataCorrupted(
                f"data set {key} cannot be opened with Zarr: {type(e).__name__}: {e} ({where})",
                key,
                where,
            ) from e

    def define_run(self, run_id: str, doc: dict[str, Any]) -> bool:
        """Store ``run_id``'s run document once (False: the same one is there already)."""
        return run_docs.write_run_doc(self.backend, run_id, doc)

    def run_doc(self, run_id: str) -> dict[str, Any] | None:
        """``run_id``'s run document with its current tags, or None if it has none."""
        e = next(iter(run_scan.scan(self.backend, [run_id])), None)
        return None if e is None or e.doc is None else {**e.doc, "tags": list(e.tags)}

    def tag_run(self, run_id: str, tag: str, *, remove: bool = False) -> bool:
        """Add (or remove) one tag of ``run_id``, racing nobody; True if anything changed."""
        self._check_writable(f"tag run {run_id!r}")
        change = run_docs.remove_tag if remove else run_docs.add_tag
        doc_tags = (run_docs.read_run_doc(self.backend, run_id) or {}).get("tags") or []
        return change(self.backend, run_id, tag, doc_tags)

    def scan_runs(self, run_ids: Sequence[str] | None = None) -> Sequence[run_docs.RunEntry]:
        """Every run folder's document, tags and data set names: one listing per run."""
        return run_scan.scan(self.backend, run_ids)

    # ---------------------------------------------------------------- changes
    def remove(self, key: DataKey) -> None:
        """Delete the data set under ``key`` (any status) and the leftovers of dead writers.

        Done while holding the key's claim, so nothing is deleted under a live writer:
        ClaimHeld if one (in any process) is writing ``key``; DataNotFound if there is
        nothing to remove. Never follows a symbolic link: a link in place of a data set is
        removed, not its target.
        """
        key = _check_key(key)
        self._check_writable(f"remove {key}")
        with self._removal_claim(key) as cleaned:
            try:
                catalog.remove(self.backend, key)
            except DataNotFound:
                if not cleaned:
                    raise

    def remove_run(self, run_id: str, *, skip_writing: bool = False) -> RunRemoval:
        """Delete the whole run: every data set (as ``remove``), its run document and tag
        records, and its folder. ClaimHeld, naming each data set a live writer holds, before
        anything is removed; with ``skip_writing`` those (and the run's document) are kept
        and listed in ``RunRemoval.skipped``. DataNotFound if there is no such run."""
        from strax_storage.run_removal import remove_run

        self._check_writable(f"remove run {run_id!r}")
        return remove_run(self, run_id, skip_writing=skip_writing)

    def remove_failed(self, key: DataKey) -> bool:
        """Delete what failed under ``key``: a failed data set and dead writers' leftovers.

        A complete data set is kept, and so is everything while a live writer holds the key's
        claim (then returns False).
        """
        key = _check_key(key)
        self._check_writable(f"remove {key}")
        try:
            with self._removal_claim(key):
                info = catalog.final_info(self.backend, key)
                if info is not None and info.status == "failed":
                    catalog.remove(self.backend, key)
        except ClaimHeld:
            return False
        return True

    @contextmanager
    def _removal_claim(self, key: DataKey) -> Iterator[Sequence[str]]:
        """Hold ``key``'s claim while removing; yields the leftovers of dead writers deleted
        on the way. ClaimHeld if a live writer (of any process, this one too) holds it."""
        claimed = catalog.claim_and_clean(self.claims, [key])  # breaks a dead writer's claim
        if claimed.refused is not None:
            holder = self.claims.holder(key)
            who = holder.describe() if holder is not None else "another writer"
            raise ClaimHeld(
                f"data set {key} in {self.url} is being written by {who}; not removed",
                key,
                holder,
            )
        with claimed.claims[0]:
            yield claimed.cleaned

    def mark_failed(self, key: DataKey, reason: str, *, created: str | None = None) -> bool:
        """Record that the data set under ``key`` must not be trusted (e.g. it is corrupted).

        Its attributes become ``status: failed`` with ``reason`` as the exception, so it is
        never loaded again and the next writer replaces it. With ``created``, only the data set
        written at that time is marked (returns False if it was replaced meanwhile).
        """
        key = _check_key(key)
        self._check_writable(f"mark {key} failed")
        info = catalog.final_info(self.backend, key)
        if info is None:
            raise DataNotFound(f"no data set {key} in {self.url}")
        if created is not None and info.created != created:
            return False
        attrs = dict(info.attrs)
        ours = attrs.get(ATTRS_KEY)
        if not isinstance(ours, dict):
            where = self.backend.where(metadata_key(key.path))
            raise DataCorrupted(f"data set {key} has unreadable attributes ({where})", key, where)
        attrs[ATTRS_KEY] = {**ours, "status": "failed", "complete": False, "exception": reason}
        status_records.clear(self.backend, key)  # no record vouches for it from here on,
        self.backend.write_atomic(metadata_key(key.path), metadata_json(group_metadata(attrs)))
        status_records.clear(self.backend, key)  # nor one a racing publisher just made
        return True

    # ---------------------------------------------------------------- claims
    def claim(self, key: DataKey, *, stale_after: float | None = None) -> Claim | None:
        """Claim ``key`` for writing: a Claim, or None if another live writer holds it.

        Atomic on local paths (``O_CREAT | O_EXCL``) and in memory; best effort on fsspec
        URLs (see ``strax_storage.claims``). A stale claim (its process died, or no heartbeat for
        its holder's ``stale_after``) is broken. Ours beats every fifth of ``stale_after``
        (default the store's ``claim_stale_after``). Taking a claim deletes the leftovers of
        dead writers of ``key``. Release the claim with ``claim.release()`` or
        ``with claim: ...``; savers of a key this process has claimed do not claim it again.
        """
        claims, refused = self.claim_all([key], stale_after=stale_after)
        return None if refused is not None else claims[0]

    def progress(self, key: DataKey) -> WriteProgress | None:
        """How far the data set under ``key`` has got if it is not complete: its final
        prefix (watermark) and whether its writer is alive; None if complete or absent."""
        from strax_storage import partial

        return partial.find_prefix(self.backend, _check_key(key))

    def resume_point(self, key: DataKey, folder: RunFolder | None = None) -> ResumeFrom | None:
        """Where a writer holding ``key``'s claim may continue a dead writer's work (pass it
        to ``saver(resume=...)``); None if there is nothing to continue."""
        from strax_storage import partial

        return partial.resume_point(self.backend, _check_key(key), folder)

    def claim_all(
        self,
        keys: Sequence[DataKey],
        *,
        stale_after: float | None = None,
        folder: RunFolder | None = None,
        keep: Sequence[str] = (),
    ) -> tuple[Sequence[Claim], DataKey | None]:
        """Claim ``keys`` in the order given (as ``claim``); the leftovers of their dead
        writers are deleted with one listing of each run folder, however many keys.

        Returns the claims taken and the first key another live writer holds (None: all were
        claimed). Taking several in one fixed order (e.g. sorted) keeps two processes that
        want overlapping sets from deadlocking; on a refusal the caller releases what it got.
        ``folder``: a ``run_folder`` of the keys' run taken earlier in the same request, used
        instead of listing it again to find leftovers. ``keep``: paths of dead writers' work
        the caller resumes (``resume_point``), not deleted.
        """
        keys = [_check_key(k) for k in keys]
        self._check_writable(f"claim {', '.join(map(str, keys))}")
        claimed = catalog.claim_and_clean(self.claims, keys, stale_after, folder, keep)
        return claimed.claims, claimed.refused

    def claim_holder(self, key: DataKey) -> ClaimInfo | None:
        """Who holds the claim on ``key`` (``.stale`` says if it may be broken), or None."""
        return self.claims.holder(_check_key(key))

    def wait_complete(
        self, key: DataKey, timeout: float | None = None, poll: float = 0.2
    ) -> DataSetInfo:
        """Wait until the data set under ``key`` is complete and return its info.

        Raises WriterGone as soon as it is not complete and nobody is writing it any more (its
        claimant died or failed, or there never was one): the caller may then claim it and
        write it itself. ClaimTimeout (a TimeoutError) after ``timeout`` seconds.
        """
        return waiting.wait_complete(self, _check_key(key), timeout, poll)

    def saver(
        self,
        key: DataKey,
        dtype: Any,
        metadata: dict[str, Any],
        *,
        overwrite: bool = False,
        check_claim: bool = True,
        codec: CodecChoice = None,
        flush_every: float | None = None,
        resume: ResumeFrom | None = None,
    ) -> Saver:
        """A Saver writing rows of ``dtype`` under ``key``, recording ``metadata`` (JSON dict).

        A complete data set already under ``key`` raises DataExistsError unless ``overwrite``;
        a failed or incomplete one is replaced. If ``metadata`` has ``"fields": {name:
        {"description": ..., "unit": ...}}``, those become attributes of the field arrays.

        The saver claims ``key`` for as long as it writes (see ``claim``), unless this process
        holds the claim already; ClaimHeld if another live process holds it. ``check_claim=
        False`` skips this, for a caller that holds the claim in another process.

        Every chunk sent is stored as one chunk (see ``Saver.send``): a load gives back the
        same chunks, whatever their sizes.
        ``codec``: per field, see ``codec_choice`` (None: the measured default, ``auto``).
        ``flush_every``: seconds (0: every chunk) after which the chunks sent are made final
        for readers of the growing data set (else: as each Zarr chunk fills). ``resume``: a
        ``resume_point``; the saver continues that dead writer's work and is then sent the
        chunks after its watermark (or all chunks: those of the prefix are checked, skipped).
        """
        from strax_storage.dtypes import check_storable, rows_per_chunk_for
        from strax_storage.saver import Saver

        key = _check_key(key)
        self._check_writable(f"save {key}")
        dt = check_storable(dtype, where=f"data set {key}")
        if not isinstance(metadata, dict):
            raise TypeError(
                f"data set {key}: metadata must be a dict, got {type(metadata).__name__}"
            )
        try:
            metadata = json.loads(json.dumps(metadata, allow_nan=False))
        except (TypeError, ValueError) as e:
            raise TypeError(f"data set {key}: metadata is not plain JSON: {e}") from None
        existing = catalog.final_info(self.backend, key)
        if existing is not None and existing.status == "complete" and not overwrite:
            raise DataExistsError(
                f"data set {key} already exists and is complete in {self.url}; "
                "pass overwrite=True to replace it"
            )
        rows = self.rows_per_chunk or rows_per_chunk_for(dt, self.chunk_bytes)
        return Saver(
            self.backend,
            key,
            dt,
            metadata,
            overwrite=overwrite,
            rows_per_chunk=rows,
            level=self.zstd_level,
            claims=self.claims if check_claim else None,
            codec=codec,
            flush_every=flush_every,
            resume=resume,
        )

    # ---------------------------------------------------------------- loading
    def load(
        self,
        key: DataKey,
        time_range: tuple[int, int] | None = None,
        *,
        max_chunk_mb: float | None = None,
        info: DataSetInfo | None = None,
        allow_incomplete: bool = False,
    ) -> Iterator[Chunk]:
        """Strax chunks of a complete data set in stored order (trimmed to ``time_range``).

        Raises DataNotFound at once if the data set is not complete, DataCorrupted (at once or
        while iterating) if it disagrees with itself. ``max_chunk_mb``: stored chunks of twice
        that or more are split (at gaps of at least ``SPLIT_GAP_NS``), to bound memory.
        ``info``: the data set's info from ``find``/``list``, so its attributes are not read
        again (a caller that planned from that snapshot loads exactly what it planned with).
        ``allow_incomplete``: a data set that is not complete gives its final prefix (the
        chunks up to its watermark, ``progress``), never a row after it.
        """
        from strax_storage.loader import check_time_range
        from strax_storage.rechunk import SPLIT_GAP_NS, Rechunker

        tr = check_time_range(time_range)
        key = _check_key(key)
        splitter = (
            None
            if max_chunk_mb is None
            else Rechunker(
                max_chunk_mb, combine=False, min_gap=SPLIT_GAP_NS, where=f"loading {key}"
            )
        )
        chunks = self._reader(key, info, allow_incomplete).chunks(tr)
        return chunks if splitter is None else _split_all(chunks, splitter)

    def load_array(
        self,
        key: DataKey,
        time_range: tuple[int, int] | None = None,
        *,
        info: DataSetInfo | None = None,
        allow_incomplete: bool = False,
    ) -> np.ndarray:
        """All rows of a complete data set (or those fully inside ``time_range``); ``info``
        and ``allow_incomplete`` as for ``load``."""
        from strax_storage.loader import check_time_range

        tr = check_time_range(time_range)
        return self._reader(_check_key(key), info, allow_incomplete).array(tr)

    def _reader(
        self, key: DataKey, info: DataSetInfo | None, allow_incomplete: bool
    ) -> DataSetReader:
        from strax_storage import partial
        from strax_storage.loader import DataSetReader

        if not allow_incomplete or info is not None or self.find(key) is not None:
            return DataSetReader(self.backend, key, info)
        for _ in range(50):  # a writer publishing this instant: look again
            found = partial.find_prefix(self.backend, key)
            if found is not None:
                return partial.PrefixReader(self.backend, key, found)
            if self.find(key) is not None or not catalog.tmp_dirs(self.backend, key):
                break
            time.sleep(0.01)
        return DataSetReader(self.backend, key, None)  # raises DataNotFound (or reads it)

    def _check_writable(self, what: str) -> None:
        if self.readonly:
            raise StorageError(f"cannot {what}: store {self.url} is read-only")


def _split_all(chunks: Iterator[Chunk], splitter: Rechunker) -> Iterator[Chunk]:
    for chunk in chunks:
        yield from splitter.receive(chunk)
    yield from splitter.flush()


def _check_key(key: object) -> DataKey:
    if not isinstance(key, DataKey):
        raise TypeError(f"expected a storage.DataKey, got {type(key).__name__} {key!r}")
    return key


def open_store(
    location: str | os.PathLike[str] | Store,
    *,
    readonly: bool = False,
    rows_per_chunk: int | None = None,
    zstd_level: int = DEFAULT_LEVEL,
    storage_options: dict[str, Any] | None = None,
    claim_stale_after: float = DEFAULT_STALE_AFTER,
) -> Store:
    """Open a store at a local path, ``memory://[name]`` or an fsspec URL; a Store passes through.

    - a path (str without ``://`` or PathLike; ``~`` is expanded): local directory, written
      via temporary directories renamed into place (crash-safe);
    - ``memory://``: a fresh in-memory store; ``memory://<name>``: the process-wide in-memory
      store of that name (so two ``open_store`` calls can share one);
    - any other URL (``file://``, ``s3://``, ...): Zarr's fsspec store, written in place.

    ``claim_stale_after``: seconds without a heartbeat after which the claims this store takes
    may be broken by anyone (the limit is recorded in each claim; see ``Store.claim``).
    """
    if isinstance(location, Store):
        return location
    from strax_storage.locations import backend_for

    backend = backend_for(location, readonly=readonly, storage_options=storage_options)
    return Store(
        backend,
        rows_per_chunk=rows_per_chunk,
        zstd_level=zstd_level,
        claim_stale_after=claim_stale_after,
    )
