"""How a run stops, and what each way of stopping leaves behind (both executors).

Three ways, three outcomes:

- **Interrupt** (KeyboardInterrupt, SystemExit, SIGTERM in the CLI): everything stops at
  once; savers that did not finish are *discarded* (their temporary writes removed: the data
  set is absent, as if never started, not ``failed``), except those of data sets a rerun
  resumes (``Graph.keep_partial``), which are *suspended*: kept ``partial``, their final
  prefix for the rerun to continue; the interrupt is re-raised.
- **Early stop** (the caller stops reading: ``break``, closing or dropping the iterator, a
  ``time_range`` whose end is reached): everything stops at once, unfinished savers are
  discarded (or suspended) quietly, nothing is raised.
- **Failure** (an exception in a loader, plugin, saver or a pool's computation): what depends
  on the failing component stops; with ``keep_finished`` the rest runs to its end, so data
  types that do not depend on it are complete and saved (the rerun loads them); unfinished
  savers are marked ``failed`` with the error. The caller gets the original exception with a
  note naming the component, the run and the chunk interval.

Savers that closed before any of this stay complete in every case.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Collection, Iterable, Iterator
from typing import TYPE_CHECKING

from strax_decl.chunk import Chunk
from strax_decl.errors import LiveTimeout, StraxDeclError

if TYPE_CHECKING:  # pragma: no cover
    from strax_decl.engine.graph import Graph

__all__ = [
    "ProcessingStopped",
    "Span",
    "discards",
    "doomed_types",
    "failure_note",
    "is_failure_note",
    "is_interrupt",
    "needed_producers",
    "note_failure",
    "outcome",
]

_NOTE_ATTR = "_strax_decl_failure_note"


class ProcessingStopped(StraxDeclError, RuntimeError):
    """Why a run ended when the caller stopped reading before the end (not an error: nothing
    is raised, and unfinished savers are discarded, not marked failed)."""


def is_interrupt(exc: BaseException | None) -> bool:
    """Ctrl-C, SIGTERM (as the CLI raises it) or ``sys.exit``: stop everything at once."""
    return isinstance(exc, KeyboardInterrupt | SystemExit)


def discards(exc: BaseException | None) -> bool:
    """Does a run ending on ``exc`` discard (or suspend) its unfinished savers instead of
    failing them? A live source's timeout does too: nothing is wrong with the data."""
    return is_interrupt(exc) or isinstance(exc, ProcessingStopped | GeneratorExit | LiveTimeout)


def outcome(error: BaseException | None) -> str:
    """One word for how a run ended: ``done``, ``interrupted``, ``stopped`` or ``failed``."""
    if error is None:
        return "done"
    if is_interrupt(error):
        return "interrupted"
    if isinstance(error, ProcessingStopped | GeneratorExit):
        return "stopped"
    return "failed"


def interrupt_behind(exc: BaseException) -> BaseException | None:
    """The interrupt that made the caller close the stream (``exc`` a GeneratorExit thrown in
    while a KeyboardInterrupt propagates in the caller), if any."""
    seen: set[int] = set()
    context = exc.__context__
    while context is not None and id(context) not in seen:
        if is_interrupt(context):
            return context
        seen.add(id(context))
        context = context.__context__
    return None


# ------------------------------------------------------------------ messages


def _describe(component: str, run_id: str | None) -> str:
    if component.startswith("load "):
        what = f"loading {component[5:]}"
    elif component.startswith("save "):
        what = f"saving {component[5:]}"
    else:
        what = f"plugin {component}"
    return what + " failed" + (f" on run {run_id}" if run_id else "")


def note_failure(
    exc: BaseException,
    component: str,
    run_id: str | None,
    span: tuple[int, int] | str | None,
) -> None:
    """Add once, to ``exc`` itself (type and traceback kept), the sentence users read first:
    ``plugin HitFinder failed on run r1, chunk [t0, t1)``. ``span``: the chunk interval, or
    where a producer without inputs was (``Span.where``: ``after chunk [t0, t1)``, ``before
    its first chunk``). Interrupts get no note."""
    if is_interrupt(exc) or isinstance(exc, ProcessingStopped | GeneratorExit):
        return
    if getattr(exc, _NOTE_ATTR, None) is not None:
        return
    note = _describe(component, run_id)
    if isinstance(span, str):
        note += f", {span}"
    elif span is not None:
        note += f", chunk [{span[0]}, {span[1]})"
    with contextlib.suppress(AttributeError, TypeError):  # an exception refusing attributes
        setattr(exc, _NOTE_ATTR, note)
        exc.add_note(note)


def failure_note(exc: BaseException) -> str | None:
    """The sentence :func:`note_failure` added to ``exc`` (None: none), e.g. for the CLI."""
    note = getattr(exc, _NOTE_ATTR, None)
    return note if isinstance(note, str) else None


_NOTE_RE = re.compile(
    r"^(plugin|loading|saving) \S+ failed( on run \S+)?"
    r"(, (after )?chunk \[-?\d+, -?\d+\)|, before its first chunk)?$"
)


def is_failure_note(line: str) -> bool:
    """Is ``line`` a note of :func:`note_failure` (e.g. in a stored exception's text)?"""
    return _NOTE_RE.match(line.strip()) is not None


class Span:
    """Where a producer is, for the failure note (:attr:`where`). With inputs: the interval of
    the step it works on, from where its previous output ended (or its first input started)
    to the end of its inputs read. Without (a source, a loader): after the last chunk it
    yielded, or before its first."""

    def __init__(self) -> None:
        self.start: int | None = None
        self.end: int | None = None
        self.has_inputs = False
        self.last: tuple[int, int] | None = None  # the last chunk produced

    def reading(self, chunks: Iterable[Chunk]) -> Iterator[Chunk]:
        """Pass ``chunks`` through, widening the span to each."""
        self.has_inputs = True
        return self._reading(chunks)

    def _reading(self, chunks: Iterable[Chunk]) -> Iterator[Chunk]:
        for chunk in chunks:
            if self.start is None:
                self.start = chunk.start
            self.end = chunk.end if self.end is None else max(self.end, chunk.end)
            yield chunk

    def produced(self, chunk: Chunk) -> None:
        """An output chunk was sent: the next step starts where it ended."""
        self.start = chunk.end
        self.last = (chunk.start, chunk.end)

    @property
    def interval(self) -> tuple[int, int] | None:
        if self.start is None or self.end is None or self.end < self.start:
            return None
        return self.start, self.end

    @property
    def where(self) -> tuple[int, int] | str | None:
        """What :func:`note_failure` says of the place: the step's interval, or for a
        producer without inputs ``after chunk [t0, t1)`` / ``before its first chunk``."""
        if self.has_inputs:
            return self.interval
        if self.last is None:
            return "before its first chunk"
        return f"after chunk [{self.last[0]}, {self.last[1]})"


# ------------------------------------------------------------------ what a failure dooms


def doomed_types(graph: Graph, failed: Collection[str]) -> set[str]:
    """``failed`` data types and every data type computed from one of them."""
    doomed = set(failed)
    for producer in graph.producers:  # dependency order: one pass suffices
        if doomed.intersection(producer.inputs):
            doomed.update(producer.outputs)
    return doomed


def needed_producers(graph: Graph, wanted: Collection[str]) -> set[str]:
    """Names of the producers the ``wanted`` data types are computed from (with themselves)."""
    by_output = {o: p for p in graph.producers for o in p.outputs}
    needed: set[str] = set()
    todo = [d for d in wanted if d in by_output]
    while todo:
        producer = by_output[todo.pop()]
        if producer.name in needed:
            continue
        needed.add(producer.name)
        todo.extend(d for d in producer.inputs if d in by_output)
    return needed
