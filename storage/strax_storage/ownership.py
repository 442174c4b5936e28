"""Whether a writer may still publish: its claim, and its temporary directory, are its own.

A writer can be paused for longer than its claim's stale limit (a suspended batch job, a
closed laptop). Another writer then breaks the claim, deletes the paused one's temporary
directory and publishes a good copy. When the paused writer resumes it must not re-create its
directory (``Backend.write(within=...)`` refuses) nor publish: before publishing, the saver
asks ``WriteGuard.check``, which raises WriteLost unless

- the claim is still this writer's (the claim it took, or, for a saver whose process already
  held the claim, no other process holds it now);
- the temporary directory still holds this write's attributes (its random ``write_id``) and,
  at the end, every chunk file the writer wrote.

Between the last check and the rename a pause is still possible; the rename never replaces a
complete data set (``catalog.publish``), so the good copy survives even then.
"""

from __future__ import annotations

import logging

from strax_storage import catalog
from strax_storage.backend import Backend
from strax_storage.claims import Claim, Claims
from strax_storage.dtypes import FieldSpec
from strax_storage.errors import WriteLost
from strax_storage.keys import DataKey
from strax_storage.layout import metadata_key

__all__ = ["WriteGuard"]

log = logging.getLogger(__name__)


class WriteGuard:
    """The checks of one write (see module doc). ``path``: where it writes; ``within``: its
    temporary directory once created (None: in place, or not created yet)."""

    def __init__(
        self,
        backend: Backend,
        key: DataKey,
        path: str,
        write_id: str,
        claims: Claims | None,
        claim: Claim | None,
    ) -> None:
        self.backend = backend
        self.key = key
        self.path = path
        self.write_id = write_id
        self.claims = claims
        self.claim = claim
        self.within: str | None = None

    def lost(self, e: WriteLost) -> WriteLost:
        """``e`` naming this data set (the backend knows only the path)."""
        if str(self.key) in str(e):
            return e
        return WriteLost(
            f"data set {self.key} in {self.backend.url}: {e}; this write is dropped and "
            "nothing is published"
        )

    def check(self, specs: list[FieldSpec] | None = None, n_zarr: int = 0) -> None:
        """WriteLost unless the claim and the directory are still this write's; with
        ``specs``, also that every field has the ``n_zarr`` chunk files written."""
        why = self.claim_problem()
        if why is None and self.within is not None:
            why = self.directory_problem(specs, n_zarr)
        if why is not None:
            raise WriteLost(
                f"data set {self.key} in {self.backend.url}: {why}; this write is dropped "
                "and nothing is published"
            )

    def claim_problem(self) -> str | None:
        if self.claim is not None:
            return None if self.claim.held() else "this writer's claim was broken (claim lost)"
        if self.claims is None:
            return None  # check_claim=False: the caller holds the claim elsewhere
        holder = self.claims.holder(self.key)
        if holder is not None and not holder.ours:
            return f"another writer holds the claim now ({holder.describe()}): claim lost"
        # None: the claim of this process was released (e.g. by another saver of the same
        # key in this process, which published); publishing never replaces that copy
        return None

    def directory_problem(self, specs: list[FieldSpec] | None, n_zarr: int) -> str | None:
        where = self.backend.where(self.path)
        raw = self.backend.read(metadata_key(self.path))
        if raw is None:
            return f"the temporary directory {where} was removed: claim lost"
        info = catalog.info_from_group_json(self.key, raw, where, writing=True)
        if catalog.write_id(info) != self.write_id:
            return f"the temporary directory {where} holds another write's attributes"
        for spec in specs or ():
            got = len(self.backend.children(f"{self.path}/{spec.name}/c"))
            if got != n_zarr:
                return (
                    f"field {spec.name!r} in the temporary directory {where} has {got} "
                    f"chunk files, this writer wrote {n_zarr}: changed behind it"
                )
        return None

    def drop(self) -> None:
        """After WriteLost: delete what is left of this write if the directory is still ours
        (never what another writer made); nothing is recorded or published."""
        if self.within is None:
            return  # in place: the final path belongs to whoever holds the claim now
        try:
            if self.directory_problem(None, 0) is None:
                self.backend.delete_tree(self.path)
        except Exception:
            log.exception("could not delete the dropped write of data set %s", self.key)
