"""The run table (``ctx.runs()``) and run selection, strax's way: wildcards in modes, tags and
names (``fnmatch``, or ``re``), a leading ``_`` of a tag ignored unless the pattern has one,
excluded tags beating included ones.

Pure functions over plain rows; pandas is imported only to build the DataFrame.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from strax_decl.run_meta import to_ns

__all__ = ["PatternType", "RunRow", "matcher", "runs_frame", "select_rows"]

PatternType = Literal["fnmatch", "re"]


@dataclass
class RunRow:
    """One run as the catalog sees it (the first store with a document wins)."""

    name: str
    doc: dict[str, Any] | None
    tags: tuple[str, ...]
    available: dict[str, bool] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        return None if self.doc is None else self.doc.get(name)


def _as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def matcher(patterns: str | Sequence[str], pattern_type: PatternType) -> Callable[[str], bool]:
    """One compiled test: does a string match any of ``patterns``?"""
    pats = _as_tuple(patterns)
    if pattern_type == "fnmatch":
        regex = "|".join(f"(?:{fnmatch.translate(p)})" for p in pats)
    elif pattern_type == "re":
        regex = "|".join(f"(?:{p})" for p in pats)  # re.match: anchored at the start only
    else:
        raise ValueError(f"pattern_type must be 'fnmatch' or 're', got {pattern_type!r}")
    compiled = re.compile(regex or "(?!)")
    return (lambda s: compiled.match(s) is not None) if pats else (lambda s: False)


def _tag_test(
    patterns: str | Sequence[str], pattern_type: PatternType, ignore_underscore: bool
) -> Callable[[Iterable[str]], bool]:
    pats = _as_tuple(patterns)
    with_us = matcher([p for p in pats if p.startswith("_")], pattern_type)
    plain = matcher([p for p in pats if not p.startswith("_")], pattern_type)

    def test(tags: Iterable[str]) -> bool:
        for tag in tags:
            if with_us(tag) or plain(tag):
                return True
            if ignore_underscore and tag.startswith("_") and plain(tag[1:]):
                return True
        return False

    return test


def select_rows(
    rows: Iterable[RunRow],
    *,
    mode: str | Sequence[str] | None = None,
    tags: str | Sequence[str] | None = None,
    exclude_tags: str | Sequence[str] | None = None,
    pattern: str | Sequence[str] | None = None,
    since: Any = None,
    until: Any = None,
    pattern_type: PatternType = "fnmatch",
    ignore_underscore: bool = True,
) -> list[RunRow]:
    """The rows that match every criterion given (availability is the caller's: it is the
    only criterion that costs storage reads, so it is judged on what is left).

    ``mode``: a run matches if one of its modes (comma-separated) matches a pattern.
    ``tags``: at least one tag matches one pattern; ``exclude_tags``: none does.
    ``pattern``: the run name matches. ``since``/``until``: the run started in
    ``[since, until)`` (ns, datetime or ISO string; runs without a start never match).
    """
    out = list(rows)
    if pattern is not None:
        test = matcher(pattern, pattern_type)
        out = [r for r in out if test(r.name)]
    if mode is not None:
        test = matcher(mode, pattern_type)
        out = [r for r in out if any(test(m) for m in str(r.get("mode") or "").split(","))]
    if tags is not None:
        has = _tag_test(tags, pattern_type, ignore_underscore)
        out = [r for r in out if has(r.tags)]
    if exclude_tags is not None:
        bad = _tag_test(exclude_tags, pattern_type, ignore_underscore)
        out = [r for r in out if not bad(r.tags)]
    t0, t1 = to_ns(since, "since"), to_ns(until, "until")
    if t0 is not None or t1 is not None:

        def inside(r: RunRow) -> bool:
            start = r.get("start")
            if not isinstance(start, int):
                return False
            return (t0 is None or start >= t0) and (t1 is None or start < t1)

        out = [r for r in out if inside(r)]
    return out


def runs_frame(
    rows: Sequence[RunRow], data_types: Sequence[str] = (), fields: Sequence[str] = ()
) -> Any:
    """The DataFrame of ``rows``: name, start, end (UTC timestamps), mode, tags (comma
    separated, as strax has them), livetime (a timedelta), superrun, the ``fields`` asked
    for, and one ``<data_type>_available`` column per data type."""
    try:
        import pandas as pd
    except ImportError as e:  # pragma: no cover - pandas is an optional extra
        raise ImportError("the run table needs pandas: pip install 'strax-decl[pandas]'") from e

    def col(name: str) -> list[Any]:
        return [r.get(name) for r in rows]

    def times(name: str) -> Any:
        values = [v if isinstance(v, int) else None for v in col(name)]
        return pd.to_datetime(pd.array(values, dtype="Int64"), unit="ns", utc=True)

    live = [v if isinstance(v, int | float) else None for v in col("livetime")]
    columns: dict[str, Any] = {
        "name": [r.name for r in rows],
        "start": times("start"),
        "end": times("end"),
        "mode": [str(m or "") for m in col("mode")],
        "tags": [",".join(r.tags) for r in rows],
        "livetime": pd.to_timedelta(pd.array(live, dtype="Float64"), unit="s"),
        "superrun": [r.get("sub_run_spec") is not None for r in rows],
    }
    for name in fields:
        if name not in columns:
            columns[name] = col(name)
    for dt in data_types:
        columns[f"{dt}_available"] = [bool(r.available.get(dt)) for r in rows]
    return pd.DataFrame(columns)


def doc_fields(doc: Mapping[str, Any] | None, projection: Sequence[str] | None) -> dict[str, Any]:
    """``doc`` limited to ``projection`` (strax's ``run_metadata(projection=...)``)."""
    if doc is None:
        return {}
    return dict(doc) if projection is None else {k: doc[k] for k in projection if k in doc}
