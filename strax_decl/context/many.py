"""Several runs without Dask: ``get_array`` (with strax's ``ignore_errors``) and ``make``.

The runs go to worker processes, several at a time (``run_pool.py``: when it is worth it and
possible); else they are got one after another in the caller's thread, in the order given.
Either way the rows come in the order given, tagged with ``run_id``. ``ignore_errors``: the
rows of the runs that worked; the others are left out with a warning naming them (all
failing raises the first error). Without it, the first run that fails raises, with a note
naming it (and, from a worker, its traceback text as the cause), and the runs not started
yet are not started.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from strax_decl.context import run_pool
from strax_decl.rows import copy_fields, sub_dtype, tag_runs
from strax_decl.runs import MultiRunResult, make_runs_here, run_list

if TYPE_CHECKING:  # pragma: no cover - typing only
    from strax_decl.context.context import Context
    from strax_decl.context.getters import Processor

__all__ = ["get_runs", "make_runs"]


def get_runs(
    ctx: Context,
    run_ids: Sequence[str],
    targets: list[str],
    *,
    ignore_errors: bool = False,
    **kwargs: Any,
) -> np.ndarray:
    """``get_array`` of several runs (see the module doc)."""
    runs = run_list(run_ids)
    keep, drop = kwargs.pop("keep_columns", None), kwargs.pop("drop_columns", None)
    dtype = ctx._dtype(targets)
    ask_keep, ask_drop = _columns(keep, drop)
    if run_pool.in_processes(ctx, runs, kwargs):
        tagged = Tagged(runs, targets, dtype, keep, drop)  # checked before any run starts
        asked = {"keep_columns": ask_keep, "drop_columns": ask_drop, **kwargs}
        got = run_pool.get_runs(
            ctx, runs, targets, asked, stop_at_failure=not ignore_errors, take=tagged.part
        )
        return _joined(runs, tagged, got, ignore_errors)

    def get(run: str, keep: list[str] | None, drop: list[str] | None) -> np.ndarray:
        return ctx.get_array(run, targets, keep_columns=keep, drop_columns=drop, **kwargs)

    if not ignore_errors:
        return tag_runs(runs, targets, dtype, get, keep, drop)
    tagged = Tagged(runs, targets, dtype, keep, drop)
    here: dict[str, Any] = {}
    for run in runs:
        try:
            here[run] = tagged.part(run, get(run, ask_keep, ask_drop))
        except Exception as e:
            here[run] = e
    return _joined(runs, tagged, here, ignore_errors)


class Tagged:
    """The rows of one run copied into the joined dtype, tagged with ``run_id``: what
    ``tag_runs`` does per run (the same dtype, ``run_id`` as wide as the longest run asked),
    here done as each run's rows arrive, so that only the concatenation waits for the last
    run. ``run_id`` already among the fields raises at once, before any run is started."""

    def __init__(
        self, runs: list[str], targets: list[str], dtype: np.dtype, keep: Any, drop: Any
    ) -> None:
        if "run_id" in (dtype.names or ()):
            tag_runs(runs, targets, dtype, _never, keep, drop)  # raises, naming the targets
        self.runs, self.targets, self.dtype, self.keep, self.drop = runs, targets, dtype, keep, drop
        self.tag = "run_id" not in _names(drop)
        self.only_run_id = keep is not None and not [c for c in _names(keep) if c != "run_id"]
        self.run_field = [("run_id", f"U{max(map(len, runs))}")] if self.tag else []

    def part(self, run: str, rows: np.ndarray) -> np.ndarray:
        fields = () if self.only_run_id else rows.dtype.names or ()
        part = copy_fields(rows, sub_dtype(rows.dtype, fields, *self.run_field))
        if self.tag:
            part["run_id"] = run
        return part

    def raise_for(self, run: str, error: BaseException) -> NoReturn:
        """Raise ``error`` as ``tag_runs`` does: with its note naming the run."""

        def give(_run: str, _keep: Any, _drop: Any) -> np.ndarray:
            raise error

        tag_runs([run], self.targets, self.dtype, give, self.keep, self.drop)
        raise AssertionError("tag_runs did not raise")  # pragma: no cover


def _never(run: str, keep: Any, drop: Any) -> np.ndarray:  # pragma: no cover - not called
    raise AssertionError(f"no rows are got for run {run!r}")


def _names(columns: Any) -> list[str]:
    return [columns] if isinstance(columns, str) else [] if columns is None else list(columns)


def _joined(
    runs: list[str], tagged: Tagged, got: dict[str, Any], ignore_errors: bool
) -> np.ndarray:
    """The tagged rows of the runs in ``got`` (rows or an exception per run), in order."""
    failed = {r: e for r, e in got.items() if isinstance(e, BaseException)}
    if failed and not ignore_errors:  # the first failing run in the order asked
        run = next(r for r in runs if r in failed)
        tagged.raise_for(run, failed[run])
    ok = [r for r in runs if r in got and r not in failed]
    leave_out(runs, ok, failed, stacklevel=6)
    return np.concatenate([got[r] for r in ok])


def leave_out(
    runs: list[str], ok: list[str], failed: Mapping[str, BaseException], stacklevel: int
) -> None:
    """``ignore_errors``: warn naming the ``failed`` runs left out of ``runs``; if no run is
    ``ok``, raise the first failure, noted (``stacklevel``: the user's frame for the warning)."""
    if failed:
        what = "; ".join(f"{r}: {type(e).__name__}: {e}" for r, e in failed.items())
        warnings.warn(
            f"ignore_errors: left out {len(failed)} of {len(runs)} runs ({what})",
            stacklevel=stacklevel,
        )
    if not ok:
        error = next(iter(failed.values()))
        error.add_note(f"(every run failed: {', '.join(runs)})")
        raise error


def make_runs(
    ctx: Context,
    run_ids: Sequence[str],
    targets: list[str],
    *,
    save: Sequence[str] = (),
    processor: Processor | None = None,
    progress: bool | None = None,
) -> MultiRunResult:
    """``make`` of several runs here: in worker processes if worth it, else in turn."""
    runs = run_list(run_ids)
    if run_pool.in_processes(ctx, runs):
        return run_pool.make_runs(
            ctx, runs, targets, save=save, processor=processor, progress=progress
        )
    return make_runs_here(ctx, runs, targets, save=save, processor=processor, progress=progress)


def _columns(keep: Any, drop: Any) -> tuple[list[str] | None, list[str] | None]:
    """The columns ``tag_runs`` asks of each run (``run_id`` is its own to add)."""
    keep_list = [keep] if isinstance(keep, str) else None if keep is None else list(keep)
    drop_list = [drop] if isinstance(drop, str) else None if drop is None else list(drop)
    if keep_list is not None:
        keep_list = [c for c in keep_list if c != "run_id"]
    if drop_list is not None:
        drop_list = [c for c in drop_list if c != "run_id"] or None
    return keep_list or None, drop_list
