"""Checking what a user hands a getter, before anything runs; and the time-range shortcuts.

``get_array`` / ``iter_chunks`` / ``make`` check their arguments here, so a mistake is one
clear error naming the argument, not an exception from deep inside the pipeline:

- run ids are strings (``get_array(24399, ...)`` says so, with the zero-padded hint strax
  users need);
- a ``time_range`` is a pair of integers (ns) with ``t0 <= t1``;
- ``processor`` is one of the executors' names, as ``Context(processor=...)`` checks it;
- an unknown target says ``did you mean 'peaks'?``;
- ``forbid_creation_of``: the data types that must be loaded, never computed
  (:class:`CreationForbidden` names those the plan would compute).

The shortcuts ``seconds_range=(s0, s1)`` (seconds since the run's start) and
``time_within=row`` (the interval ``[row.time, row.endtime)`` of a row) become a
``time_range`` here (see :func:`seconds_to_range` for where the run's start comes from).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from strax_decl.errors import StraxDeclError
from strax_storage.loader import check_time_range as storage_check_time_range

if TYPE_CHECKING:  # pragma: no cover - typing only
    from strax_decl.resolver import Plan

__all__ = [
    "CreationForbidden",
    "check_processor",
    "check_run_id",
    "check_targets",
    "check_time_range",
    "did_you_mean",
    "forbidden_in",
    "row_time_range",
    "seconds_to_range",
]

PROCESSORS = ("threaded", "serial")


class CreationForbidden(StraxDeclError, RuntimeError):
    """A request would compute a data type listed in ``forbid_creation_of``."""

    def __init__(self, message: str, data_types: Sequence[str]) -> None:
        super().__init__(message)
        self.data_types = list(data_types)


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"did you mean 'peaks'? "`` for the closest of ``known``, or ``""``."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def check_run_id(run_id: object) -> str:
    """``run_id`` if it is a string; TypeError otherwise (run ids are names, not numbers)."""
    if isinstance(run_id, str):
        return run_id
    hint = ""
    if isinstance(run_id, int | np.integer) and not isinstance(run_id, bool):
        hint = f" (write '{int(run_id):06d}' for strax's zero-padded run numbers)"
    elif isinstance(run_id, set | frozenset):
        hint = " (a set has no order: the rows of several runs come in the order given)"
    raise TypeError(
        f"run ids are strings, got {type(run_id).__name__} {run_id!r}{hint}; several runs "
        "are a list or tuple of strings"
    )


def check_time_range(time_range: object, name: str = "time_range") -> tuple[int, int] | None:
    """``(t0, t1)`` as integers (ns) with ``t0 <= t1``, or None: the store's check, with the
    hint a getter's user needs (seconds go in ``seconds_range``)."""
    return storage_check_time_range(
        time_range, name, hint=" (for seconds since the run's start: seconds_range=)"
    )


def check_processor(processor: object) -> None:
    """``processor`` is None or an executor's name (the same check as the Context's)."""
    if processor is not None and processor not in PROCESSORS:
        names = ", ".join(repr(p) for p in PROCESSORS)
        hint = did_you_mean(str(processor), PROCESSORS)
        tail = f" ({hint.strip()})" if hint else ""
        raise ValueError(f"processor must be one of {names}, got {processor!r}{tail}")


def check_targets(known: Collection[str], targets: Sequence[str], what: str = "data type") -> None:
    """Every target is known: else KeyError with ``did you mean ...?`` and the known ones."""
    for t in targets:
        if not isinstance(t, str):
            raise TypeError(f"targets are data type names (str), got {type(t).__name__} {t!r}")
        if t not in known:
            names = ", ".join(sorted(known)) or "none"
            raise KeyError(f"unknown {what} {t!r}; {did_you_mean(t, known)}registered: {names}")


def forbidden_in(plan: Plan, forbid: Sequence[str] | str, known: Collection[str]) -> None:
    """Raise CreationForbidden if ``plan`` computes any of ``forbid`` (before anything runs)."""
    names = [forbid] if isinstance(forbid, str) else list(forbid)
    check_targets(known, names)
    bad = [d for d in plan.to_compute if d in names]
    if bad:
        why = "; ".join(f"{d}: {plan.steps[d].reason}" for d in bad)
        raise CreationForbidden(
            f"run {plan.run_id!r}: {', '.join(bad)} would be computed, but "
            f"forbid_creation_of={names} ({why}); make {'them' if len(bad) > 1 else 'it'} "
            "first, or drop it from forbid_creation_of",
            bad,
        )


def seconds_to_range(
    seconds_range: object, run_start: int | None, where_start: str
) -> tuple[int, int]:
    """``(s0, s1)`` seconds since ``run_start`` (ns) as a ``time_range`` in ns.

    ``run_start`` is the run document's ``start`` or, without one, the start of the stored
    data the request loads (``where_start`` says which, for the error); None: refused.
    """
    if not isinstance(seconds_range, tuple | list) or len(seconds_range) != 2:
        raise TypeError(f"seconds_range must be a (s0, s1) pair of seconds, got {seconds_range!r}")
    for s in seconds_range:
        if isinstance(s, bool) or not isinstance(s, int | float | np.integer | np.floating):
            raise TypeError(f"seconds_range bounds must be numbers (s), got {seconds_range!r}")
        if not np.isfinite(s):
            raise ValueError(f"seconds_range bounds must be finite, got {seconds_range!r}")
    s0, s1 = (float(s) for s in seconds_range)
    if s0 > s1:
        raise ValueError(f"seconds_range is reversed: its start {s0} is after its end {s1}")
    if run_start is None:
        raise ValueError(
            f"seconds_range needs the run's start: {where_start}. Give the run a document "
            "with a start (ctx.define_run(run_id, start=...)), make the data first, or use "
            "time_range=(t0, t1) in ns"
        )
    return run_start + round(s0 * 1e9), run_start + round(s1 * 1e9)


def row_time_range(row: Any) -> tuple[int, int]:
    """``[time, endtime)`` of one row (a numpy record or 1-row array, a dict, a pandas row).

    The end is ``endtime`` if the row has one, else ``time + length * dt`` (strax's rule).
    """
    if isinstance(row, np.ndarray):
        if row.dtype.names is None or row.size != 1:
            raise TypeError(
                f"time_within takes one row (a record, dict or 1-row array), got an array of "
                f"{row.size} rows"
            )
        row = row.reshape(-1)[0]

    def get(name: str) -> Any:
        if isinstance(row, np.void):
            names = row.dtype.names or ()
            return row[name] if name in names else None
        if isinstance(row, Mapping) or hasattr(row, "index"):
            try:
                return row[name]
            except (KeyError, IndexError, ValueError):
                return None
        return getattr(row, name, None)

    t0 = get("time")
    if t0 is None:
        raise TypeError(f"time_within takes a row with a 'time' field, got {row!r}")
    end = get("endtime")
    if end is None:
        length, dt = get("length"), get("dt")
        if length is None or dt is None:
            raise TypeError("time_within takes a row with 'endtime', or 'length' and 'dt'")
        end = int(t0) + int(length) * int(dt)
    return int(t0), int(end)
