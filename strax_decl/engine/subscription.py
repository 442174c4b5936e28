"""A reader's iterator over a mailbox (see ``strax_decl.engine.mailbox`` for the rules).

It reads and moves its cursor under the mailbox's lock, so it is part of the mailbox
implementation; it lives apart only to keep each module short.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import CancelledError, Future
from typing import TYPE_CHECKING, Any, Final

from strax_decl.errors import StraxDeclError

if TYPE_CHECKING:  # pragma: no cover
    from strax_decl.engine.mailbox import Mailbox, _Cursor

__all__ = ["ResultRaisedStopIteration", "Subscription"]

_MISSING: Final = object()


class ResultRaisedStopIteration(StraxDeclError, RuntimeError):
    """A message's future failed with ``StopIteration``: raised as is, its reader (a ``for``
    loop, ``next`` in a ``try``) would take it for the end of the stream and truncate it."""


def _future_exception(fut: Future[Any], mailbox: str, pos: int) -> BaseException | None:
    """The exception of a *done* future (a CancelledError if it was cancelled); a
    StopIteration is replaced by an error saying where it came from (its ``__cause__``)."""
    try:
        exc = fut.exception()
    except CancelledError as cancelled:
        return cancelled
    if isinstance(exc, StopIteration):
        error = ResultRaisedStopIteration(
            f"the computation of message {pos} of {mailbox!r} raised StopIteration ({exc!r}); "
            "it must not look like the end of the stream, so the run fails"
        )
        error.__cause__ = exc
        return error
    return exc


class Subscription:
    """One reader's iterator over a mailbox's messages (make it with :meth:`Mailbox.subscribe`).

    Yields messages 0, 1, 2, ... (future results instead of futures); raises
    :class:`MailboxKilled` if the mailbox is killed. :meth:`close` (or garbage collection, or
    leaving a ``with`` block) stops reading early without holding anything back.
    """

    __slots__ = ("_cursor", "_mailbox")

    def __init__(self, mailbox: Mailbox, cursor: _Cursor) -> None:
        self._mailbox = mailbox
        self._cursor = cursor

    @property
    def mailbox(self) -> Mailbox:
        return self._mailbox

    @property
    def position(self) -> int:
        """The number of the next message this subscription will yield."""
        return self._cursor.pos

    @property
    def active(self) -> bool:
        return self._cursor.active

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> Any:
        mailbox = self._mailbox
        cursor = self._cursor
        msgs = mailbox._msgs
        with mailbox._lock:
            deadline: float | None = None
            while True:
                if mailbox._reason is not None:
                    mailbox._raise_killed()
                if not cursor.active:
                    raise StopIteration
                pos = cursor.pos
                msg = msgs.get(pos, _MISSING)
                if msg is not _MISSING:
                    if not isinstance(msg, Future):
                        break
                    if msg.done():
                        exc = _future_exception(msg, mailbox.name, pos)
                        if exc is not None:
                            if mailbox._kill_locked(exc):
                                raise exc  # the first reader to see it raises the original
                            mailbox._raise_killed()
                        msg = msg.result()
                        break
                    what = f"waiting for the result of message {pos}"
                    stuck = False
                elif mailbox._end is not None and pos >= mailbox._end:
                    mailbox._unsubscribe_locked(cursor)
                    raise StopIteration
                else:
                    what = f"waiting for message {pos}"
                    stuck = True
                    mailbox._wake_deferred_locked()
                mailbox._readers_waiting += 1
                if stuck:
                    mailbox._read_waits.append(cursor)
                try:
                    deadline = mailbox._wait(mailbox._can_read, deadline, what, stuck)
                finally:
                    mailbox._readers_waiting -= 1
                    if stuck:
                        mailbox._read_waits.remove(cursor)
            cursor.pos = pos + 1
            if pos == mailbox._base:
                mailbox._advance_base_locked()
            return msg

    def close(self) -> None:
        """Stop reading (unsubscribe). Idempotent."""
        if self._cursor.active:
            self._mailbox._unsubscribe(self._cursor)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        cursor = getattr(self, "_cursor", None)
        if cursor is not None and cursor.active:
            with contextlib.suppress(Exception):  # e.g. at interpreter shutdown
                self._mailbox._unsubscribe_from_finalizer(cursor)

    def __repr__(self) -> str:
        state = "active" if self._cursor.active else "closed"
        return f"<Subscription to {self._mailbox.name!r} at message {self._cursor.pos} ({state})>"
