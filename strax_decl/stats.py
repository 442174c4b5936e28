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

__all__ = ["ComponentStats", "RunStats", "call_timed"]


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
        with self._lock:
            c = self.components.get(name)
            if c is None:
                c = self.components[name] = ComponentStats(name)
            c.seconds += seconds
            if chunks:
                c.chunks += 1
                c.rows += sum(len(x) for x in chunks)
                c.nbytes += sum(x.nbytes for x in chunks)

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
        """A table of where the time went, busiest first."""
        rows = sorted(self.components.values(), key=lambda c: -c.seconds)
        width = max([len(r.name) for r in rows] + [9])
        lines = [
            f"{'component'.ljust(width)}  {'seconds':>8}  {'chunks':>7}  {'rows':>11}  "
            f"{'MB':>9}  {'MB/s':>8}"
        ]
        for r in rows:
            mbps = r.nbytes / 1e6 / r.seconds if r.seconds > 0 else 0.0
            lines.append(
                f"{r.name.ljust(width)}  {r.seconds:8.3f}  {r.chunks:7d}  {r.rows:11d}  "
                f"{r.nbytes / 1e6:9.1f}  {mbps:8.1f}"
            )
        lines.append(f"wall time {self.wall_seconds:.3f} s")
        return "\n".join(lines)
