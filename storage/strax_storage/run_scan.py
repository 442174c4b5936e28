"""The run scan: every run folder's document, tags and data set names, and whether a data set
is complete, read cheaply and remembered per process while unchanged.

``scan`` lists the root once and each run folder once; a local directory is read with
``os.scandir`` (links skipped, never followed), and a run folder is listed again only when
it changed (its inode or modification time; a folder changed in the last ``FRESH_NS`` is
always listed again), a run document (written once) read once per process. Data sets are
known from their directory names (``<data_type>-<hash>``) and, locally, their inodes; one
whose completion record (``status_records``: one listing of the store's record folder) names
its run, name and inode is complete without being opened (``complete_many``). Any other is
read (``complete``) only for the data types a caller asks about, and remembered while its
``zarr.json`` keeps its inode, modification time and size.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from strax_storage import run_snapshot
from strax_storage.backend import Backend
from strax_storage.catalog import final_info
from strax_storage.errors import StorageError, UnsafePath
from strax_storage.keys import DataKey
from strax_storage.layout import metadata_key
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
from strax_storage.status_records import (
    FRESH_NS,
    local_complete,
    local_root,
    read_small,
    vouched,
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


def _valid_run(name: str) -> bool:
    try:
        validate_name("run_id", name)
    except ValueError:
        return False
    return True


def _scan_local(backend: Backend, root: str, run_ids: Iterable[str] | None) -> list[RunEntry]:
    """``scan`` of a local directory with ``os.scandir``: symbolic links (runs, data sets,
    records) are skipped, never followed; one ``lstat`` per run folder, one ``scandir`` per
    changed run folder (not in this process's memory nor in the run snapshot) and one read
    per new run document, in threads for many runs."""
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
    snap = run_snapshot.load(root) if run_ids is None or len(runs) >= SNAPSHOT_MIN else {}
    ordered = sorted(runs)
    results = [_remembered(root, run, snap) for run in ordered]
    todo = [(run, sig) for run, (_, sig) in zip(ordered, results, strict=True) if sig]
    if len(todo) >= THREADED_MIN:
        # a cold disk answers several small reads at once faster than one after another
        # (measured: ~2x for 10,000 run folders on 2 cores); the work is all system calls
        with ThreadPoolExecutor(SCAN_THREADS, thread_name_prefix="run-scan") as ex:
            fresh = iter(list(ex.map(lambda t: _listed(root, *t), todo, chunksize=32)))
    else:
        fresh = iter([_listed(root, run, sig) for run, sig in todo])
    found = []
    for entry, sig in results:
        if sig is not None:
            entry = next(fresh)
        if entry is not None:
            found.append(entry)
    listed = len(todo)
    if (
        run_ids is None
        and listed >= max(SNAPSHOT_MIN, len(runs) // 20)
        and not backend.readonly
        and os.access(root, os.W_OK)
    ):
        keep: dict[str, run_snapshot.Cached] = {}
        for r in runs:
            c = _entry_cache.get((root, r))
            if c is not None and c[1] is not None:
                keep[r] = (c[0], c[1], c[2])
        run_snapshot.save(root, keep)
    return found


THREADED_MIN: Final = 512
"""A scan that must list at least this many run folders lists them in ``SCAN_THREADS`` threads."""
SCAN_THREADS: Final = 8
SNAPSHOT_MIN: Final = 64
"""A full scan that had to list at least this many run folders (and a twentieth of the runs)
writes the run snapshot (``run_snapshot``) for the next process's cold scan."""


def _remembered(
    root: str, run: str, snap: Mapping[str, run_snapshot.Cached]
) -> tuple[RunEntry | None, tuple[int, int] | None]:
    """One run folder's entry if it is remembered while the folder keeps its inode and
    modification time (adding or removing a data set, a tag record or the document changes
    it): ``(entry, None)`` from this process's memory or the run snapshot; else ``(None,
    (inode, mtime_ns))`` for ``_listed`` to list it; ``(None, None)``: no such folder."""
    try:
        st = os.lstat(f"{root}/{run}")
    except OSError:
        return None, None
    if not stat.S_ISDIR(st.st_mode):
        return None, None
    sig = (st.st_ino, st.st_mtime_ns)
    hit = _entry_cache.get((root, run))
    if hit is not None and hit[0] == sig:
        return hit[1], None
    shot = snap.get(run)
    if shot is not None and shot[0] == sig:
        _entry_cache[(root, run)] = shot
        if shot[2] is not None and shot[1].error is None:
            _doc_cache[(root, run)] = (shot[2], shot[1].doc, None)
        return shot[1], None
    return None, sig


def _listed(root: str, run: str, sig: tuple[int, int]) -> RunEntry | None:
    """List a run folder ``_remembered`` could not answer for, and remember it (unless it
    changed in the last ``FRESH_NS``: a second change within a timestamp's granularity
    would not show)."""
    entry, doc_inode = _list_run(root, run)
    if time.time_ns() - sig[1] > FRESH_NS:
        _entry_cache[(root, run)] = (sig, entry, doc_inode)
    return entry


def _list_run(root: str, run: str) -> tuple[RunEntry | None, int | None]:
    folder = f"{root}/{run}"
    names, records = [], []
    dirnames: dict[str, int] = {}
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
                    dirnames[name] = e.inode()
    except OSError:
        return None, None
    if not names:
        return None, None
    doc, error = None, None
    if doc_inode is not None:
        # a document is written once, never edited: the same file (inode) is the same
        # document, so it is read once per process
        hit = _doc_cache.get((root, run))
        if hit is not None and hit[0] == doc_inode:
            doc, error = hit[1], hit[2]
        else:
            where = f"{folder}/{RUN_DOC}"
            raw = read_small(where, RUN_DOC_LIMIT)
            if raw is None:
                error = f"{where} is not a readable file of at most {RUN_DOC_LIMIT} bytes"
            else:
                try:
                    doc = decode_run_doc(raw, where)
                except StorageError as e:
                    error = str(e)
            if error is None:
                _doc_cache[(root, run)] = (doc_inode, doc, error)
    entry = RunEntry(run, doc, tags_of(doc, records), frozenset(dirnames), error, dirnames)
    return entry, doc_inode


_cache_lock = threading.Lock()
_complete_cache: dict[tuple[str, str], tuple[object, bool]] = {}
_doc_cache: dict[tuple[str, str], tuple[int, dict[str, Any] | None, str | None]] = {}
"""Run documents read in this process, by (root, run): (inode of the file, doc, error)."""
_entry_cache: dict[tuple[str, str], tuple[tuple[int, int], RunEntry | None, int | None]] = {}
"""Run folders listed in this process, by (root, run): ((inode, mtime_ns), entry, inode of
its document)."""


def _signature(backend: Backend, path: str) -> tuple[int, int, int] | float | None:
    root = local_root(backend)
    if root is None:
        return backend.mtime(metadata_key(path)) if backend.has_mtime else None
    try:
        st = os.lstat(f"{root}/{path}/zarr.json")
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


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
        ok = local_complete(root, key, listed=listed)
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


def complete_many(
    backend: Backend, items: list[tuple[str, str, str]], entries: Mapping[str, RunEntry]
) -> list[bool]:
    """``complete`` of many ``(run_id, data_type, lineage_hash)`` whose directories a
    ``scan`` just listed (so they are not links; ``entries``: that scan's, by run id). A data
    set with a completion record (``status_records``) naming the inode listed is complete
    unread; only the others are read (or found unchanged: one ``lstat``)."""
    root = local_root(backend)
    if root is None:
        return [complete(backend, *item) for item in items]
    records = vouched(backend)
    out: list[bool] = []
    url, lstat = backend.url, os.lstat
    for run, dt, lineage_hash in items:
        dirname = f"{dt}-{lineage_hash}"
        entry = entries.get(run)
        inodes = entry.inodes if entry is not None else None
        inode = inodes.get(dirname) if inodes and records else None
        if inode is not None and f"{dirname}.{inode}.{run}" in records:  # record_name
            out.append(True)
            continue
        path = f"{run}/{dirname}"
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
