"""Reading what is final of a data set that may still be written (``allow_incomplete=True``).

A complete data set is loaded as always. Otherwise the final prefix of one being written
(or left by a killed writer) is read: the chunks up to its watermark, never a row after it
(``strax_storage.partial``). Nothing is computed and nothing is claimed: a monitor reading a
growing data set never gets in the writer's way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from strax_decl.chunk import Chunk
from strax_storage import DataKey, DataNotFound, Store

__all__ = ["incomplete_chunks"]


def incomplete_chunks(
    stores: Sequence[Store], key: DataKey, time_range: tuple[int, int] | None
) -> Iterator[Chunk]:
    """The chunks of ``key``: complete, else its final prefix; DataNotFound if neither."""
    for store in stores:
        if store.find(key) is not None:
            return store.load(key, time_range)
    for store in stores:
        if store.progress(key) is not None or store.status(key) != "absent":
            return store.load(key, time_range, allow_incomplete=True)
    raise DataNotFound(
        f"{key.data_type} of run {key.run_id!r} ({key}) is neither stored complete nor being "
        "written; allow_incomplete=True reads stored data only, it never computes"
    )
