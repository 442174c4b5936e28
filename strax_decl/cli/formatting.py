"""How the commands print: sizes, dates, aligned tables, lineage trees."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from strax_storage import DataSetInfo

__all__ = ["created", "format_bytes", "lineage_lines", "ratio", "table"]


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    """An aligned table (``strax_decl.render.table``, imported when first used)."""
    from strax_decl.render import table as render_table

    return render_table(header, rows, right)


def format_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def ratio(info: DataSetInfo) -> str:
    """The compression ratio of a data set, or ``-``."""
    if not info.stored_bytes or not info.nbytes:
        return "-"
    return f"{info.nbytes / info.stored_bytes:.2f}"


def created(info: DataSetInfo) -> str:
    """When a data set was created, in local time, or ``-``."""
    if not info.created:
        return "-"
    try:
        when = datetime.datetime.fromisoformat(info.created)
    except ValueError:
        return info.created
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def lineage_lines(lineage: dict[str, Any], indent: str) -> list[str]:
    """A stored lineage as an indented tree, one line per plugin."""
    options = lineage.get("options") or {}
    opts = ", ".join(f"{k}={v!r}" for k, v in sorted(options.items())) if options else ""
    head = f"{indent}{lineage.get('output')} <- {lineage.get('plugin')} {lineage.get('version')}"
    out = [head + (f" ({opts})" if opts else "")]
    for child in (lineage.get("inputs") or {}).values():
        if isinstance(child, dict):
            out += lineage_lines(child, indent + "  ")
    return out
