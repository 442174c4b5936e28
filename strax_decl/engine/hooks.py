"""Lifecycle hooks: what a run reports, for timing, progress bars and inspection.

The executors call the hooks they are given; nothing is pushed onto plugin instances or
kept in the graph. Subclass :class:`Hook` and override what you need::

    class Counter(Hook):
        def on_chunk(self, component, seconds, chunks):
            ...

    for chunk in execute(graph, "threaded", hooks=[RunStats(), Counter()]): ...

The calls, in order: ``on_start`` once when the run starts (its savers exist, nothing has
run yet); ``on_plugin`` once per plugin instance created for the run; ``on_chunk`` for every
piece of work (a loader's chunk, a plugin's step, a saver's write), from whichever thread did
it; ``on_end`` once when the run has ended (every thread joined), with the error it ended on
(None: it completed). Hooks run in pipeline threads, so they must be thread-safe and quick.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from strax_storage.chunk import Chunk

if TYPE_CHECKING:  # pragma: no cover
    from strax_decl.engine.graph import Graph
    from strax_decl.engine.mailbox import Mailbox
    from strax_decl.plugin import Plugin

__all__ = ["Hook", "Hooks", "MailboxesSeen"]

log = logging.getLogger(__name__)


class Hook:
    """A no-op observer of one run; override the methods you need."""

    def on_start(self, graph: Graph, mailboxes: Mapping[str, Mailbox]) -> None:
        """The run starts; ``mailboxes`` by data type (threaded executor; empty otherwise)."""

    def on_plugin(self, component: str, plugin: Plugin) -> None:
        """``plugin`` (set up, not run yet) is the instance that computes for ``component``."""

    def on_chunk(self, component: str, seconds: float, chunks: Sequence[Chunk]) -> None:
        """``component`` (e.g. ``"Peaks"``, ``"load peaks"``, ``"save peaks"``) worked
        ``seconds`` on one step that produced (or, for a saver, consumed) ``chunks``."""

    def on_end(self, error: BaseException | None) -> None:
        """The run ended: ``error`` is why it stopped (None: it completed)."""


class Hooks(Hook):
    """Several hooks called as one, in order.

    An exception in ``on_start``, ``on_plugin`` or ``on_chunk`` fails the run like any error
    in the pipeline; one in ``on_end`` is logged, so it can neither hide the run's own error
    nor keep the other hooks from hearing of the end.
    """

    def __init__(self, hooks: Iterable[Hook] = ()) -> None:
        self.hooks: tuple[Hook, ...] = tuple(hooks)

    def on_start(self, graph: Graph, mailboxes: Mapping[str, Mailbox]) -> None:
        for hook in self.hooks:
            hook.on_start(graph, mailboxes)

    def on_plugin(self, component: str, plugin: Plugin) -> None:
        for hook in self.hooks:
            hook.on_plugin(component, plugin)

    def on_chunk(self, component: str, seconds: float, chunks: Sequence[Chunk]) -> None:
        for hook in self.hooks:
            hook.on_chunk(component, seconds, chunks)

    def on_end(self, error: BaseException | None) -> None:
        for hook in self.hooks:
            try:
                hook.on_end(error)
            except Exception:
                log.exception("hook %r failed in on_end", hook)

    def add_timed(self, component: str, timed: tuple[Any, float]) -> Any:
        """Report a ``call_timed`` result (chunks: a dict's values); return the call's result."""
        result, seconds = timed
        chunks = list(result.values()) if isinstance(result, Mapping) else []
        self.on_chunk(component, seconds, chunks)
        return result


class MailboxesSeen(Hook):
    """Keeps the run's mailboxes for inspection after it (``Mailbox.peak``, ``closed``...)."""

    def __init__(self) -> None:
        self.mailboxes: dict[str, Mailbox] = {}

    def on_start(self, graph: Graph, mailboxes: Mapping[str, Mailbox]) -> None:
        self.mailboxes = dict(mailboxes)
