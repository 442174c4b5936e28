"""Finding data sets in a backend: status of a key, listing, removal, publishing.

The rules that decide what a reader may trust live here, in one place:

- a data set is *complete* only if its group attributes (written last) say so;
- locally, a directory ``<run>/.tmp-<data_type>-<hash>-<uuid>`` is a data set being written
  (or left behind by a killed writer): reported as ``writing``, never loaded;
- a finished write is published by renaming its temporary directory to the final name; an
  older failed data set there is first renamed to ``.trash-...`` and then deleted. A failed
  write never replaces a complete data set.
"""

from __future__ import annotations

import uuid

from storage.backend import Backend, LocalBackend
from storage.errors import DataNotFound
from storage.info import DataSetInfo, Status, info_from_group_json
from storage.keys import TRASH_PREFIX, DataKey, parse_dirname, parse_tmp_dirname
from storage.names import validate_name

__all__ = ["final_info", "list_infos", "publish", "remove", "status", "tmp_dirs"]


def group_json_key(path: str) -> str:
    return f"{path}/zarr.json"


def info_at(backend: Backend, key: DataKey, path: str, *, writing: bool = False) -> DataSetInfo:
    raw = backend.read(group_json_key(path))
    return info_from_group_json(key, raw, backend.where(path), writing=writing)


def final_info(backend: Backend, key: DataKey) -> DataSetInfo | None:
    """Info of the data set at the key's final path, or None if nothing is there."""
    raw = backend.read(group_json_key(key.path))
    if raw is None and not backend.exists_tree(key.path):
        return None
    return info_from_group_json(key, raw, backend.where(key.path))


def tmp_dirs(backend: Backend, key: DataKey) -> list[str]:
    """Paths of local temporary directories holding (partial) writes of ``key``."""
    if backend.in_place:
        return []
    return [
        f"{key.run_id}/{name}"
        for name in backend.children(key.run_id)
        if parse_tmp_dirname(key.run_id, name) == key
    ]


def status(backend: Backend, key: DataKey) -> Status:
    """``complete`` beats ``writing`` (a new attempt in progress) beats ``failed``."""
    info = final_info(backend, key)
    if info is not None and info.status == "complete":
        return "complete"
    if tmp_dirs(backend, key):
        return "writing"
    return "absent" if info is None else info.status


def _runs(backend: Backend) -> list[str]:
    runs = []
    for name in backend.children(""):
        try:
            validate_name("run_id", name)
        except ValueError:
            continue
        runs.append(name)
    return sorted(runs)


def list_infos(
    backend: Backend, run_id: str | None = None, data_type: str | None = None
) -> list[DataSetInfo]:
    """Every data set (any status), sorted by key; local temporary dirs show as ``writing``."""
    if run_id is not None:
        validate_name("run_id", run_id)
    if data_type is not None:
        validate_name("data_type", data_type)
    out = []
    for run in [run_id] if run_id is not None else _runs(backend):
        for name in sorted(backend.children(run)):
            key = parse_dirname(run, name)
            writing = False
            if key is None and not backend.in_place:
                key = parse_tmp_dirname(run, name)
                writing = True
            if key is None or (data_type is not None and key.data_type != data_type):
                continue
            out.append(info_at(backend, key, f"{run}/{name}", writing=writing))
    out.sort(key=lambda i: (i.key, i.status != "complete", i.location))
    return out


def _trash_path(key: DataKey) -> str:
    return f"{key.run_id}/{TRASH_PREFIX}{key.dirname}-{uuid.uuid4().hex[:12]}"


def remove(backend: Backend, key: DataKey) -> None:
    """Delete the data set at the key's final path (any status); DataNotFound if none."""
    if not backend.exists_tree(key.path):
        raise DataNotFound(f"no data set {key} in {backend.url}")
    if isinstance(backend, LocalBackend):
        # Rename first: a reader never sees a half-deleted data set under the final name.
        trash = _trash_path(key)
        backend.rename_tree(key.path, trash)
        backend.delete_tree(trash)
    else:
        backend.delete_tree(key.path)


def publish(
    backend: LocalBackend, key: DataKey, tmp: str, *, complete: bool, overwrite: bool
) -> bool:
    """Rename the finished temporary directory ``tmp`` to the key's final path.

    Returns False (and deletes ``tmp``) if a complete data set is already there and must be
    kept: always for a failed write, and for a complete one unless ``overwrite`` (then another
    writer finished the same lineage first; both hold the same data).
    """
    for _ in range(10):
        existing = final_info(backend, key)
        if existing is None:
            try:
                backend.rename_tree(tmp, key.path)
                return True
            except OSError:
                continue  # someone published meanwhile; look again
        if existing.status == "complete" and not (complete and overwrite):
            backend.delete_tree(tmp)
            return False
        trash = _trash_path(key)
        try:
            backend.rename_tree(key.path, trash)
        except FileNotFoundError:
            continue
        try:
            backend.rename_tree(tmp, key.path)
        finally:
            backend.delete_tree(trash)
        return True
    raise OSError(f"could not publish {key} in {backend.url}: the final path keeps changing")
