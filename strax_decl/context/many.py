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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from strax_decl.context import run_pool
from strax_decl.rows import tag_runs
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
        asked = {"keep_columns": ask_keep, "drop_columns": ask_drop, **kwargs}
        got = run_pool.get_runs(ctx, runs, targets, asked, stop_at_failure=not ignore_errors)
        return _joined(runs, targets, dtype, got, keep, drop, ignore_errors)

    def get(run: str, keep: list[str] | None, drop: list[str] | None) -> np.ndarray:
        return ctx.get_array(run, targets, keep_columns=keep, drop_columns=drop, **kwargs)

    if not ignore_errors:
        return tag_runs(runs, targets, dtype, get, keep, drop)
    here: dict[str, Any] = {}
    for run in runs:
        try:
            here[run] = get(run, ask_keep, ask_drop)
        except Exception as e:
            here[run] = e
    return _joined(runs, targets, dtype, here, keep, drop, ignore_errors)


def _joined(
    runs: list[str],
    targets: list[str],
    dtype: np.dtype,
    got: dict[str, Any],
    keep: Any,
    drop: Any,
    ignore_errors: bool,
) -> np.ndarray:
    """The rows of the runs in ``got`` (rows or an exception per run), tagged in order."""
    failed = {r: e for r, e in got.items() if isinstance(e, BaseException)}

    def give(run: str, _keep: Any, _drop: Any) -> np.ndarray:
        if run in failed:
            raise failed[run]
        rows: np.ndarray = got[run]
        return rows

    if failed and not ignore_errors:  # raised by tag_runs, with its note naming the run
        return tag_runs([next(r for r in runs if r in failed)], targets, dtype, give, keep, drop)
    if failed:
        what = "; ".join(f"{r}: {type(e).__name__}: {e}" for r, e in failed.items())
        warnings.warn(
            f"ignore_errors: left out {len(failed)} of {len(runs)} runs ({what})", stacklevel=5
        )
    ok = [r for r in runs if r in got and r not in failed]
    if not ok:
        error = next(iter(failed.values()))
        error.add_note(f"(every run failed: {', '.join(runs)})")
        raise error
    return tag_runs(ok, targets, dtype, give, keep, drop)


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
