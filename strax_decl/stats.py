"""Run statistics: time, chunks, rows and bytes per loader, plugin and saver.

``RunStats`` is a run hook (``strax_decl.engine.hooks``): both executors report every piece
of work to the hooks they are given, so the timing summary reads the same numbers whichever
processor ran. Updates take a lock: they happen once per chunk, so the cost is negligible
next to the work measured.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from strax_decl.engine.hooks import Hook
from strax_storage.chunk import Chunk

__all__ = ["ComponentStats", "RunStats", "call_timed", "format_rate", "format_size"]


def call_timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``fn(*args, **kwargs)`` and the seconds it took: submitted to run in a worker, so the
    time measured is the computation's, not the queue's (see ``RunStats.add_timed``)."""
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t0


@dataclass
class ComponentStats:
    name: str
    seconds: float = 0.0
    chunks: int = 0
    rows: int = 0
    nbytes: int = 0


class RunStats(Hook):
    """Accumulates per-component figures of one run (give it to the executor as a hook)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.components: dict[str, ComponentStats] = {}
        self.started = time.perf_counter()

    def on_chunk(self, component: str, seconds: float, chunks: Sequence[Chunk]) -> None:
        self.add(component, seconds, chunks)

    def add(self, name: str, seconds: float, chunks: Sequence[Chunk] = ()) -> None:
        """Record ``seconds`` of work by ``name`` that produced (or consumed) ``chunks``."""
        rows = nbytes = 0
        for x in chunks:  # outside the lock: once per chunk, from every pipeline thread
            rows += len(x.data)
            nbytes += x.data.nbytes
        with self._lock:
            c = self.components.get(name)
            if c is None:
                c = self.components[name] = ComponentStats(name)
            c.seconds += seconds
            if chunks:
                c.chunks += 1
                c.rows += rows
                c.nbytes += nbytes

    def add_timed(self, name: str, timed: tuple[Any, float]) -> Any:
        """Record a ``call_timed`` result of ``name`` (chunks: a dict's values); return the
        call's own result."""
        result, seconds = timed
        self.add(name, seconds, list(result.values()) if isinstance(result, Mapping) else [])
        return result

    @property
    def wall_seconds(self) -> float:
        return time.perf_counter() - self.started

    def summary(self) -> str:
        """A table of where the time went, busiest first.

        Each component's rate is in the unit that shows it (``MB/s``, ``kB/s`` or ``B/s``)
        with its ``rows/s``. The last lines relate the components' seconds to the wall time:
        loaders, plugins and savers run at the same time (threads, pools), so their seconds
        add up to more than the wall time when they overlap; the ratio says how much.
        """
        rows = sorted(self.components.values(), key=lambda c: -c.seconds)
        width = max([len(r.name) for r in rows] + [9])
        lines = [
            f"{'component'.ljust(width)}  {'seconds':>8}  {'chunks':>7}  {'rows':>11}  "
            f"{'size':>9}  {'rate':>10}  {'rows/s':>9}"
        ]
        for r in rows:
            rate = format_rate(r.nbytes / r.seconds) if r.seconds > 0 else "-"
            rows_s = format_number(r.rows / r.seconds) if r.seconds > 0 and r.rows else "-"
            lines.append(
                f"{r.name.ljust(width)}  {r.seconds:8.3f}  {r.chunks:7d}  {r.rows:11d}  "
                f"{format_size(r.nbytes):>9}  {rate:>10}  {rows_s:>9}"
            )
        wall = self.wall_seconds
        busy = sum(r.seconds for r in rows)
        lines.append(f"wall time {wall:.3f} s")
        if rows and wall > 0:
            lines.append(
                f"busy {busy:.3f} s = {busy / wall:.2f} x elapsed (the seconds above added "
                "up: above 1, loaders, plugins and savers ran at the same time)"
            )
        return "\n".join(lines)


def format_size(n: float) -> str:
    """``1234`` -> ``1.2 kB``: bytes in the unit that shows them: the smallest unit whose
    rounded figure is below 1000 (``999_999`` is ``1.0 MB``, not ``1000.0 kB``)."""
    if 0 < n < 0.5:
        return "<1 B"  # not "0 B": something, if little, was there
    if round(n) < 1000:
        return f"{n:.0f} B"
    for unit, size in (("kB", 1e3), ("MB", 1e6)):
        if round(n / size, 1) < 1000:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1e9:.1f} GB"


def format_rate(bytes_per_second: float) -> str:
    """``2500`` -> ``2.5 kB/s``: never ``0.0 MB/s`` for small data types (``format_size``'s
    units; the timing summary and the progress bar both write rates with it)."""
    return f"{format_size(bytes_per_second)}/s"


def format_number(n: float) -> str:
    """``12345`` -> ``12.3k``."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.3g}"
