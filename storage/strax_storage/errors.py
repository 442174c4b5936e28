"""Every error the store raises on purpose, under one base: ``except StorageError``.

Callers can tell "not there" (DataNotFound) from "broken" (DataCorrupted), "someone else is
writing it" (ClaimHeld, ClaimTimeout, WriterGone) and "the operating system refused"
(StorageIOError). Each error also keeps its built-in base where one fits (``OSError``,
``LookupError``, ``ValueError``, ``TimeoutError``), so code written against those still works.

Every message names the data set (``run/data_type-hash``) and the store URL, because the
resolver and the command line show these messages to users who must find the files.
"""

from __future__ import annotations

import errno as errno_mod
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only
    from strax_storage.claims import ClaimInfo
    from strax_storage.keys import DataKey

__all__ = [
    "BadObject",
    "CannotSplit",
    "ChecksumMismatch",
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
]


class StorageError(Exception):
    """Base class of every error raised on purpose by ``strax_storage``."""


# --------------------------------------------------------------------------- data sets


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


class WriteLost(StorageError):
    """A writer lost the right to publish: its claim was broken (e.g. it was paused past the
    claim's stale limit) or its temporary directory was removed or changed behind it.

    The writer stops and publishes nothing; what another writer published is left alone.
    """


class SaverClosedError(StorageError):
    """A saver was used after ``close()`` or ``fail()``."""


class ChecksumMismatch(StorageError, ValueError):
    """The bytes of a chunk do not decode to what the metadata promises (reason in message).

    The loader reports it as DataCorrupted, naming the data set and the file."""


# --------------------------------------------------------------------------- chunks


class ChunkLawViolation(StorageError, ValueError):
    """A chunk breaks one of the chunk laws; the message names where and which row."""


class CannotSplit(ChunkLawViolation):
    """Splitting at the requested time would cut a row in two."""


# --------------------------------------------------------------------------- backends


class StorageIOError(StorageError, OSError):
    """The operating system refused a store operation (disk full, permission denied, ...).

    An ``OSError`` too: ``errno``, ``strerror`` and ``filename`` (the full path) are kept.
    """

    def __str__(self) -> str:
        code = errno_mod.errorcode.get(self.errno or 0, "?")
        return f"{self.strerror} [{code}, errno {self.errno}]: {self.filename}"


class BadObject(StorageError):
    """An object in the store that is not readable as one: not a regular file (a FIFO, a
    device, a socket, which could block a reader forever) or larger than the reader allows
    (a ``zarr.json`` of gigabytes). The message names the path."""


class UnsafePath(StorageError):
    """A key would leave the store root (``..``, a symbolic link below the root, ...)."""


# --------------------------------------------------------------------------- claims


class ClaimHeld(StorageError):
    """Another writer holds the claim on a data set (raised when the caller will not wait)."""

    def __init__(self, message: str, key: DataKey, holder: ClaimInfo | None) -> None:
        super().__init__(message)
        self.key = key
        self.holder = holder


class WriterGone(StorageError):
    """The data set waited for is not complete and nobody (alive) is writing it any more."""

    def __init__(self, message: str, key: DataKey) -> None:
        super().__init__(message)
        self.key = key


class ClaimTimeout(StorageError, TimeoutError):
    """Waiting for another writer to complete a data set took longer than the timeout."""

    def __init__(self, message: str, key: DataKey, holder: ClaimInfo | None) -> None:
        super().__init__(message)
        self.key = key
        self.holder = holder
