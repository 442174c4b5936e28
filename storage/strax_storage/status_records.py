"""Completion records: one listing tells which data sets of a whole store are complete.

When a local data set is published complete, ``catalog.publish`` creates, exclusively
(``O_CREAT | O_EXCL``), an empty record in the store's record folder::

    <root>/.complete/<data_type>-<lineage_hash>.<inode>.<run_id>

``<inode>`` is the data set directory's inode as its run folder's listing reports it (the
``d_ino`` a ``scandir`` gives without a system call). A reader that lists the run folders
anyway (``run_scan``) lists the record folder once more (``vouched``, remembered while it is
unchanged) and takes a data set as complete without opening it if its run folder lists the
directory and a record names that directory, its inode and its run: a data set copied (new
inode), moved to another run or renamed does not match, and is judged the slow way, by its
``zarr.json`` (``catalog.final_info``'s trust rules), like every data set without a record
(stores of the earlier layout, other backends, a publish cut short before its record). The
records live outside the run folders so that a run folder holds what it held before.

What keeps a record from outliving the truth:

- ``publish`` deletes the record its temporary directory's inode would match before renaming
  it into place, and the record of a data set it moves aside before moving it;
- ``catalog.remove`` and ``Store.mark_failed`` delete the record (``mark_failed`` before and
  after rewriting the attributes, whose directory keeps its inode);
- the writer creates its record after the rename, then checks that the final path still holds
  a complete data set with that inode, and deletes the record if not. A remover or marker
  deletes after its change, so whatever the interleaving, no record stays on a data set that
  is not complete (at most one is seen for that instant, as any reader racing a change).

A record of a directory removed by hand stays behind, matching nothing (an inode reused by a
later publish of the same key is cleared by that publish). A ``zarr.json`` edited by hand in
place is not seen by the catalog (loading still checks it). Only local directories
(``local_root``) get records: elsewhere a listing has no inode, and readers ask each data set
(the slow path, correct everywhere).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from typing import TYPE_CHECKING, Final

from strax_storage.info import status_of
from strax_storage.layout import ATTRS_KEY, FORMAT, METADATA_FILE, METADATA_LIMIT

if TYPE_CHECKING:
    from strax_storage.backend import Backend
    from strax_storage.keys import DataKey

__all__ = [
    "FRESH_NS",
    "RECORDS",
    "clear",
    "local_complete",
    "local_root",
    "mark_complete",
    "read_small",
    "record_name",
    "vouched",
]

RECORDS: Final = ".complete"
"""The store's record folder (at the root, next to the run folders; not a valid run id)."""


def record_name(run_id: str, dirname: str, inode: int) -> str:
    """The completion record of data set directory ``dirname`` (with ``inode``) of ``run_id``."""
    return f"{dirname}.{inode}.{run_id}"


def local_root(backend: Backend) -> str | None:
    """The directory of a backend that keeps a local directory tree (it has a ``root`` path
    and real modification times); None for any other backend."""
    root = getattr(backend, "root", None)
    return os.fspath(root) if isinstance(root, os.PathLike) and backend.has_mtime else None


def read_small(path: str, limit: int) -> bytes | None:
    """A file's bytes without following a link and without blocking (a FIFO reads as
    empty); None if it cannot be read or holds more than ``limit`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        data = os.read(fd, limit + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) <= limit else None


def local_complete(root: str, key: DataKey, *, listed: bool = False) -> bool:
    """``catalog.final_info(...).status == "complete"`` for a local directory, reading only
    what that needs: the attributes say complete, in this format, and name the key the data
    set is stored under. Links are never followed (``tests/storage/test_run_docs.py`` checks
    both agree); ``listed``: a listing just showed the run and the data set as directories."""
    for part in () if listed else (f"{root}/{key.run_id}", f"{root}/{key.path}"):
        try:
            if not stat.S_ISDIR(os.lstat(part).st_mode):
                return False
        except OSError:
            return False
    raw = read_small(f"{root}/{key.path}/{METADATA_FILE}", METADATA_LIMIT)
    if raw is None:
        return False
    try:
        ours = json.loads(raw)["attributes"][ATTRS_KEY]
    except (ValueError, KeyError, TypeError, RecursionError):
        return False
    if not isinstance(ours, dict) or ours.get("format") != FORMAT or status_of(ours) != "complete":
        return False
    stored_as = (ours.get("run_id"), ours.get("data_type"), ours.get("lineage_hash"))
    return stored_as == (key.run_id, key.data_type, key.lineage_hash)


def _inode(root: str, run_id: str, name: str) -> int | None:
    """The inode of directory ``name`` in ``run_id``'s folder as a listing reports it (not a
    link); None if there is none."""
    try:
        with os.scandir(f"{root}/{run_id}") as it:
            for e in it:
                if e.name == name:
                    return e.inode() if e.is_dir(follow_symlinks=False) else None
    except OSError:
        return None
    return None


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def clear(backend: Backend, key: DataKey, path: str | None = None) -> None:
    """Delete the completion record that the directory ``path`` (default: the key's final
    path; else a temporary directory of the run about to be published as ``key``) would
    match. Never raises for a record already gone."""
    root = local_root(backend)
    if root is None:
        return
    name = (path or key.path).rpartition("/")[2]
    inode = _inode(root, key.run_id, name)
    if inode is not None:
        with contextlib.suppress(OSError):
            _unlink(f"{root}/{RECORDS}/{record_name(key.run_id, key.dirname, inode)}")


def mark_complete(backend: Backend, key: DataKey) -> bool:
    """Record that the data set just published at ``key``'s final path is complete; True if
    a record now vouches for it. The record is created exclusively, then the data set is
    checked again (see the module doc). A record that cannot be written (read-only, disk
    full) is no error: readers take the slow path."""
    root = local_root(backend)
    if root is None or backend.readonly:
        return False
    inode = _inode(root, key.run_id, key.dirname)
    if inode is None:
        return False
    where = f"{root}/{RECORDS}/{record_name(key.run_id, key.dirname, inode)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        os.makedirs(f"{root}/{RECORDS}", exist_ok=True)
        os.close(os.open(where, flags, 0o644))
    except FileExistsError:
        pass
    except OSError:
        return False
    if _inode(root, key.run_id, key.dirname) == inode and local_complete(root, key):
        return True
    with contextlib.suppress(OSError):
        _unlink(where)
    return False


def vouched(backend: Backend) -> frozenset[str]:
    """The names in the store's record folder (empty for a store without one, or not
    local): one listing, remembered while the folder keeps its inode and modification time
    (and is not younger than ``FRESH_NS``, whose changes a timestamp may not show)."""
    root = local_root(backend)
    if root is None:
        return frozenset()
    folder = f"{root}/{RECORDS}"
    try:
        st = os.lstat(folder)
    except OSError:
        return frozenset()
    if not stat.S_ISDIR(st.st_mode):
        return frozenset()
    sig = (st.st_ino, st.st_mtime_ns)
    hit = _vouched_cache.get(root)
    if hit is not None and hit[0] == sig:
        return hit[1]
    try:
        with os.scandir(folder) as it:
            names = frozenset(e.name for e in it if e.is_file(follow_symlinks=False))
    except OSError:
        return frozenset()
    if time.time_ns() - st.st_mtime_ns > FRESH_NS:
        _vouched_cache[root] = (sig, names)
    return names


FRESH_NS: Final = 2 * 10**9
"""A folder changed this recently is listed again whatever its modification time (a second
change within the file system's timestamp granularity would not show)."""

_vouched_cache: dict[str, tuple[tuple[int, int], frozenset[str]]] = {}
