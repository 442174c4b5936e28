"""The deadlock breaker shared by the mailboxes of one pipeline run (see ``MailboxGroup``).

It reads and changes the mailboxes' private wait state under their shared lock, so it is
part of the mailbox implementation; it lives apart only to keep each module short.

It also keeps the clock of the run's ``timeout`` fair to the caller: a wait while the caller
is busy with a chunk it took (not reading its output) may only be waiting for the caller, so
it does not count against the ``timeout`` (:meth:`MailboxGroup.caller_busy`).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from strax_decl.engine.mailbox import Mailbox

__all__ = ["MailboxGroup"]


class MailboxGroup:
    """The mailboxes of one pipeline run, sharing one lock so waits can be seen as a whole.

    Bounded mailboxes can deadlock on their bounds alone: in a diamond where plugin B reads
    X and also the output of an overlap-window plugin A that holds output back until it has
    seen more of X, X's sender blocks (B has not read X) while B waits for A, and A waits for
    more X. Every thread of the run is then waiting and at least one of them is a sender
    blocked by a bound. The group counts waiting threads; when all ``threads`` participants
    wait, it lets the blocked senders exceed their bound by one message each. Memory then
    grows only as far as the data really needs (the overlap window), never because of a
    deadlock; ``overflows`` counts how often it happened.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.threads = 0  # participating threads (producers, savers, the output reader)
        self.waiting = 0
        self.overflows = 0
        self.mailboxes: list[Mailbox] = []
        self.deferred: set[Mailbox] = set()  # with senders that could go, not woken yet
        self._caller_busy = False  # the caller holds a chunk and is not reading its output
        self._caller_back: float | None = None  # when it last came back to read (monotonic)

    def caller_busy(self, busy: bool) -> None:
        """The caller reading the run's output took a chunk (``True``: the time it takes is
        its own) or came back to read, or stopped reading (``False``)."""
        with self.lock:
            if self._caller_busy and not busy:
                self._caller_back = time.monotonic()
            self._caller_busy = busy

    @property
    def caller_back(self) -> float | None:
        """When the caller last came back to read, or stopped reading (monotonic)."""
        return self._caller_back

    def later_deadline_locked(self, timeout: float, now: float) -> float | None:
        """The deadline a wait of ``timeout`` s that just expired gets instead, if the caller
        was busy with a chunk since the wait began (a slow caller is not a hang: the clock
        starts again when it comes back to read); None: the wait timed out for real."""
        if self._caller_busy:
            return now + timeout
        back = self._caller_back
        if back is not None and back + timeout > now:
            return back + timeout
        return None

    def add_threads(self, n: int) -> None:
        with self.lock:
            self.threads += n

    def thread_done(self) -> None:
        """A participant ended: the others may now all be waiting."""
        with self.lock:
            self.threads -= 1
            self._break_deadlock_locked()

    def _break_deadlock_locked(self) -> bool:
        """Let every blocked sender overflow by one if all participants wait on nothing else.

        Returns whether it did. The notifications reach only threads already inside
        ``Condition.wait``; a caller that counts itself as waiting but has not started to wait
        yet (:meth:`Mailbox._wait`) must re-check its own condition instead of waiting.
        """
        if self.threads <= 0 or self.waiting < self.threads:
            return False
        # Senders whose wake-up was deferred until more fit (``Mailbox``: "Bounded buffer")
        # may go now: every other thread waits, so nobody else would wake them.
        for mb in list(self.deferred):
            mb._wake_deferred_locked()
        # A waiter that was notified but has not re-taken the lock yet still counts as
        # waiting: it is no deadlock while any waiter's condition already holds.
        if any(mb._has_ready_waiter_locked() for mb in self.mailboxes):
            return False
        broken = False
        for mb in self.mailboxes:
            if mb._senders_waiting and mb._reason is None:
                mb._extra += 1
                self.overflows += 1
                mb._can_send.notify_all()
                broken = True
        return broken
