"""Removing a whole run: its data sets, its run document and tag records, and its folder.

``Store.remove_run`` calls ``remove_run``. Each data set goes as ``Store.remove`` removes one
(under its claim, so never under a live writer). A run some live writer is working on (a data
set being written, or a claim on one about to be) is refused before anything is removed,
naming the data sets and their writers; with ``skip_writing`` those are kept, and so are the
run document, the tags and the folder, since the run still has data. The folder itself goes
last, once nothing but the run's Zarr group document and dead writers' claims is left in it.
(An in-memory store keeps its claims in the process, not in the folder: there a claim on a
data set whose writer has not written yet is not seen.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from strax_storage.catalog import list_infos
from strax_storage.claim_tables import CLAIM_PREFIX
from strax_storage.errors import ClaimHeld, DataNotFound
from strax_storage.keys import DataKey, parse_dirname
from strax_storage.layout import METADATA_FILE
from strax_storage.names import validate_name
from strax_storage.run_docs import RUN_DOC, TAG_PREFIX, UNTAG_PREFIX

if TYPE_CHECKING:
    from strax_storage.store import Store

__all__ = ["RunRemoval", "remove_run"]


@dataclass(frozen=True)
class RunRemoval:
    """What ``Store.remove_run`` did: the data sets removed, those kept because a live
    writer holds them (with who), the run's document and tag records removed, and whether
    the run's folder is gone."""

    run_id: str
    removed: tuple[DataKey, ...] = ()
    skipped: dict[DataKey, str] = field(default_factory=dict)
    documents: tuple[str, ...] = ()
    folder_removed: bool = False


def _is_document(name: str) -> bool:
    return name == RUN_DOC or name.startswith((TAG_PREFIX, UNTAG_PREFIX))


def busy_keys(
    store: Store, run_id: str, names: tuple[str, ...], stored: set[DataKey] | None = None
) -> dict[DataKey, str]:
    """The run's data sets a live writer holds (claimed, or being written), with who;
    ``stored``: the run's data sets if just listed (else they are listed here)."""
    keys = set(stored) if stored is not None else {i.key for i in list_infos(store.backend, run_id)}
    keys |= {
        k
        for n in names
        if n.startswith(CLAIM_PREFIX)
        and (k := parse_dirname(run_id, n[len(CLAIM_PREFIX) :])) is not None
    }
    busy = {}
    for key in sorted(keys):
        holder = store.claims.holder(key)
        if holder is not None and not holder.stale:
            busy[key] = holder.describe()
    return busy


def remove_run(store: Store, run_id: str, *, skip_writing: bool = False) -> RunRemoval:
    """Remove ``run_id`` from ``store`` (see the module doc); DataNotFound if it has nothing."""
    validate_name("run_id", run_id)
    backend = store.backend
    names = store.run_folder(run_id).names
    if not names:
        raise DataNotFound(f"no run {run_id!r} in {store.url}")
    stored = {i.key for i in list_infos(backend, run_id)}
    busy = busy_keys(store, run_id, names, stored)
    if busy and not skip_writing:
        first = next(iter(busy))
        listed = "; ".join(f"{k} by {who}" for k, who in busy.items())
        raise ClaimHeld(
            f"run {run_id!r} in {store.url} is being written ({listed}); nothing removed",
            first,
            store.claims.holder(first),
        )
    removed, skipped = [], dict(busy)
    for key in sorted(stored - set(busy)):
        try:
            store.remove(key)
        except ClaimHeld as e:  # a writer started since the check: keep its data set
            skipped[key] = e.holder.describe() if e.holder is not None else "another writer"
            continue
        except DataNotFound:  # removed meanwhile by someone else
            continue
        removed.append(key)
    if skipped:
        return RunRemoval(run_id, tuple(removed), skipped)
    documents = tuple(n for n in names if _is_document(n))
    for name in documents:
        backend.delete(f"{run_id}/{name}")
    left = [n for n in backend.children(run_id) if n != METADATA_FILE]
    if busy_keys(store, run_id, tuple(left)) or any(not n.startswith(CLAIM_PREFIX) for n in left):
        return RunRemoval(run_id, tuple(removed), {}, documents)
    backend.delete_tree(run_id)  # the run group's zarr.json and dead writers' claim files
    return RunRemoval(run_id, tuple(removed), {}, documents, folder_removed=True)
