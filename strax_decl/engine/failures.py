"""The failures of one run, in order, and which data set each one ends (both executors).

With ``keep_finished`` a run goes on after its first failure, so a second one can follow (a
saver's disk fills, then a plugin raises). Each must stay visible: the caller gets the first,
with its traceback, and a note for every later one (each also logged with its own
traceback); an unfinished data set records the failure it depends on, not simply the first
(a plugin's bug is not recorded as another data type's full disk), and stays failed even if
the run then ends on an interrupt or an early stop (which note, or log, the failures before).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from strax_decl.engine.stopping import doomed_types, failure_note

if TYPE_CHECKING:  # pragma: no cover
    from strax_decl.engine.graph import Graph

__all__ = ["RunFailures"]

log = logging.getLogger(__name__)


class RunFailures:
    """What failed in one run, first first (see the module docstring)."""

    def __init__(self, graph: Graph) -> None:
        self._graph = graph
        self._failures: list[BaseException] = []
        self._failed: dict[int, set[str]] = {}  # id of a failure -> data types it failed
        self._noted = False

    def add(self, exc: BaseException, failed: Iterable[str] = ()) -> None:
        """``exc`` failed the component computing ``failed`` (none: a saver's, a hook's).
        The same exception again (it travels downstream) adds the types it failed there."""
        if not any(e is exc for e in self._failures):
            self._unchain(exc)
            self._failures.append(exc)
            self._failed[id(exc)] = set()
        self._failed[id(exc)].update(failed)

    def _unchain(self, exc: BaseException) -> None:
        """A later failure raised while the executor still handled an earlier one has it as
        its implicit ``__context__`` ("During handling of the above exception ..."): an
        artefact of the executor's control flow, not of the plugin's, so it is cut."""
        link, seen = exc, set()
        while link.__context__ is not None and id(link) not in seen:
            seen.add(id(link))
            if any(link.__context__ is e for e in self._failures):
                link.__context__ = None
                return
            link = link.__context__

    @property
    def first(self) -> BaseException | None:
        return self._failures[0] if self._failures else None

    def cause_of(self, data_type: str, default: BaseException) -> BaseException:
        """The failure an unfinished ``data_type`` depends on (``default``: none of them)."""
        for exc in self._failures:
            if data_type in doomed_types(self._graph, self._failed[id(exc)]):
                return exc
        return default

    def note_on(self, raised: BaseException | None) -> None:
        """Note on ``raised`` (once) every other failure, logging each in full: the later
        ones on the first failure, all of them on an interrupt that ended the run after
        them; with nothing raised (an early stop) they are only logged."""
        if self._noted:
            return
        self._noted = True
        when = "later" if raised is self.first else "before it"
        for other in self._failures:
            if other is raised:
                continue
            where = failure_note(other) or "another component failed"
            if raised is not None:
                with contextlib.suppress(Exception):  # an exception refusing notes keeps going
                    raised.add_note(f"{when}, {where}: {type(other).__name__}: {_text(other)}")
            log.error("%s (not the exception raised)", where, exc_info=other)


def _text(exc: BaseException) -> str:
    """``str(exc)``, or what the traceback module prints for an exception that cannot say."""
    try:
        return str(exc)
    except Exception:
        return "<exception str() failed>"
