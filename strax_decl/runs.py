"""Several runs at once: the run-id list, per-run outcomes and their summary (no Dask here).

``Context.make(run_ids, targets)`` makes every run and returns a :class:`MultiRunResult`
instead of raising: one failing run stops none of the others. Without a client the runs are
made here: in worker processes (``strax_decl.context.run_pool``) or one after the other
(:func:`make_runs_here`); with one, ``strax_decl.cluster`` makes one Dask task per run and
collects the same outcomes.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from strax_decl.errors import StraxDeclError
from strax_decl.progress import enabled as progress_enabled
from strax_storage import validate_name

if TYPE_CHECKING:  # pragma: no cover - typing only
    from strax_decl.context import Context, Processor
    from strax_decl.plugin import Submit

__all__ = ["MultiRunResult", "RunOutcome", "RunsFailed", "make_runs_here", "run_list"]


def run_list(run_ids: str | Sequence[str]) -> list[str]:
    """Run ids as a list (one string or a sequence): duplicates dropped, order kept, checked."""
    if isinstance(run_ids, set | frozenset):
        raise TypeError("give the run ids as a list or tuple: a set has no order")
    runs = list(dict.fromkeys([run_ids] if isinstance(run_ids, str) else run_ids))
    if not runs:
        raise ValueError("no run ids given")
    for run in runs:
        validate_name("run_id", run)
    return runs


@dataclass
class RunOutcome:
    """What happened to one run."""

    run_id: str
    ok: bool
    error: str | None = None  # "ExceptionType: message" (with notes), None if ok
    traceback: str | None = None
    seconds: float = 0.0
    where: str | None = None  # worker address (or "local")
    stats: str | None = None  # RunStats.summary() of the run, if it ran

    def __str__(self) -> str:
        if self.ok:
            return f"ok      {self.run_id}  ({self.seconds:.2f} s on {self.where})"
        return f"FAILED  {self.run_id}: {self.error}"


@dataclass
class MultiRunResult:
    """Per-run results of ``make`` over several runs; printed as a readable summary.

    ``outcomes`` keeps the order in which the runs were given.
    """

    outcomes: dict[str, RunOutcome]
    seconds: float = 0.0

    @property
    def succeeded(self) -> list[str]:
        return [r for r, o in self.outcomes.items() if o.ok]

    @property
    def failed(self) -> dict[str, str]:
        """``{run_id: "ExceptionType: message"}`` of the runs that failed."""
        return {r: o.error or "failed" for r, o in self.outcomes.items() if not o.ok}

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes.values())

    def raise_if_failed(self) -> None:
        """Raise :class:`RunsFailed` (listing every failed run) if any run failed."""
        if not self.ok:
            raise RunsFailed(self)

    def __str__(self) -> str:
        n, bad = len(self.outcomes), len(self.failed)
        head = f"{n} run{'s' if n != 1 else ''}: {n - bad} succeeded, {bad} failed"
        lines = [f"{head} in {self.seconds:.2f} s"]
        # failures first: they are what the reader is looking for
        ordered = sorted(self.outcomes.values(), key=lambda o: o.ok)
        lines += [f"  {o}" for o in ordered]
        return "\n".join(lines)


class RunsFailed(StraxDeclError, RuntimeError):
    """Some runs of a multi-run ``make`` failed; ``.result`` has the details."""

    def __init__(self, result: MultiRunResult) -> None:
        super().__init__(str(result))
        self.result = result


def failure(run_id: str, exc: BaseException, seconds: float, where: str) -> RunOutcome:
    """The outcome of a run that raised ``exc``."""
    error = "".join(traceback.format_exception_only(exc)).strip()
    tb = "".join(traceback.format_exception(exc))
    return RunOutcome(run_id, False, error, tb, seconds, where)


def make_one(
    ctx: Context,
    run_id: str,
    targets: Sequence[str],
    save: Sequence[str],
    processor: Processor | None,
    submit: Submit | None,
    where: str,
) -> RunOutcome:
    """Make one run with ``ctx``; never raises: an error comes back in the outcome."""
    t0 = time.perf_counter()
    try:
        ctx.make(run_id, targets, save=save, processor=processor, progress=False, submit=submit)
    except Exception as e:  # reported per run; the other runs go on
        return failure(run_id, e, time.perf_counter() - t0, where)
    stats = ctx.last_stats.summary() if ctx.last_stats is not None else None
    return RunOutcome(run_id, True, None, None, time.perf_counter() - t0, where, stats)


def report(shown: bool, done: int, total: int, outcome: RunOutcome) -> None:
    """The progress line of a finished run (``[done/total] outcome``) on stderr, if shown."""
    if shown:
        print(f"[{done}/{total}] {outcome}", file=sys.stderr, flush=True)


def make_runs_here(
    ctx: Context,
    run_ids: Sequence[str],
    targets: Sequence[str],
    *,
    save: Sequence[str] = (),
    processor: Processor | None = None,
    progress: bool | None = None,
) -> MultiRunResult:
    """Make ``targets`` for every run, here, one after the other.

    ``progress``: one line per finished run on stderr (None: only if stderr is a terminal).
    """
    runs = run_list(run_ids)
    t0 = time.perf_counter()
    shown = progress_enabled(progress)
    outcomes: dict[str, RunOutcome] = {}
    for i, run_id in enumerate(runs):
        outcome = make_one(ctx, run_id, targets, save, processor, None, "local")
        outcomes[run_id] = outcome
        report(shown, i + 1, len(runs), outcome)
    return MultiRunResult(outcomes, time.perf_counter() - t0)
