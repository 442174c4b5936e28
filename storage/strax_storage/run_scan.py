"""The run scan: every run folder's document, tags and data set names, and whether a data set
is complete, read cheaply and remembered per process while unchanged.

``scan`` lists the root once and each run folder once; a local directory is read with
``os.scandir`` (links skipped, never followed), and a run folder is listed again only when
it changed (its inode or modification time; a folder changed in the last ``FRESH_NS`` is
always listed again), a run document (written once) read once per process. Data sets are
known from their directory names (``<data_type>-<hash>``); whether one is complete is read
(``complete``) only for the data types a caller asks about, and remembered while its
``zarr.json`` keeps its inode, modification time and size.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Iterable
from typing import Any, Final

from strax_storage.backend import Backend
from strax_storage.catalog import final_info
from strax_storage.errors import StorageError, UnsafePath
from strax_storage.info import status_of
from strax_storage.keys import DataKey
from strax_storage.layout import ATTRS_KEY, FORMAT, METADATA_LIMIT, metadata_key
from strax_storage.names import validate_name
from strax_storage.run_docs import (
    RUN_DOC,
    RUN_DOC_LIMIT,
    TAG_PREFIX,
    UNTAG_PREFIX,
    RunEntry,
    decode_run_doc,
    entry_of,
    tags_of,
)

__all__ = ["FRESH_NS", "complete", "complete_many", "local_root", "scan"]


def scan(backend: Backend, run_ids: Iterable[str] | None = None) -> list[RunEntry]:
    """Every run folder (or those of ``run_ids``), sorted by run id: one listing each.

    ``RunEntry.dirnames`` holds every name that may be a published data set (a directory not
    starting with ``.``, with a ``-``): names are not validated here, since a caller only asks
    whether the name of a valid key is among them.
    """
    root = local_root(backend)
    if root is not None:
        return _scan_local(backend, root, run_ids)
    if run_ids is None:
        runs = []
        for name in backend.children(""):
            try:
                runs.append(validate_name("run_id", name))
            except ValueError:
                continue
    else:
        runs = [validate_name("run_id", r) for r in run_ids]
    out = []
    for run in sorted(runs):
        try:
            names = backend.children(run)
        except UnsafePath:
            continue
        if names:
            out.append(entry_of(backend, run, names))
    return out


def local_root(backend: Backend) -> str | None:
    """The directory of a backend that keeps a local directory tree (it has a ``root`` path
    and real modification times), for the fast scan; None for any other backend."""
    root = getattr(backend, "root", None)
    return os.fspath(root) if isinstance(root, os.PathLike) and backend.has_mtime else None


def _valid_run(name: str) -> bool:
    try:
        validate_name("run_id", name)
    except ValueError:
        return False
    return True


def _read_small(path: str, limit: int) -> bytes | None:
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


def _scan_local(backend: Backend, root: str, run_ids: Iterable[str] | None) -> list[RunEntry]:
    """``scan`` of a local directory with ``os.scandir``: symbolic links (runs, data sets,
    records) are skipped, never followed; one ``scandir`` per changed run folder and one
    read per new run document. (Threads were measured and did not help: parsing, not the
    disk, is what a cold scan waits for.)"""
    if run_ids is None:
        try:
            with os.scandir(root) as it:
                runs = [
                    e.name
                    for e in it
                    if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
                ]
        except (FileNotFoundError, NotADirectoryError):
            return []
        runs = [r for r in runs if _valid_run(r)]
    else:
        runs = []
        for r in run_ids:
            try:
                if not stat.S_ISLNK(os.lstat(f"{root}/{validate_name('run_id', r)}").st_mode):
                    runs.append(r)
            except OSError:
                continue
    found = [_scan_run(root, run) for run in sorted(runs)]
    return [e for e in found if e is not None]


FRESH_NS: Final = 2 * 10**9
"""A run folder changed this recently is listed again whatever its modification time (a
second change within the file system's timestamp granularity would not show)."""


def _scan_run(root: str, run: str) -> RunEntry | None:
    """One run folder, remembered while the folder keeps its inode and modification time
    (adding or removing a data set, a tag record or the document changes it)."""
    folder = f"{root}/{run}"
    try:
        st = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return None
    sig = (st.st_ino, st.st_mtime_ns)
    hit = _entry_cache.get((root, run))
    if hit is not None and hit[0] == sig:
        return hit[1]
    entry = _list_run(root, run)
    if time.time_ns() - st.st_mtime_ns > FRESH_NS:
        _entry_cache[(root, run)] = (sig, entry)
    return entry


def _list_run(root: str, run: str) -> RunEntry | None:
    folder = f"{root}/{run}"
    names, dirnames, records = [], set(), []
    doc_inode = None
    try:
        with os.scandir(folder) as it:
            for e in it:
                if e.is_symlink():
                    continue
                name = e.name
                names.append(name)
                if name[0] == ".":
                    if name == RUN_DOC:
                        doc_inode = e.inode()  # from the listing itself: no system call
                    elif name.startswith((TAG_PREFIX, UNTAG_PREFIX)):
                        records.append(name)
                elif "-" in name and e.is_dir(follow_symlinks=False):
                    dirnames.add(name)
    except OSError:
        return None
    if not names:
        return None
    doc, error = None, None
    if doc_inode is not None:
        # a document is written once, never edited: the same file (inode) is the same
        # document, so it is read once per process
        hit = _doc_cache.get((root, run))
        if hit is not None and hit[0] == doc_inode:
            doc, error = hit[1], hit[2]
        else:
            where = f"{folder}/{RUN_DOC}"
            raw = _read_small(where, RUN_DOC_LIMIT)
            if raw is None:
                error = f"{where} is not a readable file of at most {RUN_DOC_LIMIT} bytes"
            else:
                try:
                    doc = decode_run_doc(raw, where)
                except StorageError as e:
                    error = str(e)
            if error is None:
                _doc_cache[(root, run)] = (doc_inode, doc, error)
    return RunEntry(run, doc, tags_of(doc, records), frozenset(dirnames), error)


_cache_lock = threading.Lock()
_complete_cache: dict[tuple[str, str], tuple[object, bool]] = {}
_doc_cache: dict[tuple[str, str], tuple[int, dict[str, Any] | None, str | None]] = {}
"""Run documents read in this process, by (root, run): (inode of the file, doc, error)."""
_entry_cache: dict[tuple[str, str], tuple[tuple[int, int], RunEntry | None]] = {}
"""Run folders listed in this process, by (root, run): ((inode, mtime_ns), entry)."""


def _signature(backend: Backend, path: str) -> tuple[int, int, int] | float | None:
    root = local_root(backend)
    if root is None:
        return backend.mtime(metadata_key(path)) if backend.has_mtime else None
    try:
        st = os.lstat(f"{root}/{path}/zarr.json")
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _local_complete(root: str, key: DataKey, *, listed: bool = False) -> bool:
    """``catalog.final_info(...).status == "complete"`` for a local directory, reading only
    what that needs: the rules for a complete data set (its attributes say complete, in
    this format, and name the key it is stored under) without building its whole info.
    Links are never followed (``tests/storage/test_run_docs.py`` checks both agree);
    ``listed``: a scan just listed the run and the data set as directories, not links."""
    for part in () if listed else (f"{root}/{key.run_id}", f"{root}/{key.path}"):
        try:
            if not stat.S_ISDIR(os.lstat(part).st_mode):
                return False
        except OSError:
            return False
    raw = _read_small(f"{root}/{key.path}/zarr.json", METADATA_LIMIT)
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


def complete(
    backend: Backend, run_id: str, data_type: str, lineage_hash: str, *, listed: bool = False
) -> bool:
    """Is the data set ``<run_id>/<data_type>-<lineage_hash>`` complete (by the catalog's
    trust rules, ``catalog.final_info``)?

    Where the backend keeps modification times, the answer is remembered while the data
    set's ``zarr.json`` keeps its identity (inode, modification time, size: any rewrite,
    publish or removal changes it), so asking again costs one ``stat``. The names are
    validated (``DataKey``) before anything is read.
    """
    path = f"{run_id}/{data_type}-{lineage_hash}"
    sig = _signature(backend, path)
    cache_key = (backend.url, path)
    if sig is not None:
        with _cache_lock:
            hit = _complete_cache.get(cache_key)
        if hit is not None and hit[0] == sig:
            return hit[1]
    key = DataKey(run_id, data_type, lineage_hash)  # checked before the first read
    root = local_root(backend)
    if root is not None:
        ok = _local_complete(root, key, listed=listed)
    else:
        try:
            info = final_info(backend, key)
        except StorageError:
            return False
        ok = info is not None and info.status == "complete"
    if sig is not None:
        with _cache_lock:
            _complete_cache[cache_key] = (sig, ok)
    return ok


def complete_many(backend: Backend, items: list[tuple[str, str, str]]) -> list[bool]:
    """``complete`` of many ``(run_id, data_type, lineage_hash)`` whose directories a
    ``scan`` just listed (so they are not links)."""
    root = local_root(backend)
    if root is None:
        return [complete(backend, *item) for item in items]
    out: list[bool] = []
    url, lstat = backend.url, os.lstat
    for run, dt, lineage_hash in items:  # the warm path: one lstat per data set
        path = f"{run}/{dt}-{lineage_hash}"
        try:
            st = lstat(f"{root}/{path}/zarr.json")
            hit = _complete_cache.get((url, path))
        except OSError:
            hit = None
        if hit is not None and hit[0] == (st.st_ino, st.st_mtime_ns, st.st_size):
            out.append(hit[1])
        else:
            out.append(complete(backend, run, dt, lineage_hash, listed=True))
    return out
