"""The savers of one run: one lifecycle for both executors.

Savers are created when the run starts (so a graph that is never run writes nothing), fed
every chunk of their data type, and closed when that data type's producer has finished. When
the run fails, every saver that did not close is marked failed with the original error it
depends on (``RunFailures``; a failed data set is never loaded as cache); when it is
interrupted or the caller stops reading early, every saver that did not close is discarded
quietly (absent, not failed: see ``stopping.py``), except that a resumable data set's
(``Graph.keep_partial``) is suspended: its final prefix stays, ``partial``, for the rerun to
continue. ``fail`` and ``discard`` after ``close`` are no-ops, so a data set whose producer
finished before the stop stays complete. Each saver's work is reported to the hooks as
``"save <data type>"``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Iterator

from strax_decl.engine.graph import Graph
from strax_decl.engine.hooks import Hook
from strax_decl.engine.stopping import discards
from strax_storage import Saver
from strax_storage.chunk import Chunk

__all__ = ["RunSavers"]


class RunSavers:
    """The savers of one run by data type; see the module docstring for the lifecycle."""

    def __init__(self, hooks: Hook) -> None:
        self.hooks = hooks
        self.by_type: dict[str, list[Saver]] = {}
        self.keep_partial: set[str] = set()  # data types a stop suspends (``Graph``'s)

    def open(self, graph: Graph) -> None:
        """Create every saver of ``graph`` (those created before an error are kept, to fail)."""
        self.keep_partial = set(graph.keep_partial)
        for data_type, factories in graph.savers.items():
            group = self.by_type.setdefault(data_type, [])
            for make in factories:
                group.append(make())

    def items(self) -> Iterator[tuple[str, Saver]]:
        for data_type, group in self.by_type.items():
            for saver in group:
                yield data_type, saver

    def send(self, data_type: str, chunk: Chunk) -> None:
        """Push mode: write ``chunk`` to every saver of ``data_type``."""
        for saver in self.by_type.get(data_type, ()):
            t0 = time.perf_counter()
            saver.send(chunk)
            self.hooks.on_chunk(f"save {data_type}", time.perf_counter() - t0, [chunk])

    def close(self, data_type: str) -> None:
        """``data_type`` is complete: close its savers."""
        for saver in self.by_type.get(data_type, ()):
            saver.close()

    def stop(
        self,
        error: BaseException,
        skip: Container[Saver] = (),
        cause: Callable[[str, BaseException], BaseException] | None = None,
    ) -> None:
        """End every saver that did not close as the run ended on ``error`` (discarded for an
        interrupt or early stop, else failed), except those in ``skip`` (still busy). A
        failed data set records ``cause(data_type, error)`` (``RunFailures.cause_of``)."""
        for data_type, saver in self.items():
            if saver not in skip:
                # a data set a failure doomed is failed even if the run then ends otherwise
                why = error if cause is None else cause(data_type, error)
                self.stop_one(saver, why)  # a no-op for savers that closed (complete data)

    def stop_one(self, saver: Saver, error: BaseException) -> None:
        if not discards(error):
            saver.fail(error)
        elif saver.key.data_type in self.keep_partial:
            saver.suspend()  # resumable: its final prefix stays, ``partial`` (or discarded)
        else:
            saver.discard()
