"""Checking stored data: the part of ``Context`` that verifies what the store holds.

A mixin of :class:`~strax_decl.context.Context` (kept apart so each module has one job). The
work is done by :mod:`strax_decl.verify` (core layer), which needs only the context's
registry, stores and the run's lineages and validated options.
"""

from __future__ import annotations

from strax_decl.registry import Registry
from strax_decl.session import Session
from strax_decl.verify import VerifyReport, verify
from strax_storage import Store

__all__ = ["Checking"]


class Checking:
    """``verify``: recompute stored data from its stored inputs and compare."""

    registry: Registry
    stores: list[Store]
    _session: Session

    def verify(
        self,
        run_id: str,
        data_type: str,
        *,
        sample: int | None = None,
        rechunk: bool = True,
        seed: int = 0,
    ) -> VerifyReport:
        """Recompute the stored ``data_type`` of ``run_id`` from its stored inputs (in
        memory, saving nothing) and compare it with what is stored, field by field: once
        with the inputs in their stored chunks, and (``rechunk``) once cut at other times
        drawn from ``seed``.

        Returns a :class:`~strax_decl.verify.VerifyReport` (``.ok``, ``.problems``, readable
        ``str()``) naming plugin, run, chunk ``[t0, t1)`` and field of each problem:
        corruption, an unversioned code change, rows that differ for another reason, or a
        chunk-dependent plugin. ``sample``: compare only this many stored chunks (the first,
        the last, seeded random others; None: all); the data type is recomputed whole either
        way (see :mod:`strax_decl.verify`). DataNotFound if no complete data set of
        ``data_type`` is stored under this context's lineage.
        """
        # the run's own lineages and options (per-run options resolved for it)
        lineages, options, _ = self._session.configured(run_id)
        return verify(
            self.registry,
            lineages,
            options,
            self.stores,
            run_id,
            data_type,
            sample=sample,
            rechunk=rechunk,
            seed=seed,
        )
