"""Run documents: what is known about a run (start, end, mode, tags, ...), and superruns.

A run document is a :class:`RunDoc` (pydantic, extra fields allowed), stored as plain JSON
with the run in a store (``strax_storage.run_docs``). Times are integers of ns since the
epoch, the unit of the data; a ``datetime``, ``numpy.datetime64`` or ISO string is accepted
and converted. ``livetime`` is in seconds (default ``(end - start) / 1e9``).

A **superrun** (a name starting with ``_``, as in strax) has a ``sub_run_spec``: for each
subrun, ``"all"`` or a list of ``[t0, t1)`` intervals (ns), in time order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from strax_storage import validate_name
from strax_storage.run_docs import validate_tag

__all__ = [
    "RunDoc",
    "SubRunSpec",
    "is_superrun",
    "normalize_spec",
    "superrun_doc",
    "to_ns",
]

SubRunSpec = dict[str, str | list[tuple[int, int]]]
"""``{subrun: "all" | [(t0, t1), ...]}``, in time order."""


def to_ns(value: Any, what: str = "time") -> int | None:
    """``value`` as integer ns since the epoch (None stays None). Naive datetimes are UTC."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{what}: {value!r} is not a time")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, np.datetime64):
        return int(value.astype("datetime64[ns]").astype(np.int64))
    if hasattr(value, "value") and hasattr(value, "tz_localize"):  # pandas.Timestamp
        ts = value if value.tzinfo is not None else value.tz_localize("UTC")
        return int(ts.value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{what}: {value!r} is not an ISO date/time") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        delta = value - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    raise TypeError(f"{what}: {value!r} ({type(value).__name__}) is not a time")


def is_superrun(run_id: str) -> bool:
    return run_id.startswith("_")


class RunDoc(BaseModel):
    """A run document. Known fields are checked; any other field is kept as given (JSON)."""

    model_config = ConfigDict(extra="allow")

    name: str
    start: int | None = None
    end: int | None = None
    mode: str = ""
    tags: list[str] = []
    comments: list[str] = []
    livetime: float | None = None
    """Seconds; default ``(end - start) / 1e9``."""
    sub_run_spec: dict[str, str | list[tuple[int, int]]] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return validate_name("run_id", v)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, v: Any) -> int | None:
        return to_ns(v)

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, v: Any) -> str:
        if isinstance(v, list | tuple | set | frozenset):
            return ",".join(sorted(str(m) for m in v))
        return "" if v is None else v

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, v: Any) -> list[str]:
        if isinstance(v, str):
            v = [v]
        # strax's documents hold tags as {"name": ...}
        out = [t["name"] if isinstance(t, dict) and "name" in t else t for t in v or []]
        return list(dict.fromkeys(validate_tag(t) for t in out))

    @field_validator("comments", mode="before")
    @classmethod
    def _comments(cls, v: Any) -> list[str]:
        if isinstance(v, str):
            return [v]
        return [c["comment"] if isinstance(c, dict) and "comment" in c else c for c in v or []]

    @model_validator(mode="after")
    def _check(self) -> RunDoc:
        if self.start is not None and self.end is not None:
            if self.end < self.start:
                raise ValueError(f"run {self.name}: end {self.end} is before start {self.start}")
            if self.livetime is None:
                self.livetime = (self.end - self.start) / 1e9
        if self.sub_run_spec is not None:
            if not is_superrun(self.name):
                raise ValueError(
                    f"a superrun's name starts with '_' (as in strax): got {self.name!r}"
                )
            self.sub_run_spec = normalize_spec(self.sub_run_spec)
        elif is_superrun(self.name):
            raise ValueError(f"run {self.name!r}: names starting with '_' are for superruns")
        return self

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def normalize_spec(spec: Sequence[str] | Mapping[str, Any]) -> SubRunSpec:
    """A checked ``{subrun: "all" | [(t0, t1), ...]}`` (intervals sorted, disjoint)."""
    if isinstance(spec, str):
        raise TypeError("give the subruns as a list of run ids or a dict {run: intervals}")
    items: Iterable[tuple[str, Any]] = (
        spec.items() if isinstance(spec, Mapping) else ((r, "all") for r in spec)
    )
    out: SubRunSpec = {}
    for run, what in items:
        validate_name("run_id", run)
        if is_superrun(run):
            raise ValueError(f"subrun {run!r} is a superrun: superruns of superruns are not kept")
        if run in out:
            raise ValueError(f"subrun {run!r} is given twice")
        if isinstance(what, str):
            if what != "all":
                raise ValueError(f"subrun {run!r}: expected 'all' or intervals, got {what!r}")
            out[run] = "all"
            continue
        pairs = sorted((int(a), int(b)) for a, b in np.asarray(what, dtype=np.int64).reshape(-1, 2))
        for (a, b), nxt in zip(pairs, [*pairs[1:], None], strict=True):
            if b <= a:
                raise ValueError(f"subrun {run!r}: empty or reversed interval ({a}, {b})")
            if nxt is not None and nxt[0] < b:
                raise ValueError(f"subrun {run!r}: intervals ({a}, {b}) and {nxt} overlap")
        if not pairs:
            raise ValueError(f"subrun {run!r}: no intervals")
        out[run] = pairs
    if not out:
        raise ValueError("a superrun needs at least one subrun")
    return out


def superrun_doc(
    name: str, spec: SubRunSpec, subdocs: Mapping[str, Mapping[str, Any] | None], **fields: Any
) -> RunDoc:
    """The document of superrun ``name`` from its subruns' documents (strax's rules: earliest
    start, latest end, summed livetime, the union of modes and tags), subruns in time order."""

    def first(run: str) -> int:
        what = spec[run]
        if not isinstance(what, str):
            return what[0][0]
        start = (subdocs.get(run) or {}).get("start")
        return start if isinstance(start, int) else 0

    ordered = {run: spec[run] for run in sorted(spec, key=first)}
    docs = [dict(d) for d in (subdocs.get(r) for r in ordered) if d]
    starts = [d["start"] for d in docs if isinstance(d.get("start"), int)]
    ends = [d["end"] for d in docs if isinstance(d.get("end"), int)]
    live = [d["livetime"] for d in docs if isinstance(d.get("livetime"), int | float)]
    for what in ordered.values():
        if not isinstance(what, str):
            starts.append(what[0][0])
            ends.append(what[-1][1])
    modes = {m for d in docs for m in str(d.get("mode") or "").split(",") if m}
    tags = sorted({t for d in docs for t in d.get("tags") or [] if isinstance(t, str)})
    base: dict[str, Any] = {
        "name": name,
        "start": min(starts) if starts else None,
        "end": max(ends) if ends else None,
        "mode": sorted(modes),
        "tags": tags,
        "sub_run_spec": ordered,
    }
    pieces = [w for w in ordered.values() if not isinstance(w, str)]
    if not pieces and len(live) == len(ordered):
        base["livetime"] = float(sum(live))
    elif len(pieces) == len(ordered):
        base["livetime"] = sum(b - a for w in pieces for a, b in w) / 1e9
    return RunDoc(**{**base, **fields})
