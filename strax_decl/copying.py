"""Copying a stored data set to another store, e.g. from a scratch disk to a shared one.

The copy is an ordinary write: the source is loaded chunk by chunk (every chunk verified
against its checksum and the chunk laws), and written by the destination's ``Store.saver``
under the same key with the same metadata (lineage, plugin, version, field descriptions), so
it is claimed while written, published atomically when complete, and checked like any data
set a plugin saves. ``codec`` re-compresses (see ``strax_storage.codec_choice``; None: the
destination's default rule); ``rechunk_mb`` combines or splits chunks toward that size
(None: the source's chunks, as the producer made them). The run's document goes along if
the destination has none.
"""

from __future__ import annotations

from collections.abc import Iterator

from strax_storage import Chunk, DataExistsError, DataKey, DataNotFound, DataSetInfo, Store
from strax_storage.codec_choice import CodecChoice
from strax_storage.rechunk import Rechunker

__all__ = ["copy_data_set", "find_stored"]


def find_stored(stores: list[Store], key: DataKey, exclude: Store | None = None) -> Store:
    """The first store (not ``exclude``) holding ``key`` complete; DataNotFound if none."""
    for store in stores:
        if exclude is not None and store.url == exclude.url:
            continue
        if store.find(key) is not None:
            return store
    where = ", ".join(s.url for s in stores if exclude is None or s.url != exclude.url)
    raise DataNotFound(f"no complete data set {key} in {where or 'no store'}: nothing to copy")


def copy_data_set(
    source: Store,
    dest: Store,
    key: DataKey,
    *,
    codec: CodecChoice = None,
    rechunk_mb: float | None = None,
    overwrite: bool = False,
) -> DataSetInfo:
    """Copy the complete data set ``key`` from ``source`` to ``dest``; its info there."""
    if source.url == dest.url:
        raise ValueError(f"cannot copy {key} onto itself ({source.url})")
    info = source.find(key)
    if info is None:
        raise DataNotFound(f"no complete data set {key} in {source.url}: nothing to copy")
    if info.dtype is None:  # pragma: no cover - a complete data set always records it
        raise DataNotFound(f"data set {key} in {source.url} records no dtype")
    existing = dest.find(key)
    if existing is not None and not overwrite:
        raise DataExistsError(
            f"data set {key} is already complete in {dest.url}; pass overwrite=True "
            "(--overwrite) to replace it"
        )
    chunks: Iterator[Chunk] = source.load(key, info=info)
    if rechunk_mb is not None:
        chunks = _rechunked(chunks, Rechunker(rechunk_mb, where=f"copying {key}"))
    saver = dest.saver(key, info.dtype, dict(info.metadata), overwrite=overwrite, codec=codec)
    try:
        copied = saver.save_from(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    doc = source.run_doc(key.run_id)
    if doc is not None and dest.run_doc(key.run_id) is None:
        dest.define_run(key.run_id, doc)
    return copied


def _rechunked(chunks: Iterator[Chunk], rechunker: Rechunker) -> Iterator[Chunk]:
    for chunk in chunks:
        yield from rechunker.receive(chunk)
    yield from rechunker.flush()
