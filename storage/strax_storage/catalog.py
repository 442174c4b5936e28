"""Finding data sets in a backend: status of a key, listing, removal, publishing, leftovers.

The rules that decide what a reader may trust live here, in one place:

- a data set is *complete* only if its group attributes (written last) say so, and they name
  the key it is stored under (a renamed or copied directory is not trusted);
- locally, a directory ``<run>/.tmp-<data_type>-<hash>-<uuid>`` is a data set being written:
  reported as ``writing`` while its writer runs, as ``failed`` once the writer is known to be
  dead (a killed process); never loaded. The same holds for in-place stores, where a data set
  being written has ``status: writing`` attributes at its final path;
- a write stopped on purpose with a final prefix worth resuming (``Saver.suspend``) is
  ``partial``: nobody's (whatever process wrote it), never loaded, resumed or cleaned up by
  the next writer that claims the key, deleted by ``remove``;
- a finished write is published by renaming its temporary directory to the final name; an
  older failed data set there is first renamed to ``.trash-...`` and then deleted. A failed
  write never replaces a complete data set. A complete one then gets its completion record
  (``status_records``), so a listing of the run folder tells it is complete;
- leftovers (temporary directories of dead writers, ``.trash-`` directories of interrupted
  removals) are deleted by the next writer that claims the key, and by ``remove``.

Whether a writer is alive: its process identity is recorded in the attributes it writes first
(``writer``); on this host its pid is checked; for a writer on another host, a live claim
(``strax_storage.claims``) on the key says it is still at work.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Collection, Sequence
from typing import Any, NamedTuple

from strax_storage.backend import Backend
from strax_storage.claims import UNREADABLE_GRACE, Claim, Claims
from strax_storage.errors import BadObject, ClaimHeld, DataNotFound, StorageError, UnsafePath
from strax_storage.info import DataSetInfo, Status, corrupted_info, info_from_group_json
from strax_storage.keys import TMP_PREFIX, TRASH_PREFIX, DataKey, parse_dirname, parse_tmp_dirname
from strax_storage.layout import ATTRS_KEY, METADATA_LIMIT, metadata_key
from strax_storage.names import validate_name
from strax_storage.process import identity_alive, is_this_process
from strax_storage.status_records import clear, mark_complete

__all__ = [
    "Claimed",
    "RunFolder",
    "claim_and_clean",
    "claim_for_writing",
    "cleanup_leftovers",
    "final_info",
    "identity",
    "info_from_group_json",
    "leftover_dirs",
    "list_folder",
    "list_infos",
    "publish",
    "remove",
    "status",
    "tmp_dirs",
    "trash_dirs",
    "write_id",
]

log = logging.getLogger(__name__)


def _ours(info: DataSetInfo) -> dict[str, Any]:
    ours = info.attrs.get(ATTRS_KEY) if isinstance(info.attrs, dict) else None
    return ours if isinstance(ours, dict) else {}


def write_id(info: DataSetInfo) -> object:
    """The random id of the write that made ``info``'s data set (None for old data sets)."""
    return _ours(info).get("write_id")


def identity(info: DataSetInfo) -> tuple[object, object]:
    """What tells one write of a data set from another: its write id and creation time."""
    return write_id(info), _ours(info).get("created")


def _failed(info: DataSetInfo, why: str) -> DataSetInfo:
    return dataclasses.replace(info, status="failed", exception=why)


def _young(backend: Backend, path: str) -> bool:
    """Created less than ``UNREADABLE_GRACE`` seconds ago (a writer may still be starting)."""
    mtime = backend.mtime(path)
    return mtime is not None and time.time() - mtime < UNREADABLE_GRACE


def _writer_alive(backend: Backend, key: DataKey, info: DataSetInfo, path: str) -> tuple[bool, str]:
    """Is the writer of this (status ``writing``) data set alive? And if not, why not."""
    writer = _ours(info).get("writer")
    alive = identity_alive(writer)
    if alive is True:
        return True, ""
    if alive is False:
        assert isinstance(writer, dict)
        return False, (
            f"its writer (pid {writer.get('pid')} on host {writer.get('host')}) stopped "
            "before finishing (killed?)"
        )
    if not writer and _young(backend, path):
        return True, ""  # just created: its writer records itself in a moment
    holder = Claims(backend).holder(key)
    if holder is not None and not holder.stale:
        return True, ""
    return False, "its writer stopped before finishing and nobody holds a claim on it"


def _checked(
    backend: Backend, key: DataKey, info: DataSetInfo, path: str, *, tmp: bool
) -> DataSetInfo:
    """Apply the trust rules the raw attributes cannot express (see module doc)."""
    ours = _ours(info)
    if ours:
        stored_as = (ours.get("run_id"), ours.get("data_type"), ours.get("lineage_hash"))
        if stored_as != (key.run_id, key.data_type, key.lineage_hash):
            return _failed(
                info,
                f"its attributes describe {'/'.join(map(str, stored_as))}, but it is stored "
                f"as {key} (moved, copied or edited by hand): not trusted",
            )
    if info.status == "writing":
        if not tmp and not backend.in_place:
            return _failed(info, "it was published without completion attributes")
        alive, why = _writer_alive(backend, key, info, path)
        if not alive:
            return _failed(info, why)
    return info


def info_at(backend: Backend, key: DataKey, path: str, *, writing: bool = False) -> DataSetInfo:
    where = backend.where(path)
    try:
        raw = backend.read(metadata_key(path), limit=METADATA_LIMIT)
    except UnsafePath as e:
        return DataSetInfo(key, "failed", exception=str(e), location=where)
    except BadObject as e:
        if writing:
            return DataSetInfo(key, "failed", exception=str(e), location=where)
        return corrupted_info(key, where, str(e))
    info = info_from_group_json(key, raw, where, writing=writing)
    return _checked(backend, key, info, path, tmp=writing)


def final_info(backend: Backend, key: DataKey) -> DataSetInfo | None:
    """Info of the data set at the key's final path, or None if nothing is there.

    Damaged group metadata there (missing, unreadable, oversized, not a file) gives a
    ``failed`` info whose ``corrupted`` names the file: a published data set was damaged.
    """
    where = backend.where(key.path)
    raw: bytes | None = None
    for _ in range(2):
        try:
            raw = backend.read(metadata_key(key.path), limit=METADATA_LIMIT)
        except UnsafePath as e:
            return DataSetInfo(key, "failed", exception=str(e), location=where)
        except BadObject as e:
            return corrupted_info(key, where, str(e))
        if raw is not None:
            break
        if not backend.exists_tree(key.path):
            return None
        # read again: the data set may have been published (or started in place) between
        # the read and the look; only then is a missing zarr.json damage
    if raw is None and not _children(backend, key.path):
        # a stray file or an empty directory: never a published data set, so not damage
        why = "the group metadata (zarr.json) is missing: not a data set"
        return DataSetInfo(key, "failed", exception=why, location=where)
    info = info_from_group_json(key, raw, where)
    return _checked(backend, key, info, key.path, tmp=False)


def _children(backend: Backend, prefix: str) -> list[str]:
    try:
        return backend.children(prefix)
    except UnsafePath as e:
        log.warning("skipping %s", e)
        return []


class RunFolder(NamedTuple):
    """The entry names of one run's folder, from one listing: a snapshot that the callers of
    one request share (resolving, then claiming), so the folder is listed once."""

    run_id: str
    names: tuple[str, ...]


def list_folder(backend: Backend, run_id: str) -> RunFolder:
    validate_name("run_id", run_id)
    return RunFolder(run_id, tuple(sorted(_children(backend, run_id))))


def _names(backend: Backend, run_id: str, folder: RunFolder | None) -> Sequence[str]:
    """The names in ``run_id``'s folder: ``folder``'s if it is that run's, else listed now."""
    if folder is not None and folder.run_id == run_id:
        return folder.names
    return _children(backend, run_id)


def tmp_dirs(backend: Backend, key: DataKey, folder: RunFolder | None = None) -> list[str]:
    """Paths of local temporary directories holding (partial) writes of ``key`` (``folder``:
    the run folder's listing the caller has, so it is not listed again)."""
    return [path for _, path in leftover_dirs(backend, [key], folder)[1]]


def parse_trash_dirname(run_id: str, name: str) -> DataKey | None:
    """The key whose removal left the ``.trash-`` directory ``name``, or None."""
    if not name.startswith(TRASH_PREFIX):
        return None
    return parse_tmp_dirname(run_id, TMP_PREFIX + name[len(TRASH_PREFIX) :])


def trash_dirs(backend: Backend, key: DataKey) -> list[str]:
    """Paths of ``.trash-`` directories of ``key`` (interrupted removals or replacements)."""
    return [path for _, path in leftover_dirs(backend, [key])[0]]


def leftover_dirs(
    backend: Backend, keys: Collection[DataKey], folder: RunFolder | None = None
) -> tuple[list[tuple[DataKey, str]], list[tuple[DataKey, str]]]:
    """``(key, path)`` of the ``.trash-`` and of the temporary directories of ``keys``.

    One listing of each run folder, however many keys of that run are asked about (none for
    the run of ``folder``, whose names are used instead).
    """
    trash: list[tuple[DataKey, str]] = []
    tmp: list[tuple[DataKey, str]] = []
    if backend.in_place:
        return trash, tmp
    wanted = set(keys)
    for run_id in sorted({k.run_id for k in wanted}):
        for name in _names(backend, run_id, folder):
            of_trash = parse_trash_dirname(run_id, name)
            if of_trash in wanted:
                trash.append((of_trash, f"{run_id}/{name}"))
                continue
            of_tmp = parse_tmp_dirname(run_id, name)
            if of_tmp in wanted:
                tmp.append((of_tmp, f"{run_id}/{name}"))
    return trash, tmp


def tmp_infos(backend: Backend, key: DataKey, folder: RunFolder | None = None) -> list[DataSetInfo]:
    return [info_at(backend, key, path, writing=True) for path in tmp_dirs(backend, key, folder)]


def status(backend: Backend, key: DataKey) -> Status:
    """``complete`` beats ``writing`` (a live writer at work) beats ``partial`` beats ``failed``."""
    info = final_info(backend, key)
    if info is not None and info.status == "complete":
        return "complete"
    if info is not None and info.status == "writing":
        return "writing"
    states = {i.status for i in tmp_infos(backend, key)}
    if "writing" in states:
        return "writing"
    if (info is not None and info.status == "partial") or "partial" in states:
        return "partial"  # a stopped writer's final prefix, kept to resume
    if info is not None:
        return info.status
    return "failed" if states else "absent"


def _runs(backend: Backend) -> list[str]:
    runs = []
    for name in _children(backend, ""):
        try:
            validate_name("run_id", name)
        except ValueError:
            continue
        runs.append(name)
    return sorted(runs)


def list_infos(
    backend: Backend,
    run_id: str | None = None,
    data_type: str | None = None,
    folder: RunFolder | None = None,
) -> list[DataSetInfo]:
    """Every data set (any status), sorted by key; local temporary dirs show as ``writing``
    (or ``failed`` once their writer is dead). ``folder``: that run's names, not listed again."""
    if run_id is not None:
        validate_name("run_id", run_id)
    if data_type is not None:
        validate_name("data_type", data_type)
    out = []
    for run in [run_id] if run_id is not None else _runs(backend):
        for name in sorted(_names(backend, run, folder)):
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


def _delete_quietly(backend: Backend, path: str, key: DataKey | None = None) -> bool:
    """Delete a leftover; with ``key``, first move it aside under a ``.trash-`` name (where
    renames exist), so it vanishes from its own name at once: a paused writer of it that
    resumes finds no half-deleted directory to write into (its writes and its publish fail),
    and a deletion cut short leaves trash, which the next cleanup removes."""
    try:
        if key is not None and backend.supports_rename:
            trash = _trash_path(key)
            backend.rename_tree(path, trash)
            path = trash
        backend.delete_tree(path)
    except (OSError, StorageError) as e:
        log.warning("could not delete the leftover %s: %s", backend.where(path), e)
        return False
    return True


def cleanup_leftovers(
    backend: Backend,
    keys: Collection[DataKey],
    *,
    claimed: bool,
    folder: RunFolder | None = None,
    keep: Collection[str] = (),
) -> list[str]:
    """Delete leftovers of ``keys``: ``.trash-`` dirs and temporary dirs of dead writers.

    ``claimed``: the caller holds the claims on ``keys``, so a temporary directory whose
    writer is not this process (or is dead) belongs to nobody. ``keep``: paths of dead
    writers' work that the caller resumes. Returns the paths deleted.
    """
    trash, tmp = leftover_dirs(backend, keys, folder)
    done = [p for _, p in trash if _delete_quietly(backend, p)]
    for key, path in tmp:
        if path in keep:
            continue
        info = info_at(backend, key, path, writing=True)
        if claimed and info.status != "partial":  # a partial is nobody's, in any process
            writer = _ours(info).get("writer")
            if writer and is_this_process(writer):
                continue  # another thread of this process, writing without a claim
            if not writer and _young(backend, path):
                continue
        elif info.status == "writing":
            continue
        if _delete_quietly(backend, path, key):
            done.append(path)
    if done:
        log.info("deleted leftovers of %s: %s", ", ".join(map(str, keys)), ", ".join(done))
    return done


class Claimed(NamedTuple):
    """What ``claim_and_clean`` got: the claims taken, the first key a live writer holds
    (None: every key was claimed), and the leftover paths it deleted."""

    claims: list[Claim]
    refused: DataKey | None
    cleaned: list[str]


def claim_and_clean(
    claims: Claims,
    keys: Sequence[DataKey],
    stale_after: float | None = None,
    folder: RunFolder | None = None,
    keep: Collection[str] = (),
) -> Claimed:
    """Claim ``keys`` in order, then delete the leftovers of their dead writers (the claims
    make them nobody's) with one listing per run folder.

    Stops at the first key a live writer holds (nothing is cleaned then; the caller keeps or
    releases the claims taken). If the cleanup fails, the claims are released before the
    error propagates. ``folder``: a listing of the run taken earlier in the same request;
    leftovers that appeared since are left for a later cleanup (they are never complete).
    """
    held: list[Claim] = []
    try:
        for key in keys:
            claim = claims.claim(key, stale_after)
            if claim is None:
                return Claimed(held, key, [])
            held.append(claim)
        cleaned = cleanup_leftovers(claims.backend, keys, claimed=True, folder=folder, keep=keep)
        return Claimed(held, None, cleaned)
    except BaseException:
        for claim in held:
            claim.release()
        raise


def claim_for_writing(claims: Claims, key: DataKey, keep: Collection[str] = ()) -> Claim | None:
    """The writer's claim on ``key``: None if this process already holds it (e.g. a Context
    that claimed the keys of its plan); ClaimHeld if another live process does. ``keep``: as
    for ``cleanup_leftovers`` (the dead writer's work a resuming writer continues)."""
    for _ in range(3):
        holder = claims.holder(key)
        if holder is not None and not holder.stale:
            if holder.ours:
                return None
            raise ClaimHeld(
                f"cannot write data set {key}: it is claimed by {holder.describe()} "
                f"({holder.location})",
                key,
                holder,
            )
        claimed = claim_and_clean(claims, [key], keep=keep)
        if claimed.claims:
            return claimed.claims[0]
    raise ClaimHeld(f"cannot write data set {key}: its claim keeps changing hands", key, None)


def remove(backend: Backend, key: DataKey) -> None:
    """Delete the data set at the key's final path (any status) and leftovers of dead writers.

    DataNotFound if there is nothing, or only a live writer's data set in progress (which is
    left alone).
    """
    leftovers = cleanup_leftovers(backend, [key], claimed=False)
    if not backend.exists_tree(key.path):
        if leftovers:
            return
        live = [i for i in tmp_infos(backend, key) if i.status == "writing"]
        if live:
            raise DataNotFound(
                f"no data set {key} in {backend.url} to remove: one is being written by a live "
                f"writer ({live[0].location}) and is left alone"
            )
        raise DataNotFound(f"no data set {key} in {backend.url}")
    clear(backend, key)  # its completion record (``status_records``)
    if backend.supports_rename:
        # Rename first: a reader never sees a half-deleted data set under the final name.
        trash = _trash_path(key)
        try:
            backend.rename_tree(key.path, trash)
        except FileNotFoundError:
            raise DataNotFound(f"no data set {key} in {backend.url}") from None
        backend.delete_tree(trash)
    else:
        backend.delete_tree(key.path)


def publish(
    backend: Backend,
    key: DataKey,
    tmp: str,
    *,
    complete: bool,
    replace: tuple[object, object] | None = None,
) -> bool:
    """Rename the finished temporary directory ``tmp`` to the key's final path.

    Never replaces a complete data set, with one exception: ``replace``, the ``identity`` of
    the complete data set the writer saw when it started and was asked to overwrite. Returns
    False (and deletes ``tmp``) if a complete data set is there and is kept: then another
    writer published the same lineage first. The rename itself never clobbers (see
    ``Backend.rename_tree``), so a writer that checks, pauses, then renames still cannot
    replace a copy published meanwhile.
    """
    for _ in range(10):
        existing = final_info(backend, key)
        if existing is None:
            clear(backend, key, tmp)  # a stale record of a reused inode must not vouch
            try:
                backend.rename_tree(tmp, key.path)
            except OSError:
                continue  # someone published meanwhile; look again
            if complete:
                mark_complete(backend, key)
            return True
        if existing.status == "complete" and not (
            complete and replace is not None and identity(existing) == replace
        ):
            backend.delete_tree(tmp)
            return False
        trash = _trash_path(key)
        clear(backend, key)
        try:
            backend.rename_tree(key.path, trash)
        except FileNotFoundError:
            continue
        moved = info_at(backend, key, trash)
        if moved.status == "complete" and not (
            complete and replace is not None and identity(moved) == replace
        ):
            # another writer published between our look and the rename: put it back
            try:
                backend.rename_tree(trash, key.path)
            except OSError:
                log.error("a complete data set %s was moved aside to %s", key, trash)
                raise
            mark_complete(backend, key)
            backend.delete_tree(tmp)
            return False
        clear(backend, key, tmp)
        try:
            backend.rename_tree(tmp, key.path)
        except OSError:
            backend.delete_tree(trash)
            continue  # someone published meanwhile; look again
        backend.delete_tree(trash)
        if complete:
            mark_complete(backend, key)
        return True
    raise StorageError(f"could not publish {key} in {backend.url}: the final path keeps changing")
