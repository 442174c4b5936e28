"""The named executors (``processor=``): one registry, one way to call them.

Every executor runs a :class:`~strax_decl.engine.graph.Graph` and yields the chunks of its
output, with the same saver lifecycle and the same hooks; they differ only in how the work
is scheduled::

    for chunk in execute(graph, "threaded", hooks=[stats, bar], max_workers=4): ...

``threaded`` (the default): a thread per loader, source, ``parallel`` plugin and fused
segment of the other plugins, joined by bounded mailboxes, ``parallel`` plugins in pools
(``threaded.py``, ``segments.py``). ``serial``: everything in the
caller's thread, pulling on demand, for debugging and as the reference (``serial.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from strax_decl.chunk import Chunk
from strax_decl.engine.graph import Graph
from strax_decl.engine.hooks import Hook
from strax_decl.engine.serial import run_serial
from strax_decl.engine.threaded import run_threaded
from strax_decl.plugin import Submit

__all__ = ["EXECUTORS", "Executor", "execute"]


class Executor(Protocol):
    """How every registered executor is called (settings it has no use for are ignored)."""

    def __call__(
        self,
        graph: Graph,
        *,
        hooks: Iterable[Hook] = (),
        max_workers: int = 2,
        max_messages: int = 4,
        timeout: float | None = None,
        submit: Submit | None = None,
        keep_finished: bool = True,
        run_id: str | None = None,
    ) -> Iterator[Chunk]: ...


EXECUTORS: dict[str, Executor] = {"threaded": run_threaded, "serial": run_serial}
"""The executors by name, as ``processor=`` names them."""


def execute(
    graph: Graph,
    processor: str = "threaded",
    *,
    hooks: Iterable[Hook] = (),
    max_workers: int = 2,
    max_messages: int = 4,
    timeout: float | None = None,
    submit: Submit | None = None,
    keep_finished: bool = True,
    run_id: str | None = None,
) -> Iterator[Chunk]:
    """Run ``graph`` with the executor named ``processor``; yield the chunks of its output.

    Nothing runs until the first chunk is asked for (a make-only graph: until the iterator
    is exhausted). ``hooks`` observe the run (``strax_decl.engine.hooks``). ``max_workers``,
    ``max_messages``, ``timeout`` and ``submit`` are the threaded executor's (see
    ``run_threaded``). ``keep_finished``: on a failure, what does not depend on the failing
    plugin runs to its end and is saved (``stopping.py``); ``run_id`` is named in the note a
    failure gets. An unknown ``processor`` raises ValueError naming the known ones.
    """
    try:
        executor = EXECUTORS[processor]
    except (KeyError, TypeError):
        names = ", ".join(repr(n) for n in EXECUTORS)
        raise ValueError(f"processor must be one of {names}, got {processor!r}") from None
    return executor(
        graph,
        hooks=hooks,
        max_workers=max_workers,
        max_messages=max_messages,
        timeout=timeout,
        submit=submit,
        keep_finished=keep_finished,
        run_id=run_id,
    )
