"""Byte-level access to where the store lives: a local directory or any Zarr store.

Two implementations of one small interface, because the two kinds of place differ in what they
can promise:

- ``LocalBackend`` (a path): chunk files are written with plain ``open``/``write`` (no per-call
  event-loop hop), and a data set is written under a temporary name and *renamed* into place,
  so a killed process never leaves a half-written data set under its final name.
- ``ZarrBackend`` (``memory://``, fsspec URLs): everything goes through the Zarr store; there is
  no rename, so data sets are written in place and the ``complete`` attribute, written last,
  is the only truth.

Zarr metadata documents are always created through ``zarr_store`` with Zarr's own API.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from zarr.abc.store import Store as ZarrStore
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore

__all__ = ["Backend", "LocalBackend", "ZarrBackend"]

Bytes = bytes | bytearray | memoryview


class Backend(ABC):
    """Read/write/list/delete whole objects under ``/``-separated keys relative to the root."""

    url: str
    readonly: bool
    in_place: bool
    """True if data sets are written at their final key (no atomic rename available)."""
    zarr_store: ZarrStore

    def where(self, key: str) -> str:
        """Human-readable location of ``key`` for error messages."""
        return f"{self.url.rstrip('/')}/{key}"

    @abstractmethod
    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None if it does not exist."""

    @abstractmethod
    def write(self, key: str, parts: Sequence[Bytes]) -> None:
        """Create or replace the object ``key`` with the concatenation of ``parts``."""

    def write_atomic(self, key: str, data: bytes) -> None:
        """Replace ``key`` so that readers see either the old or the new bytes, never a mix."""
        buf = default_buffer_prototype().buffer.from_bytes(data)
        sync(self.zarr_store.set(key, buf))

    @abstractmethod
    def children(self, prefix: str) -> list[str]:
        """Names directly under ``prefix`` ("" for the root); [] if there is nothing there."""

    @abstractmethod
    def delete_tree(self, prefix: str) -> None:
        """Delete everything under ``prefix`` (no error if nothing is there)."""

    def rename_tree(self, src: str, dst: str) -> None:
        """Atomically move ``src`` to the (absent) ``dst``; only where ``in_place`` is False."""
        raise NotImplementedError(f"{type(self).__name__} cannot rename")

    def exists_tree(self, prefix: str) -> bool:
        """Whether anything is stored under ``prefix``."""
        return bool(self.children(prefix))


class LocalBackend(Backend):
    """A directory on the local filesystem."""

    in_place = False

    def __init__(self, root: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.url = str(self.root)
        self.readonly = readonly
        self.zarr_store = LocalStore(self.root, read_only=readonly)

    def path(self, key: str) -> Path:
        return self.root / key

    def where(self, key: str) -> str:
        return str(self.root / key)

    def read(self, key: str) -> bytes | None:
        try:
            with open(self.root / key, "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def write(self, key: str, parts: Sequence[Bytes]) -> None:
        path = self.root / key
        try:
            f = open(path, "wb")  # noqa: SIM115 - closed below, after the directory retry
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            f = open(path, "wb")  # noqa: SIM115
        with f:
            for part in parts:
                f.write(part)

    def write_atomic(self, key: str, data: bytes) -> None:
        path = self.root / key
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        try:
            self.write(str(tmp.relative_to(self.root)), [data])
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def children(self, prefix: str) -> list[str]:
        try:
            with os.scandir(self.root / prefix) as it:
                return [e.name for e in it]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def is_dir(self, key: str) -> bool:
        return (self.root / key).is_dir()

    def delete_tree(self, prefix: str) -> None:
        path = self.root / prefix
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=False)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def rename_tree(self, src: str, dst: str) -> None:
        # os.rename of a directory fails if dst exists and is non-empty: never clobbers.
        os.rename(self.root / src, self.root / dst)

    def exists_tree(self, prefix: str) -> bool:
        return (self.root / prefix).exists()


class ZarrBackend(Backend):
    """Any Zarr store (memory, fsspec); accessed through Zarr's synchronous bridge."""

    in_place = True

    def __init__(self, store: ZarrStore, url: str) -> None:
        self.zarr_store = store
        self.url = url
        self.readonly = bool(store.read_only)

    def read(self, key: str) -> bytes | None:
        buf = sync(self.zarr_store.get(key, prototype=default_buffer_prototype()))
        return None if buf is None else buf.to_bytes()

    def write(self, key: str, parts: Sequence[Bytes]) -> None:
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        buf = default_buffer_prototype().buffer.from_bytes(
            data if isinstance(data, bytes) else bytes(data)
        )
        sync(self.zarr_store.set(key, buf))

    def children(self, prefix: str) -> list[str]:
        async def collect() -> list[str]:
            return [name async for name in self.zarr_store.list_dir(prefix)]

        return sorted({name.strip("/") for name in sync(collect()) if name.strip("/")})

    def delete_tree(self, prefix: str) -> None:
        sync(self.zarr_store.delete_dir(prefix))
