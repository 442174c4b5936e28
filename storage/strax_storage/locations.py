"""What a store location means: a local path, ``memory://[name]`` or an fsspec URL.

Kept apart from ``store.py`` so that opening a local store (``strax-decl ls``) imports no
Zarr: only URLs need Zarr's stores, and they import it here when one is opened.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from strax_storage.backend import Backend, LocalBackend
from strax_storage.errors import StorageError

__all__ = ["backend_for"]

_memory_lock = threading.Lock()
_memory_stores: dict[str, dict[str, Any]] = {}


def backend_for(
    location: str | os.PathLike[str],
    *,
    readonly: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> Backend:
    """The backend of ``location`` (see ``open_store`` for what each form means)."""
    if not isinstance(location, str):
        return LocalBackend(os.path.expanduser(location), readonly=readonly)
    if "://" not in location:
        if not location or "\x00" in location:
            raise ValueError(f"invalid store location {location!r}")
        return LocalBackend(os.path.expanduser(location), readonly=readonly)
    from zarr.storage import FsspecStore, MemoryStore

    from strax_storage.zarr_backend import ZarrBackend

    if location.startswith("memory://"):
        name = location[len("memory://") :]
        with _memory_lock:
            if name:
                contents = _memory_stores.setdefault(name, {})
            else:
                contents = {}
                name = f"anonymous-{id(contents):x}"
        store = MemoryStore(contents, read_only=readonly)
        return ZarrBackend(store, f"memory://{name}", claims_kept="process")
    options = dict(storage_options or {})
    if location.startswith(("file://", "local://")):
        options.setdefault("auto_mkdir", True)  # fsspec's local filesystem needs parent dirs
    try:
        fs_store = FsspecStore.from_url(location, storage_options=options, read_only=readonly)
    except Exception as e:
        raise StorageError(f"cannot open store {location!r}: {type(e).__name__}: {e}") from e
    return ZarrBackend(fs_store, location, claims_kept="file")
