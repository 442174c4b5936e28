"""``ZarrBackend``: a store's bytes in any Zarr store (``memory://``, fsspec URLs).

There is no rename, so data sets are written in place and the ``complete`` attribute, written
last, is the only truth (see ``backend.py`` for the interface and the local backend).
"""

from __future__ import annotations

from collections.abc import Sequence

from zarr.abc.store import Store as ZarrStore
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import MemoryStore

from strax_storage.backend import Backend, Bytes, ClaimsKept, check_relative
from strax_storage.errors import BadObject

__all__ = ["ZarrBackend"]


class ZarrBackend(Backend):
    """Any Zarr store (memory, fsspec); accessed through Zarr's synchronous bridge.

    ``claims_kept``: ``process`` for a store that lives in this process only; by default so
    for a Zarr ``MemoryStore``, ``file`` for any other.
    """

    supports_rename = False
    has_mtime = False

    def __init__(
        self, store: ZarrStore, url: str, *, claims_kept: ClaimsKept | None = None
    ) -> None:
        self.zarr_store = store
        self.url = url
        self.readonly = bool(store.read_only)
        if claims_kept is None:
            claims_kept = "process" if isinstance(store, MemoryStore) else "file"
        if claims_kept not in ("file", "process"):
            raise ValueError(f"claims_kept must be 'file' or 'process', not {claims_kept!r}")
        self.claims_kept = claims_kept

    def read(self, key: str, limit: int | None = None) -> bytes | None:
        check_relative(key)
        if limit is not None:
            # ask the size first: an oversized object (damage, or planted) is refused
            # without being downloaded
            try:
                size: int | None = sync(self.zarr_store.getsize(key))
            except FileNotFoundError:
                return None
            except (NotImplementedError, OSError):
                size = None  # a store that cannot tell: checked after reading below
            if size is not None and size > limit:
                self._refuse(key, size, limit)
        buf = sync(self.zarr_store.get(key, prototype=default_buffer_prototype()))
        if buf is None:
            return None
        if limit is not None and len(buf) > limit:
            self._refuse(key, len(buf), limit)
        return buf.to_bytes()

    def _refuse(self, key: str, size: int, limit: int) -> None:
        raise BadObject(
            f"{self.where(key)} holds {size} bytes, more than the {limit} allowed for it; not read"
        )

    def write(self, key: str, parts: Sequence[Bytes], *, within: str | None = None) -> None:
        # object stores have no directories: ``within`` cannot be checked here (see the
        # guarantees in docs/storage.md: paused writers on object stores)
        check_relative(key)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        buf = default_buffer_prototype().buffer.from_bytes(
            data if isinstance(data, bytes) else bytes(data)
        )
        sync(self.zarr_store.set(key, buf))

    def create_exclusive(self, key: str, data: bytes) -> bool:
        # atomic for MemoryStore (dict.setdefault); exists-then-set for fsspec (best effort)
        check_relative(key)
        buf = default_buffer_prototype().buffer.from_bytes(data)
        sync(self.zarr_store.set_if_not_exists(key, buf))
        return self.read(key) == data

    def children(self, prefix: str) -> list[str]:
        check_relative(prefix)

        async def collect() -> list[str]:
            return [name async for name in self.zarr_store.list_dir(prefix)]

        return sorted({name.strip("/") for name in sync(collect()) if name.strip("/")})

    def delete_tree(self, prefix: str) -> None:
        check_relative(prefix)
        sync(self.zarr_store.delete_dir(prefix))
