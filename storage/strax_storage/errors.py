"""The errors the store raises on purpose, so callers can tell "not there" from "broken".

Every message names the data set (``run/data_type-hash``) and the store URL, because the
resolver and the command line show these messages to users who must find the files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only
    from strax_storage.keys import DataKey

__all__ = [
    "DataCorrupted",
    "DataExistsError",
    "DataNotFound",
    "SaverClosedError",
    "StorageError",
]


class StorageError(Exception):
    """Base class of every error raised on purpose by ``storage``."""


class DataNotFound(StorageError, LookupError):
    """No complete data set exists under the key (absent, still being written, or failed)."""


class DataCorrupted(StorageError):
    """A stored data set disagrees with itself: missing or damaged chunk, lying row counts...

    Raised instead of ever returning wrong rows. ``key`` is the data set's DataKey and
    ``where`` the file or directory at fault, so callers can act on them (mark the data set
    failed, recompute it) without reading the message.
    """

    def __init__(self, message: str, key: DataKey | None = None, where: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.where = where


class DataExistsError(StorageError):
    """A complete data set already exists under the key and ``overwrite`` was not given."""


class SaverClosedError(StorageError):
    """A saver was used after ``close()`` or ``fail()``."""
