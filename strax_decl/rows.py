"""Shaping the rows the Context gives back: time trimming, selections, field subsets, run
tags, and the option table of ``show_config``.

None of this changes what is computed or stored (whole data types are, always): it only
shapes what the caller of ``get_array`` / ``iter_chunks`` / ``show_config`` receives. Kept
apart from ``Context`` so the API module stays about the API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from strax_decl.chunk import Chunk, endtimes
from strax_decl.plugin import Options
from strax_decl.registry import Registry
from strax_decl.selection import Mask

__all__ = [
    "OptionTable",
    "columns_of_each_run",
    "copy_fields",
    "option_table",
    "select",
    "sub_dtype",
    "tag_runs",
    "trim",
]


def sub_dtype(dtype: np.dtype, fields: Sequence[str], *extra: tuple[str, str]) -> np.dtype:
    """A packed dtype of only ``fields`` of ``dtype``, then the ``extra`` fields."""
    assert dtype.fields is not None
    return np.dtype([*((name, dtype.fields[name][0]) for name in fields), *extra])


def copy_fields(rows: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``rows`` copied into ``dtype``: shared fields copied, others left for the caller.

    A copy, not a view: a view of some fields would keep every field's bytes alive.
    """
    out = np.empty(len(rows), dtype=dtype)
    for name in dtype.names or ():
        if name in (rows.dtype.names or ()):
            out[name] = rows[name]
    return out


def select(chunks: Iterator[Chunk], mask: Mask | None, fields: list[str] | None) -> Iterator[Chunk]:
    """The rows ``mask`` keeps, with only ``fields`` (None: all); chunk bounds unchanged."""
    for c in chunks:
        data = c.data if mask is None else c.data[mask(c.data)]
        if fields is not None:
            data = copy_fields(data, sub_dtype(data.dtype, fields))
        yield Chunk(c.start, c.end, data)


def trim(chunks: Iterator[Chunk], time_range: tuple[int, int]) -> Iterator[Chunk]:
    """Rows fully inside ``[t0, t1)``; chunk bounds clipped to the range."""
    t0, t1 = time_range
    for c in chunks:
        if c.end <= t0 and not (c.start == c.end == t0):
            continue
        if c.start >= t1:
            break
        data = c.data
        if len(data):
            # a point row at t1 lies outside [t0, t1), like in a chunk
            mask = (data["time"] >= t0) & (data["time"] < t1) & (endtimes(data) <= t1)
            data = data[mask]
        yield Chunk(max(c.start, t0), min(c.end, t1), data)


GetRun = Callable[[str, list[str] | None, list[str] | None], np.ndarray]
"""``get(run_id, keep_columns, drop_columns)``: the rows of one run."""


def columns_of_each_run(columns: str | Sequence[str] | None) -> list[str] | None:
    """``keep_columns``/``drop_columns`` as asked of each run when several are tagged:
    ``run_id`` is ``tag_runs``' own field, so it is left out (None: not given)."""
    if columns is None:
        return None
    return [c for c in ([columns] if isinstance(columns, str) else columns) if c != "run_id"]


def tag_runs(
    runs: list[str],
    targets: list[str],
    dtype: np.dtype,
    get: GetRun,
    keep: str | Sequence[str] | None,
    drop: str | Sequence[str] | None,
) -> np.ndarray:
    """The rows of several runs one after the other, tagged with a ``run_id`` field.

    ``run_id`` is ours to add (unless dropped), so it is taken out of the columns asked of
    each run. An error gets a note naming the run it came from.
    """
    if "run_id" in (dtype.names or ()):
        raise ValueError(
            f"{targets} already have a field 'run_id', so the rows of several runs "
            "cannot be tagged with one; get the runs one at a time"
        )
    tag = "run_id" not in ([drop] if isinstance(drop, str) else drop or ())
    keep_list = columns_of_each_run(keep)
    drop_list = columns_of_each_run(drop) or None
    run_field = [("run_id", f"U{max(map(len, runs))}")] if tag else []
    parts = []
    for run in runs:
        try:
            rows = get(run, keep_list or None, drop_list)
        except Exception as e:
            e.add_note(f"(while getting {targets} of run {run!r})")
            raise
        fields = () if keep_list == [] else rows.dtype.names or ()  # [] when only run_id
        part = copy_fields(rows, sub_dtype(rows.dtype, fields, *run_field))
        if tag:
            part["run_id"] = run
        parts.append(part)
    return np.concatenate(parts)


class OptionTable(list[dict[str, Any]]):
    """Rows of ``show_config``; prints as an aligned table; ``to_df()``: a pandas DataFrame."""

    def to_df(self) -> Any:
        """The rows as a pandas DataFrame (columns option, plugins, type, default, current,
        description; needs ``strax-decl[pandas]``)."""
        import pandas as pd

        cols = ["option", "plugins", "type", "default", "current", "description"]
        return pd.DataFrame([{c: r[c] for c in cols} for r in self], columns=cols)

    def __str__(self) -> str:
        cols = ["option", "plugins", "type", "default", "current", "description"]
        cells = [[str(r[c]) for c in cols] for r in self]
        widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
        lines += [
            "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
            for row in cells
        ]
        return "\n".join(lines)


def option_table(
    registry: Registry,
    options: Mapping[str, Options],
    data_type: str | None = None,
    per_run: Mapping[str, Mapping[str, Any]] | None = None,
) -> OptionTable:
    """Every option (of ``data_type``'s plugin, if given): who takes it, type, default,
    current value, description. Plugins with different values of one option (scoped values,
    a child plugin's own default) get a row each; ``per_run`` (plugin -> option -> source)
    shows per-run values by their source."""
    plugins = [registry.provider(data_type)] if data_type else list(registry.plugins.values())
    per_run = per_run or {}
    rows = OptionTable()
    for name, spec in sorted(registry.options.items()):
        users = [p for p in registry.option_users[name] if any(q.name == p for q in plugins)]
        groups: dict[tuple[str, str, str], list[str]] = {}
        for user in users:
            src = per_run.get(user, {}).get(name)
            current = src.describe() if src is not None else repr(getattr(options[user], name))
            own = registry.plugins[user].option_specs[name]
            default = "<required>" if own.required else repr(own.default)
            groups.setdefault((default, current, own.description), []).append(user)
        for (default, current, description), group in groups.items():
            rows.append(
                {
                    "option": name,
                    "plugins": ",".join(group),
                    "type": spec.type_name,
                    "default": default,
                    "current": current,
                    "description": description,
                }
            )
    return rows
