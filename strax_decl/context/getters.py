"""Getting data: the part of ``Context`` that streams, gets and makes data sets.

A mixin of :class:`~strax_decl.context.Context` (kept apart so each module has one job): it
turns the user's arguments into a ``session.Request`` and hands it to the context's session.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal, cast, overload

import numpy as np

from strax_decl.chunk import Chunk
from strax_decl.context.incomplete import incomplete_chunks
from strax_decl.fuzzy import check_fuzzy_for
from strax_decl.plugin import Submit
from strax_decl.registry import Registry
from strax_decl.request_args import (
    check_processor,
    check_run_id,
    check_targets,
    check_time_range,
    forbidden_in,
    row_time_range,
    seconds_to_range,
)
from strax_decl.resolver import Plan
from strax_decl.rows import select, sub_dtype, tag_runs, trim
from strax_decl.run_meta import is_superrun
from strax_decl.runs import run_list
from strax_decl.selection import Selection, make_mask, project
from strax_decl.session import CorruptedAfterRows, Request, Session

if TYPE_CHECKING:  # pragma: no cover - typing only; Dask is an optional extra
    import dask.array as da
    import dask.dataframe as dd
    from distributed import Client

    from strax_decl.context.context import Context
    from strax_decl.runs import MultiRunResult

__all__ = ["Getters", "Processor", "RunIds", "Targets", "as_list"]

RunIds = list[str] | tuple[str, ...]
Targets = str | Sequence[str]
Processor = Literal["threaded", "serial"]


_CONCATENATING: ContextVar[bool] = ContextVar("concatenating", default=False)
"""Set by ``get_array`` around its ``iter_chunks`` call: the request it makes concatenates
every chunk (``Request.concatenated``), so no chunk boundary of a loaded target is seen."""


class Getters:
    """``iter_chunks``, ``get_array``, ``get_df``, ``make`` and the Dask views."""

    registry: Registry
    _session: Session
    fuzzy_for: tuple[str, ...]

    def _context(self) -> Context:
        return cast("Context", self)  # a Getters is always a Context (its only user)

    def iter_chunks(
        self,
        run_id: str,
        targets: Targets,
        *,
        save: Sequence[str] = (),
        time_range: tuple[int, int] | None = None,
        selection: Selection | None = None,
        keep_columns: Sequence[str] | None = None,
        drop_columns: Sequence[str] | None = None,
        processor: Processor | None = None,
        progress: bool | None = None,
        seconds_range: tuple[float, float] | None = None,
        time_within: Any = None,
        forbid_creation_of: Sequence[str] = (),
        allow_incomplete: bool = False,
        fuzzy_for: Sequence[str] = (),
    ) -> Iterator[Chunk]:
        """Stream the chunks of ``targets`` (same-kind targets are merged field-wise).

        ``time_range``: ``(t0, t1)`` in ns; only rows fully inside it.
        ``seconds_range``: ``(s0, s1)`` in seconds since the run's start: the ``start`` of
        its run document, or without one the start of the stored data the request loads
        (its first chunk); refused if neither is known (data computed from scratch).
        ``time_within``: a row (of any data type): only rows inside ``[time, endtime)``.
        ``forbid_creation_of``: data types that must not be computed (e.g. raw records):
        CreationForbidden, before anything runs, if the plan would compute one of them.
        ``selection``: only the rows for which it holds: a string such as
        ``"(area > 100) & (width < 500)"``, a list of strings (all must hold) or a callable
        ``f(rows) -> boolean mask`` (see ``strax_decl.selection``).
        ``keep_columns`` / ``drop_columns``: only these fields / all but these.
        None of these changes what is stored: whole data types are, as always. Stopping
        early (``break``, ``close()``, dropping the iterator) stops the pipeline and discards
        the data sets it had not finished (absent, not failed); a ``time_range`` on data not
        stored yet stops that way once the range is covered.
        ``progress``: show a progress bar on stderr (None: only if stderr is a terminal).
        ``allow_incomplete``: read stored data only, never compute: a complete data set, or
        else the final prefix (up to its watermark) of one being written (docs/live.md).
        ``fuzzy_for``: plugins (names or data types) whose version and options may differ
        in the data loaded when the exact lineage is not stored (added to the context's
        ``fuzzy_for``); loud in the plan, and nothing computed from such data is saved
        (``strax_decl.fuzzy``, docs/processing.md).

        With ``on_corrupted="recompute"``, corruption found before the first chunk is
        yielded is recovered transparently; found later, the data set is marked failed and
        DataCorrupted is raised (rows already yielded cannot be taken back): iterating again
        recomputes it.
        """
        check_run_id(run_id)
        target_list = as_list(targets)
        check_targets(self.registry.providers, target_list)
        check_processor(processor)
        ranges = [r for r in (time_range, seconds_range, time_within) if r is not None]
        if len(ranges) > 1:
            raise ValueError("give at most one of time_range, seconds_range and time_within")
        time_range = check_time_range(time_range)
        if time_within is not None:
            time_range = row_time_range(time_within)
        kinds = {self.registry.kind(t) for t in target_list}
        if len(kinds) > 1:
            raise ValueError(
                f"targets {target_list} are of different kinds {sorted(kinds)}; request them "
                "separately (rows of different kinds are different things)"
            )
        if allow_incomplete:
            if len(target_list) != 1 or seconds_range is not None or save:
                raise ValueError(
                    "allow_incomplete=True reads one stored data type (no save=, no seconds_range)"
                )
            ctx = self._context()
            key = ctx.key_for(run_id, target_list[0])
            chunks = incomplete_chunks(ctx.stores, key, time_range)
            if time_range is not None:
                chunks = trim(chunks, time_range)
            dtype = self._dtype(target_list)
            mask = None if selection is None else make_mask(selection, dtype, run_id)
            fields = project(dtype, keep_columns, drop_columns, run_id)
            return select(chunks, mask, fields) if mask is not None or fields else chunks
        request = Request(
            run_id,
            tuple(target_list),
            tuple(save),
            processor=processor,
            progress=progress,
            fuzzy_for=self._fuzzy(fuzzy_for),
            concatenated=_CONCATENATING.get(),
        )
        # Errors in the request surface here, not at the first chunk; the same plan runs.
        plan = self._session.resolve(request)
        if forbid_creation_of:
            forbidden_in(plan, forbid_creation_of, self.registry.providers)
        if seconds_range is not None:
            time_range = self._seconds_range(plan, seconds_range)
        request = dataclasses.replace(request, time_range=time_range)
        what = f"{'+'.join(target_list)} of run {run_id!r}"
        dtype = self._dtype(target_list)
        mask = None if selection is None else make_mask(selection, dtype, what)
        fields = project(dtype, keep_columns, drop_columns, what)
        chunks = self._session.run(request, plan)
        if time_range is not None:
            chunks = trim(chunks, time_range)
        if mask is not None or fields is not None:
            chunks = select(chunks, mask, fields)
        return chunks

    def get_array(
        self,
        run_id: str | RunIds,
        targets: Targets,
        *,
        save: Sequence[str] = (),
        time_range: tuple[int, int] | None = None,
        selection: Selection | None = None,
        keep_columns: Sequence[str] | None = None,
        drop_columns: Sequence[str] | None = None,
        processor: Processor | None = None,
        progress: bool | None = None,
        seconds_range: tuple[float, float] | None = None,
        time_within: Any = None,
        forbid_creation_of: Sequence[str] = (),
        ignore_errors: bool = False,
        allow_incomplete: bool = False,
        fuzzy_for: Sequence[str] = (),
    ) -> np.ndarray:
        """All rows of ``targets`` in ``run_id`` as one numpy structured array.

        The keywords are ``iter_chunks``'s. Several runs (a list or tuple of run ids): their
        rows one run after the other, in the order given, with a ``run_id`` field added (as
        strax does; ``drop_columns=["run_id"]`` leaves it out). Up to ``max_workers`` runs
        are got at a time in worker processes (``max_workers=1``: one after another; see
        docs/runs.md); an error gets a note naming the run it came from. Sets are refused.
        ``ignore_errors`` (several runs): leave out, with a warning, the runs that fail.
        A list with superruns is got here, one run after another, each row tagged with the
        run id asked for (``superruns.get_runs``).
        """
        options: dict[str, Any] = {
            "save": save,
            "time_range": time_range,
            "selection": selection,
            "keep_columns": keep_columns,
            "drop_columns": drop_columns,
            "processor": processor,
            "progress": progress,
            "seconds_range": seconds_range,
            "time_within": time_within,
            "forbid_creation_of": forbid_creation_of,
            "allow_incomplete": allow_incomplete,
            "fuzzy_for": fuzzy_for,
        }
        if not isinstance(run_id, str):
            for run in run_id if isinstance(run_id, list | tuple) else [run_id]:
                check_run_id(run)
            runs = run_list(run_id)
            if any(is_superrun(r) for r in runs):  # rows tagged with the run id asked for
                from strax_decl.context import superruns

                return superruns.get_runs(
                    self._context(), runs, as_list(targets), ignore_errors, **options
                )
            return self._get_runs(runs, targets, ignore_errors, **options)
        for attempt in range(2):
            concatenating = _CONCATENATING.set(True)  # this call's requests only
            try:
                chunks = self.iter_chunks(run_id, targets, **options)
            finally:
                _CONCATENATING.reset(concatenating)
            try:
                parts = [c.data for c in chunks]
                break
            except CorruptedAfterRows:
                if attempt:  # the recomputed data set is corrupted too: give up
                    raise
                # no rows were handed out yet: ask again, which recomputes the data set
            finally:
                # At once, also on Ctrl-C: the traceback (kept by a notebook) would keep the
                # stream, and so its pipeline, alive.
                _close(chunks)
        if parts:
            return np.concatenate(parts) if len(parts) > 1 else parts[0]
        dtype = self._dtype(as_list(targets))
        fields = project(dtype, keep_columns, drop_columns, f"{targets} of run {run_id!r}")
        return np.zeros(0, dtype=dtype if fields is None else sub_dtype(dtype, fields))

    def _get_runs(
        self, runs: list[str], targets: Targets, ignore_errors: bool = False, **kwargs: Any
    ) -> np.ndarray:
        """``get_array`` of several runs, tagged with a ``run_id`` field (a ``Context`` gets
        them several at a time, with ``ignore_errors``: ``context/many.py``)."""
        target_list = as_list(targets)
        keep, drop = kwargs.pop("keep_columns", None), kwargs.pop("drop_columns", None)

        def get(run: str, keep: list[str] | None, drop: list[str] | None) -> np.ndarray:
            return self.get_array(run, target_list, keep_columns=keep, drop_columns=drop, **kwargs)

        return tag_runs(runs, target_list, self._dtype(target_list), get, keep, drop)

    def _seconds_range(self, plan: Plan, seconds_range: Any) -> tuple[int, int]:
        """``seconds_range`` as ns: from the run document's start, else from the start of
        the stored data ``plan`` loads (the run's first stored chunk)."""
        for store in self._session.stores:
            doc = store.run_doc(plan.run_id)
            start = None if doc is None else doc.get("start")
            if isinstance(start, int):
                return seconds_to_range(seconds_range, start, "")
        loaded = [s.info.start for s in plan.steps.values() if s.info and s.info.start is not None]
        why = (
            f"run {plan.run_id!r} has no run document with a start, and "
            f"{'+'.join(plan.targets)} would be computed from scratch"
        )
        return seconds_to_range(seconds_range, min(loaded) if loaded else None, why)

    def _fuzzy(self, fuzzy_for: Sequence[str] = ()) -> tuple[str, ...]:
        """The plugins a request may load fuzzily: the context's and the getter's."""
        names = check_fuzzy_for(self.registry, fuzzy_for) if fuzzy_for else ()
        return tuple(sorted({*self.fuzzy_for, *names}))

    def _dtype(self, target_list: list[str]) -> np.dtype:
        """The dtype of the rows of ``target_list`` (same-kind targets merged)."""
        from strax_decl.chunk import merged_dtype

        return merged_dtype(tuple(self.registry.dtype(t) for t in target_list))

    def get_df(self, run_id: str | RunIds, targets: Targets, **kwargs: Any) -> Any:
        """``get_array`` as a pandas DataFrame (sub-array fields become lists per row)."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - pandas is an optional extra
            raise ImportError("get_df needs pandas: pip install 'strax-decl[pandas]'") from e
        arr = self.get_array(run_id, targets, **kwargs)
        columns: dict[str, Any] = {}
        for name in arr.dtype.names or ():
            col = arr[name]
            columns[name] = list(col) if col.ndim > 1 else col
        return pd.DataFrame(columns)

    @overload
    def make(
        self,
        run_id: str,
        targets: Targets,
        *,
        save: Sequence[str] = (),
        processor: Processor | None = None,
        progress: bool | None = None,
        client: None = None,
        parallel_on_client: bool = False,
        submit: Submit | None = None,
        forbid_creation_of: Sequence[str] = (),
    ) -> None: ...

    @overload
    def make(
        self,
        run_id: str | RunIds,
        targets: Targets,
        *,
        save: Sequence[str] = (),
        processor: Processor | None = None,
        progress: bool | None = None,
        client: Client | str,
        parallel_on_client: bool = False,
        submit: None = None,
        forbid_creation_of: Sequence[str] = (),
    ) -> MultiRunResult: ...

    @overload
    def make(
        self,
        run_id: RunIds,
        targets: Targets,
        *,
        save: Sequence[str] = (),
        processor: Processor | None = None,
        progress: bool | None = None,
        client: Client | str | None = None,
        parallel_on_client: bool = False,
        submit: None = None,
        forbid_creation_of: Sequence[str] = (),
    ) -> MultiRunResult: ...

    def make(
        self,
        run_id: str | RunIds,
        targets: Targets,
        *,
        save: Sequence[str] = (),
        processor: Processor | None = None,
        progress: bool | None = None,
        client: Client | str | None = None,
        parallel_on_client: bool = False,
        submit: Submit | None = None,
        forbid_creation_of: Sequence[str] = (),
    ) -> MultiRunResult | None:
        """Compute and store ``targets`` (and what they need).

        One run (a string, no ``client``): returns nothing, raises what went wrong.

        Several runs (a list or tuple of run ids) or a ``client`` (a ``distributed.Client`` or
        a scheduler address): every run is made - one Dask task per run on the cluster with a
        client, else here (up to ``max_workers`` runs at a time in worker processes, see
        docs/runs.md) - and a :class:`MultiRunResult` is returned
        instead of raising: ``.succeeded``, ``.failed`` (run id -> error), ``raise_if_failed()``.
        A failing run does not stop the others. With a client the store must be visible to
        every worker (a shared path or an object-store URL) and the plugins importable there.

        ``parallel_on_client``: ``parallel`` plugins submit their chunk computations to the
        cluster too, instead of a pool on the run's worker.
        ``submit``: where ``parallel`` plugins' chunk computations go (a callable like
        ``Executor.submit``; default a pool of ``max_workers``); threaded processor only.
        ``progress``: show a progress bar (one line per finished run for several runs) on
        stderr (None: only if stderr is a terminal).
        ``forbid_creation_of``: as for ``iter_chunks`` (one run made here).
        """
        check_processor(processor)
        if forbid_creation_of and (client is not None or not isinstance(run_id, str)):
            raise ValueError("forbid_creation_of= applies to one run made here")
        if client is not None or not isinstance(run_id, str):
            if submit is not None:
                raise ValueError("submit= applies to one run made here, not to several runs")
            runs = run_list(run_id)
            if client is None and not parallel_on_client:  # here: context/many.py
                return self._make_runs(
                    runs, as_list(targets), save=save, processor=processor, progress=progress
                )
            from strax_decl.cluster import make_runs

            return make_runs(
                self._context(),
                runs,
                as_list(targets),
                save=save,
                processor=processor,
                progress=progress,
                client=client,
                parallel_on_client=parallel_on_client,
            )
        if parallel_on_client:
            raise ValueError("parallel_on_client=True needs a client")
        if forbid_creation_of:
            request = Request(
                run_id, tuple(as_list(targets)), tuple(save), output=False, fuzzy_for=self._fuzzy()
            )
            plan = self._session.resolve(request)
            forbidden_in(plan, forbid_creation_of, self.registry.providers)
        self._make_one(
            run_id, targets, save=save, processor=processor, progress=progress, submit=submit
        )
        return None

    def _make_runs(
        self,
        runs: list[str],
        targets: list[str],
        *,
        save: Sequence[str],
        processor: Processor | None,
        progress: bool | None,
    ) -> MultiRunResult:
        """Several runs here, without a client, one after the other (a ``Context`` makes them
        in worker processes when worth it: ``context/many.py``)."""
        from strax_decl.runs import make_runs_here

        return make_runs_here(
            self._context(), runs, targets, save=save, processor=processor, progress=progress
        )

    def _make_one(
        self,
        run_id: str,
        targets: Targets,
        *,
        save: Sequence[str],
        processor: Processor | None,
        progress: bool | None,
        submit: Submit | None,
    ) -> None:
        request = Request(
            run_id,
            tuple(as_list(targets)),
            tuple(save),
            output=False,
            processor=processor,
            progress=progress,
            submit=submit,
            fuzzy_for=self._fuzzy(),
        )
        chunks = self._session.run(request)
        try:
            for _ in chunks:
                pass
        finally:
            _close(chunks)

    def to_dask(
        self,
        run_ids: str | Sequence[str],
        data_type: str,
        *,
        fields: Sequence[str] | None = None,
        allow_incomplete: bool = False,
    ) -> dict[str, da.Array]:
        """Lazy Dask arrays, one per field, over the stored ``data_type`` of ``run_ids``.

        Runs are concatenated in the order given; one block per Zarr chunk; sub-array fields
        keep their extra dimensions. Values equal ``get_array``'s. Needs ``strax-decl[dask]``
        and the data stored (``make`` it first). See ``to_dask_dataframe`` for a DataFrame.
        ``allow_incomplete``: a data set not complete gives its final prefix as it is now
        (docs/live.md), as ``get_array(..., allow_incomplete=True)`` would.
        """
        from strax_decl.cluster import to_dask_arrays

        return to_dask_arrays(
            self._context(), run_ids, data_type, fields=fields, allow_incomplete=allow_incomplete
        )

    def to_dask_dataframe(
        self, run_ids: str | Sequence[str], data_type: str, *, fields: Sequence[str] | None = None
    ) -> dd.DataFrame:
        """A lazy Dask DataFrame of the scalar fields of the stored ``data_type`` of ``run_ids``.

        One partition per Zarr chunk; index = row number within the run; a ``run_id`` column
        when several runs are given. Needs ``strax-decl[dask]`` and the data stored.
        """
        from strax_decl.cluster import to_dask_dataframe

        return to_dask_dataframe(self._context(), run_ids, data_type, fields=fields)


def _close(chunks: Iterator[Chunk]) -> None:
    """Stop the stream ``chunks`` now (its pipeline stops, its savers end, its claims go)."""
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def as_list(targets: Targets) -> list[str]:
    if isinstance(targets, str):
        return [targets]
    out = list(targets)
    if not out:
        raise ValueError("no targets given")
    return out
