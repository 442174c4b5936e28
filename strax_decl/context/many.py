"""``get_array`` of several runs (no Dask), with strax's ``ignore_errors``.

The runs are got one after another in the caller's thread, in the order given, their rows
tagged with ``run_id``. ``ignore_errors``: the rows of the runs that worked; the others are
left out with a warning naming them (all failing raises the first error). Without it, the
first failing run raises, with a note naming it, and the runs after it are not started.

Getting several runs at a time in threads was measured and was slower on 2 cores (0.7-0.9x
of one after another: each run's own pipeline threads already contend for the GIL), so it
is not done; Dask (``client=``) is the way to run many at once.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from strax_decl.rows import tag_runs
from strax_decl.runs import run_list

if TYPE_CHECKING:  # pragma: no cover - typing only
    from strax_decl.context.context import Context

__all__ = ["get_runs"]


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
    failed: dict[str, Exception] = {}

    def get(run: str, keep: list[str] | None, drop: list[str] | None) -> np.ndarray:
        return ctx.get_array(run, targets, keep_columns=keep, drop_columns=drop, **kwargs)

    if not ignore_errors:
        return tag_runs(runs, targets, ctx._dtype(targets), get, keep, drop)
    ask_keep, ask_drop = _columns(keep, drop)
    got: dict[str, np.ndarray] = {}
    for run in runs:
        try:
            got[run] = get(run, ask_keep, ask_drop)
        except Exception as e:
            failed[run] = e
    if failed:
        what = "; ".join(f"{r}: {type(e).__name__}: {e}" for r, e in failed.items())
        warnings.warn(
            f"ignore_errors: left out {len(failed)} of {len(runs)} runs ({what})", stacklevel=4
        )
    ok = [r for r in runs if r not in failed]
    if not ok:
        error = next(iter(failed.values()))
        error.add_note(f"(every run failed: {', '.join(runs)})")
        raise error
    return tag_runs(ok, targets, ctx._dtype(targets), lambda run, _k, _d: got[run], keep, drop)


def _columns(keep: Any, drop: Any) -> tuple[list[str] | None, list[str] | None]:
    """The columns ``tag_runs`` asks of each run (``run_id`` is its own to add)."""
    keep_list = [keep] if isinstance(keep, str) else None if keep is None else list(keep)
    drop_list = [drop] if isinstance(drop, str) else None if drop is None else list(drop)
    if keep_list is not None:
        keep_list = [c for c in keep_list if c != "run_id"]
    if drop_list is not None:
        drop_list = [c for c in drop_list if c != "run_id"] or None
    return keep_list or None, drop_list
