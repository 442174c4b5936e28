"""Run documents and run tags, kept with the run in its folder (the scan is ``run_scan``).

A run's folder ``<run_id>/`` holds, next to its data sets:

- ``.run.json``: the run document (plain JSON: ``{"format": "strax_decl.run", "doc": {...}}``),
  written once, atomically and exclusively: locally under a temporary name, then renamed into
  place without replacing (``renameat2(RENAME_NOREPLACE)`` on Linux); on other stores with the
  backend's exclusive create. It is never edited, so two writers never edit it at once. (It is
  not kept in the run group's ``zarr.json``: a saver creates that empty group the first time
  it writes into the run, and may replace it there.)
- ``.tag-<tag>``: one record per tag added after the document was written, created
  exclusively (``O_CREAT | O_EXCL``); removing such a tag deletes its record;
  ``.untag-<tag>``: a record that a tag of the document itself was removed. So processes
  adding or removing different tags at the same time never touch the same file, and none is
  lost: the run's tags are the document's, plus the ``.tag-`` records, minus the ``.untag-``
  records.

Tag names are checked like run ids (letters, digits, ``_`` and ``.``, no leading dot, at most
64 characters) before a path is built from them.

Nothing here is a pickle: documents and records are JSON, read with a size limit.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from strax_storage.backend import Backend
from strax_storage.errors import BadObject, DataExistsError, StorageError, UnsafePath
from strax_storage.keys import TMP_PREFIX, parse_dirname
from strax_storage.names import validate_name
from strax_storage.process import process_identity

__all__ = [
    "RUN_DOC",
    "RUN_DOC_FORMAT",
    "TAG_PREFIX",
    "UNTAG_PREFIX",
    "RunEntry",
    "add_tag",
    "decode_run_doc",
    "entry_of",
    "read_run_doc",
    "remove_tag",
    "tags_of",
    "validate_tag",
    "write_run_doc",
]

RUN_DOC: Final = ".run.json"
RUN_DOC_FORMAT: Final = "strax_decl.run"
RUN_DOC_LIMIT: Final = 4 * 2**20
"""Largest run document read (bytes)."""
TAG_PREFIX: Final = ".tag-"
UNTAG_PREFIX: Final = ".untag-"


def validate_tag(tag: object) -> str:
    """``tag`` if it is a valid tag name (the rules of run ids), else ValueError/TypeError."""
    if not isinstance(tag, str):
        raise TypeError(f"a tag must be a str, got {type(tag).__name__} {tag!r}")
    try:
        return validate_name("run_id", tag)
    except ValueError as e:
        raise ValueError(str(e).replace("invalid run_id", "invalid tag", 1)) from None


def _doc_path(run_id: str) -> str:
    return f"{validate_name('run_id', run_id)}/{RUN_DOC}"


def _encode(doc: Mapping[str, Any]) -> bytes:
    try:
        text = json.dumps(
            {"format": RUN_DOC_FORMAT, "doc": dict(doc)}, allow_nan=False, sort_keys=True
        )
    except (TypeError, ValueError) as e:
        raise TypeError(f"a run document must be plain JSON: {e}") from None
    return text.encode()


def decode_run_doc(raw: bytes, where: str) -> dict[str, Any]:
    try:
        outer = json.loads(raw)
        if not isinstance(outer, dict) or outer.get("format") != RUN_DOC_FORMAT:
            raise ValueError(f"not a {RUN_DOC_FORMAT} record")
        doc = outer["doc"]
        if not isinstance(doc, dict):
            raise ValueError("its 'doc' is not an object")
    except (ValueError, KeyError, RecursionError) as e:
        raise StorageError(f"unreadable run document {where}: {type(e).__name__}: {e}") from None
    return doc


def write_run_doc(backend: Backend, run_id: str, doc: Mapping[str, Any]) -> bool:
    """Store the run document of ``run_id`` (plain JSON), once.

    Returns True if written, False if the very same document is there already;
    DataExistsError if another one is (a run document is never replaced or edited).
    """
    path = _doc_path(run_id)
    data = _encode(doc)
    if backend.readonly:
        raise StorageError(f"cannot define run {run_id!r}: store {backend.url} is read-only")
    if backend.supports_rename:
        tmp = f"{run_id}/{TMP_PREFIX}run-{uuid.uuid4().hex[:12]}"
        created = False
        if backend.read(path) is None:
            backend.write(tmp, [data])
            try:
                backend.rename_tree(tmp, path)  # never replaces (see Backend.rename_tree)
                created = True
            except OSError:
                created = False
            finally:
                backend.delete(tmp)
    else:
        created = backend.create_exclusive(path, data)
    if created:
        return True
    existing = read_run_doc(backend, run_id)
    if existing == json.loads(data)["doc"]:
        return False
    raise DataExistsError(
        f"run {run_id!r} already has a different run document in {backend.url} "
        f"({backend.where(path)}); run documents are written once (add tags with add_tag)"
    )


def read_run_doc(backend: Backend, run_id: str) -> dict[str, Any] | None:
    """The stored run document of ``run_id`` (without the tag records), or None."""
    path = _doc_path(run_id)
    try:
        raw = backend.read(path, limit=RUN_DOC_LIMIT)
    except BadObject as e:
        raise StorageError(str(e)) from None
    return None if raw is None else decode_run_doc(raw, backend.where(path))


def _record(tag: str) -> bytes:
    added = datetime.now(UTC).isoformat()
    return json.dumps({"tag": tag, "at": added, "by": process_identity()}).encode()


def add_tag(backend: Backend, run_id: str, tag: str, doc_tags: Iterable[str]) -> bool:
    """Add ``tag`` to ``run_id`` (``doc_tags``: the tags of its document); True if it was
    not there yet. One exclusive file per tag: concurrent additions never collide."""
    validate_name("run_id", run_id)
    validate_tag(tag)
    untag = f"{run_id}/{UNTAG_PREFIX}{tag}"
    if tag in set(doc_tags):
        if backend.read(untag) is None:
            return False
        backend.delete(untag)
        return True
    return backend.create_exclusive(f"{run_id}/{TAG_PREFIX}{tag}", _record(tag))


def remove_tag(backend: Backend, run_id: str, tag: str, doc_tags: Iterable[str]) -> bool:
    """Remove ``tag`` from ``run_id``; True if it was there."""
    validate_name("run_id", run_id)
    validate_tag(tag)
    record = f"{run_id}/{TAG_PREFIX}{tag}"
    had = backend.read(record) is not None
    if had:
        backend.delete(record)
    if tag in set(doc_tags):
        return backend.create_exclusive(f"{run_id}/{UNTAG_PREFIX}{tag}", _record(tag)) or had
    return had


@dataclass(frozen=True)
class RunEntry:
    """One run folder as one listing saw it: its document (None if it has none), its tags
    (document, plus records, minus removals), and the names of its published data sets."""

    run_id: str
    doc: dict[str, Any] | None
    tags: tuple[str, ...]
    dirnames: frozenset[str]
    error: str | None = None
    """Why the document could not be read (then ``doc`` is None)."""
    inodes: Mapping[str, int] | None = None
    """The inode of each of ``dirnames`` as the listing reported it (local stores only): what
    a completion record (``status_records``) names."""


def tags_of(doc: Mapping[str, Any] | None, names: Iterable[str]) -> tuple[str, ...]:
    """The tags of a run: its document's, plus ``.tag-`` records, minus ``.untag-`` ones."""
    raw = (doc or {}).get("tags") or []
    tags = [t for t in raw if isinstance(t, str)] if isinstance(raw, list) else []
    if not names:
        return tuple(tags)
    added, removed = [], set()
    for name in names:
        if name.startswith(TAG_PREFIX):
            added.append(name[len(TAG_PREFIX) :])
        elif name.startswith(UNTAG_PREFIX):
            removed.add(name[len(UNTAG_PREFIX) :])
    return tuple(t for t in dict.fromkeys([*tags, *sorted(added)]) if t not in removed)


def entry_of(backend: Backend, run_id: str, names: list[str]) -> RunEntry:
    """The entry of a run folder of any backend, from the names listed in it."""
    doc, error = None, None
    if RUN_DOC in names:
        try:
            doc = read_run_doc(backend, run_id)
        except (StorageError, UnsafePath) as e:
            error = str(e)
    dirnames = frozenset(n for n in names if parse_dirname(run_id, n) is not None)
    return RunEntry(run_id, doc, tags_of(doc, names), dirnames, error)
