"""The run snapshot: one file holding what a scan of every run folder found, so a cold scan
reads one file instead of listing 10,000 folders and reading 10,000 run documents.

``<root>/.runs-snapshot.json`` (plain JSON, ``{"format": "strax_decl.run_snapshot",
"runs": {run_id: [inode, mtime_ns, doc_inode, doc, error, tags, {dirname: inode}]}}``) is
written by a full scan (``run_scan.scan``) that had to list many folders, under a temporary
name and then renamed over the old one (``os.replace``), so a reader sees a whole snapshot or
the previous one. It is a cache, never the truth: a run's entry is used only while the run
folder keeps the inode and modification time recorded (adding or removing a data set, a tag
record or the document changes it), and only entries of folders unchanged for ``FRESH_NS``
when they were listed are written (a change within a timestamp's granularity would not show).
Runs not in the root's listing are ignored; runs not in the snapshot are listed. A snapshot
that is damaged, too big, or of another format is ignored (and replaced by the next full
scan); a store that is read-only, or not local, has none. Whether a data set is complete is
not in it: that is the completion records' (``status_records``), listed on each scan.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Mapping
from typing import Any, Final

from strax_storage.run_docs import RunEntry
from strax_storage.status_records import read_small

__all__ = ["SNAPSHOT", "SNAPSHOT_FORMAT", "Cached", "load", "save"]

SNAPSHOT: Final = ".runs-snapshot.json"
SNAPSHOT_FORMAT: Final = "strax_decl.run_snapshot"
SNAPSHOT_LIMIT: Final = 1 << 30
"""Largest snapshot read (bytes): ~400 bytes a run."""

Cached = tuple[tuple[int, int], RunEntry, int | None]
"""A run folder as listed: ((folder inode, mtime_ns), its entry, its document's inode)."""

_lock = threading.Lock()
_loaded: dict[str, tuple[tuple[int, int, int], dict[str, Cached]]] = {}
"""The last snapshot read per root, by the file's (inode, mtime_ns, size)."""


def _entry(run: str, raw: Any) -> Cached | None:
    """One run's snapshot entry, or None if it is not of the expected shape."""
    if not isinstance(raw, list) or len(raw) != 7:
        return None
    ino, mtime, doc_ino, doc, error, tags, dirs = raw
    ints = (ino, mtime) + (() if doc_ino is None else (doc_ino,))
    if not all(type(v) is int for v in ints):
        return None
    if not (doc is None or isinstance(doc, dict)) or not (error is None or isinstance(error, str)):
        return None
    if type(tags) is not list or not set(map(type, tags)) <= {str}:
        return None
    if type(dirs) is not dict or not set(map(type, dirs.values())) <= {int}:
        return None
    entry = RunEntry(run, doc, tuple(tags), frozenset(dirs), error, dirs)
    return (ino, mtime), entry, doc_ino


def load(root: str) -> dict[str, Cached]:
    """The entries of ``root``'s snapshot (empty if it has none or it cannot be used)."""
    path = f"{root}/{SNAPSHOT}"
    try:
        st = os.lstat(path)
    except OSError:
        return {}
    sig = (st.st_ino, st.st_mtime_ns, st.st_size)
    with _lock:
        hit = _loaded.get(root)
    if hit is not None and hit[0] == sig:
        return hit[1]
    raw = read_small(path, SNAPSHOT_LIMIT)
    out: dict[str, Cached] = {}
    try:
        outer = json.loads(raw) if raw is not None else None
    except (ValueError, RecursionError):
        outer = None
    runs = outer.get("runs") if isinstance(outer, dict) else None
    ours = isinstance(outer, dict) and outer.get("format") == SNAPSHOT_FORMAT
    if ours and isinstance(runs, dict):
        for run, value in runs.items():
            cached = _entry(run, value)
            if cached is not None and cached[1].run_id == run:
                out[run] = cached
    with _lock:
        _loaded[root] = (sig, out)
    return out


def save(root: str, entries: Mapping[str, Cached]) -> bool:
    """Replace ``root``'s snapshot by ``entries`` (whole, atomically); False if it cannot
    be written (then the store simply has none, or keeps the older one)."""
    runs = {
        run: [sig[0], sig[1], doc_ino, e.doc, e.error, list(e.tags), dict(e.inodes or {})]
        for run, (sig, e, doc_ino) in sorted(entries.items())
    }
    try:
        data = json.dumps({"format": SNAPSHOT_FORMAT, "runs": runs}, allow_nan=False).encode()
    except (TypeError, ValueError):
        return False
    tmp = f"{root}/.tmp-{SNAPSHOT}-{uuid.uuid4().hex[:12]}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, f"{root}/{SNAPSHOT}")
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False
    return True
