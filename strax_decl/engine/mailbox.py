"""Mailboxes: ordered, bounded, multi-subscriber message passing between pipeline threads.

Each data type being produced or loaded during processing has one :class:`Mailbox`. One or more
sender threads :meth:`~Mailbox.send` messages (chunks, or :class:`concurrent.futures.Future`
objects that will produce chunks) into it; every reader thread iterates its own
:class:`Subscription` and receives every message, in message-number order.

Rules
-----
Ordering
    Messages are numbered 0, 1, 2, ... (automatically, or explicitly with ``msg_number``).
    Every subscription yields them strictly in that order, whatever order they were sent in.
    A number that is negative, not an integer, already sent, or already delivered raises
    :class:`InvalidMessageNumber`.

Bounded buffer and backpressure (a sliding window)
    Message ``n`` is accepted only once ``n < base + max_messages``, where ``base`` is the
    position of the slowest *active* subscriber (the lowest message number some subscriber has
    not read yet). ``send`` blocks until then. Hence the mailbox never holds more than
    ``max_messages`` messages (``len(mailbox) <= max_messages`` at all times), and a message is
    dropped as soon as every active subscriber has read it. In a :class:`MailboxGroup` a
    blocked sender is woken once half the window is free (several messages per thread
    switch), or as soon as a reader waits for the next message, or when every thread of the
    run waits; its ``timeout`` counts from when its readers last moved on.
    Futures count as held messages until their result is delivered, so a ``parallel`` plugin
    has at most ``max_messages`` chunks in flight. Several threads may send out of order
    concurrently without deadlock (the message everybody waits for is always inside the
    window). A *single* thread that sends out of order must keep each number below ``lowest
    unsent number + max_messages``; otherwise it would wait for itself (the optional
    ``timeout`` turns that into :class:`MailboxTimeout`).

Subscribing
    :meth:`Mailbox.subscribe` may be called before or after sending starts, as long as no
    message has been dropped yet (i.e. message 0 is still held, or was never sent); a late
    subscription raises :class:`LateSubscription` instead of silently missing messages. Until
    the first subscription exists, messages are held (and senders block once ``max_messages``
    are held), so the usual rule is: subscribe every reader, then start the senders.

Stopping early
    :meth:`Subscription.close` (also called when the subscription is garbage collected, e.g.
    when a consumer ``break``s out of a ``for`` loop or a generator wrapping it is closed, and
    by ``with subscription:``) unsubscribes: the reader no longer holds back the senders or
    the other subscribers. When *every* subscriber has stopped, later messages are discarded
    as they arrive, so the senders never block on a mailbox that nobody reads.

Futures
    A :class:`~concurrent.futures.Future` message is awaited by each reader (in order) and
    its result delivered. If it raised (or was cancelled), the mailbox is killed with that
    exception; the first reader that sees it raises the original exception itself, every
    other reader and sender raises :class:`MailboxKilled`.

Closing and killing
    :meth:`Mailbox.close` ends the stream after the messages sent so far (subscriptions raise
    ``StopIteration`` after the last one; a later ``send`` raises :class:`MailboxClosed`).
    :meth:`Mailbox.kill` (idempotent, the first reason wins) wakes every waiting sender and
    reader; from then on ``send`` and iteration raise :class:`MailboxKilled`, whose ``reason``
    is the original exception with its traceback (killing with a ``MailboxKilled`` stores its
    ``reason``, so the original exception travels through any number of mailboxes).

Timeouts
    ``timeout`` is a last-resort alarm, never part of the normal flow: all waiting is done on
    :class:`threading.Condition` objects and woken by sends, reads, closes and kills. A wait
    longer than ``timeout`` seconds kills the mailbox with a :class:`MailboxTimeout` that
    names the mailbox and what was awaited, and raises it in the waiting thread.
    In a :class:`MailboxGroup` (one pipeline run) the time the caller spends with a chunk it
    took from its output does not count: a wait that expires while the caller is busy, or
    that began before the caller came back to read, gets ``timeout`` seconds again from then
    (a slow caller, e.g. a notebook user working on each chunk, is not a hang).

The reader side (:class:`Subscription`) and the deadlock breaker (:class:`MailboxGroup`) live
in ``subscription.py`` and ``mailbox_group.py``, re-exported here.
"""

from __future__ import annotations

import contextlib
import operator
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from typing import Any, NoReturn, SupportsIndex

from strax_decl.engine.mailbox_errors import (
    InvalidMessageNumber,
    LateSubscription,
    MailboxClosed,
    MailboxKilled,
    MailboxTimeout,
)
from strax_decl.engine.mailbox_group import MailboxGroup
from strax_decl.engine.subscription import Subscription

__all__ = [
    "InvalidMessageNumber",
    "LateSubscription",
    "Mailbox",
    "MailboxClosed",
    "MailboxGroup",
    "MailboxKilled",
    "MailboxTimeout",
    "Subscription",
    "kill_all",
    "original_exception",
]


def original_exception(exc: BaseException) -> BaseException:
    """The exception that started it all: ``exc.reason`` for a :class:`MailboxKilled`."""
    return exc.reason if isinstance(exc, MailboxKilled) else exc


def kill_all(mailboxes: Iterable[Mailbox], reason: BaseException) -> None:
    """Kill every mailbox in ``mailboxes`` with ``reason`` (already-killed ones are left as is)."""
    for mailbox in mailboxes:
        mailbox.kill(reason)


class _Cursor:
    """A subscriber's read position, owned by the mailbox (the Subscription is not, so that it
    can be garbage collected)."""

    __slots__ = ("active", "pos")

    def __init__(self) -> None:
        self.pos = 0
        self.active = True


class Mailbox:
    """An ordered, bounded, multi-subscriber mailbox; see the module docstring for the rules.

    :param name: used in error messages (normally the data type).
    :param max_messages: the window size: at most this many messages are held at once.
    :param timeout: seconds any single wait may last before :class:`MailboxTimeout` is raised
        (and the mailbox killed); ``None`` waits forever (kills still wake the waiter).
    """

    def __init__(
        self,
        name: str,
        max_messages: int = 4,
        timeout: float | None = None,
        group: MailboxGroup | None = None,
    ) -> None:
        if isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 1:
            raise ValueError(f"max_messages must be an integer >= 1, got {max_messages!r}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 or None, got {timeout!r}")
        self.name = name
        self.max_messages = max_messages
        self.timeout = timeout
        self._group = group
        # a blocked sender is woken once this many fit again ("Bounded buffer" above)
        self._slack = max(1, max_messages // 2) if group is not None else 1
        self._moved_at = 0.0  # when the slowest reader last moved on (monotonic; with timeout)
        self._lock = group.lock if group is not None else threading.Lock()
        if group is not None:
            group.mailboxes.append(self)
        self._extra = 0  # bound overflow granted by the group to break a deadlock
        self._send_waits: list[int] = []  # message numbers of blocked senders
        self._read_waits: list[_Cursor] = []  # cursors of readers blocked on a message
        self._can_read = threading.Condition(self._lock)
        self._can_send = threading.Condition(self._lock)
        self._msgs: dict[int, Any] = {}  # held messages by number; all numbers >= _base
        self._base = 0  # every message numbered below this has been dropped
        self._next_number = 0  # highest number received + 1
        self._n_received = 0
        self._end: int | None = None  # number of messages in the stream, once closed
        self._closed = False
        self._reason: BaseException | None = None
        self._cursors: list[_Cursor] = []
        self._ever_subscribed = False
        self._readers_waiting = 0
        self._senders_waiting = 0
        self._peak = 0

    # ------------------------------------------------------------------ state
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def killed(self) -> bool:
        return self._reason is not None

    @property
    def reason(self) -> BaseException | None:
        """The exception the mailbox was killed with (``None`` if it was not killed)."""
        return self._reason

    @property
    def peak(self) -> int:
        """The largest number of messages held at any one time."""
        return self._peak

    @property
    def active_subscribers(self) -> int:
        return len(self._cursors)

    @property
    def senders_waiting(self) -> int:
        """Threads blocked in :meth:`send` right now (for diagnostics and tests)."""
        return self._senders_waiting

    @property
    def readers_waiting(self) -> int:
        """Threads blocked reading a subscription right now (for diagnostics and tests)."""
        return self._readers_waiting

    def __len__(self) -> int:
        """Messages currently held (sent, and not yet read by every active subscriber)."""
        return len(self._msgs)

    def __bool__(self) -> bool:  # an empty mailbox is still a mailbox
        return True

    def __repr__(self) -> str:
        state = "killed" if self.killed else "closed" if self._closed else "open"
        return (
            f"<Mailbox {self.name!r} {state}: held={len(self._msgs)}/{self.max_messages}"
            f" base={self._base} sent={self._n_received} subscribers={len(self._cursors)}>"
        )

    # ------------------------------------------------------------ subscribing
    def subscribe(self) -> Subscription:
        """A new iterator over every message (see "Subscribing" in the module docstring)."""
        cursor = _Cursor()
        with self._lock:
            if self._reason is None:
                if self._base > 0:
                    raise LateSubscription(
                        f"cannot subscribe to mailbox {self.name!r}: messages 0..{self._base - 1}"
                        " were already delivered and dropped; subscribe before sending starts"
                    )
                self._cursors.append(cursor)
                self._ever_subscribed = True
            # else: a subscription to a killed mailbox just raises MailboxKilled when iterated
        return Subscription(self, cursor)

    def _unsubscribe_locked(self, cursor: _Cursor) -> None:
        if not cursor.active:
            return
        cursor.active = False
        with contextlib.suppress(ValueError):
            self._cursors.remove(cursor)
        if self._readers_waiting:  # the subscription may be waited on by another thread
            self._can_read.notify_all()
        self._advance_base_locked()

    def _unsubscribe(self, cursor: _Cursor) -> None:
        with self._lock:
            self._unsubscribe_locked(cursor)

    def _unsubscribe_from_finalizer(self, cursor: _Cursor) -> None:
        # A finalizer can run in any thread at any allocation, including inside this mailbox's
        # critical section in the same thread; blocking on the (non-reentrant) lock there would
        # deadlock. So only take the lock if it is free, else hand the job to a helper thread.
        if self._lock.acquire(blocking=False):
            try:
                self._unsubscribe_locked(cursor)
            finally:
                self._lock.release()
        else:
            with contextlib.suppress(RuntimeError):  # interpreter shutting down
                threading.Thread(
                    target=self._unsubscribe,
                    args=(cursor,),
                    name=f"unsubscribe-{self.name}",
                    daemon=True,
                ).start()

    def _advance_base_locked(self) -> None:
        """Drop the messages every active subscriber has read, and wake blocked senders."""
        cursors = self._cursors
        if cursors:
            new_base = cursors[0].pos
            for cursor in cursors:
                if cursor.pos < new_base:
                    new_base = cursor.pos
        elif self._ever_subscribed:  # nobody reads any more: discard what has arrived in order
            new_base = self._base
            while new_base in self._msgs:
                new_base += 1
        else:  # nobody subscribed yet: hold everything
            return
        if new_base > self._base:
            msgs = self._msgs
            for number in range(self._base, new_base):
                msgs.pop(number, None)
            self._base = new_base
            if self._extra and len(self._msgs) < self.max_messages:
                self._extra = 0  # the readers caught up: the normal bound holds again
            if self.timeout is not None:
                self._moved_at = time.monotonic()
            if self._senders_waiting:
                group, waiting = self._group, min(self._send_waits, default=self._next_number)
                room = self._base + self.max_messages + self._extra - waiting
                if group is None or room >= self._slack or self._read_waits:
                    self._can_send.notify_all()  # a reader waiting for more is not kept waiting
                else:  # woken when more fit, a reader waits, or every thread of the run waits
                    group.deferred.add(self)

    def _wake_deferred_locked(self) -> None:
        """A sender whose wake-up was deferred goes now (a reader is about to wait for the next
        message, or every thread of the run waits)."""
        group = self._group
        if group is not None and self in group.deferred:
            group.deferred.discard(self)
            if self._senders_waiting:
                self._can_send.notify_all()

    # ---------------------------------------------------------------- waiting
    def _has_ready_waiter_locked(self) -> bool:
        """Whether a blocked sender or reader of this mailbox can already go on."""
        if self._reason is not None and (self._send_waits or self._read_waits):
            return True
        limit = self._base + self.max_messages + self._extra
        if any(n < limit for n in self._send_waits):
            return True
        for cursor in self._read_waits:
            if not cursor.active or cursor.pos in self._msgs:
                return True
            if self._end is not None and cursor.pos >= self._end:
                return True
        return False

    def _wait(
        self, cond: threading.Condition, deadline: float | None, what: str, stuck: bool = True
    ) -> float | None:
        """Wait once on ``cond`` (lock held); returns the deadline to pass to the next wait.

        ``stuck=False`` marks a wait that other work will end by itself (a future being
        computed), which the group must not count as a possible deadlock.
        """
        group = self._group
        if group is not None and stuck:
            group.waiting += 1
            try:
                if group._break_deadlock_locked():
                    # This thread completed the deadlock, so it may be a sender that was just
                    # granted the overflow itself; the notify_all went out before it waited
                    # and cannot wake it. Return as a spurious wake-up: the caller re-checks
                    # its condition and, if it still cannot go on, waits again.
                    return deadline
                return self._wait_unmonitored(cond, deadline, what)
            finally:
                group.waiting -= 1
        return self._wait_unmonitored(cond, deadline, what)

    def _wait_unmonitored(
        self, cond: threading.Condition, deadline: float | None, what: str
    ) -> float | None:
        if self.timeout is None:
            cond.wait()
            return None
        now = time.monotonic()
        if deadline is None:
            deadline = now + self.timeout
        elif now >= deadline and self._group is not None:
            # Waiting while the caller was busy with a chunk is no hang: start again; nor is
            # a sender's wait while its readers move on (its wake-up may be deferred).
            deadline = self._group.later_deadline_locked(self.timeout, now) or deadline
            if cond is self._can_send and self._moved_at + self.timeout > now:
                deadline = self._moved_at + self.timeout
        if now >= deadline:
            exc = MailboxTimeout(
                f"mailbox {self.name!r}: gave up after {self.timeout} s {what}"
                f" (held {len(self._msgs)}/{self.max_messages}, {len(self._cursors)} subscribers)"
            )
            self._kill_locked(exc)
            raise exc
        cond.wait(deadline - now)
        return deadline

    def _raise_killed(self) -> NoReturn:
        reason = self._reason
        assert reason is not None
        raise MailboxKilled(reason, self.name) from reason

    def _wake_readers(self, _fut: Future[Any]) -> None:
        """Done-callback of future messages (runs in the thread completing the future)."""
        with self._lock:
            if self._readers_waiting:
                self._can_read.notify_all()

    # ---------------------------------------------------------------- sending
    def _check_number(self, msg_number: object) -> int:
        if isinstance(msg_number, bool):
            raise InvalidMessageNumber(f"mailbox {self.name!r}: bad message number {msg_number!r}")
        try:
            number = operator.index(msg_number)  # type: ignore[arg-type]
        except TypeError:
            raise InvalidMessageNumber(
                f"mailbox {self.name!r}: message number must be an integer, got {msg_number!r}"
            ) from None
        if number < 0:
            raise InvalidMessageNumber(f"mailbox {self.name!r}: negative message number {number}")
        if number < self._base:
            raise InvalidMessageNumber(
                f"mailbox {self.name!r}: message {number} was already sent and delivered"
            )
        if number in self._msgs:
            raise InvalidMessageNumber(f"mailbox {self.name!r}: message {number} was already sent")
        return number

    def send(self, msg: object, msg_number: SupportsIndex | None = None) -> None:
        """Send ``msg`` as message ``msg_number`` (default: highest number sent so far + 1).

        Blocks while the number is outside the window (see the module docstring).
        """
        if isinstance(msg, Future):
            msg.add_done_callback(self._wake_readers)
        with self._lock:
            deadline: float | None = None
            while True:
                if self._reason is not None:
                    self._raise_killed()
                if self._closed:
                    raise MailboxClosed(f"cannot send to mailbox {self.name!r}: it is closed")
                number = self._next_number if msg_number is None else self._check_number(msg_number)
                if number < self._base + self.max_messages + self._extra:
                    break
                self._senders_waiting += 1
                self._send_waits.append(number)
                try:
                    deadline = self._wait(
                        self._can_send, deadline, f"waiting to send message {number}"
                    )
                finally:
                    self._senders_waiting -= 1
                    self._send_waits.remove(number)
            msgs = self._msgs
            msgs[number] = msg
            self._n_received += 1
            if number >= self._next_number:
                self._next_number = number + 1
            if len(msgs) > self._peak:
                self._peak = len(msgs)
            if self._readers_waiting:
                self._can_read.notify_all()
            if not self._cursors and self._ever_subscribed:
                self._advance_base_locked()

    def send_from(self, iterable: Iterable[object]) -> None:
        """Send every item of ``iterable`` in order, then :meth:`close`.

        Any exception (raised by the iterable, or by ``send`` because the mailbox was killed
        meanwhile) kills the mailbox (a no-op if it is already killed; a ``MailboxKilled``
        from an upstream mailbox passes on its original reason), closes the iterator if it has
        a ``close`` method (so that a generator runs its cleanup), and is re-raised.
        """
        iterator: Iterator[object] | None = None
        try:
            iterator = iter(iterable)
            for msg in iterator:
                self.send(msg)
        except BaseException as exc:
            self.kill(exc)
            close = getattr(iterator, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
            raise
        self.close()

    def close(self) -> None:
        """End the stream after the messages sent so far (no-op if closed or killed).

        Closing with missing message numbers (gaps) kills the mailbox with an
        :class:`InvalidMessageNumber`, which is raised.
        """
        with self._lock:
            if self._reason is not None or self._closed:
                return
            self._closed = True
            end = self._next_number
            if self._n_received != end:
                missing = [n for n in range(self._base, end) if n not in self._msgs]
                exc = InvalidMessageNumber(
                    f"mailbox {self.name!r} closed with {len(missing)} missing message(s):"
                    f" {missing[:10]}"
                )
                self._kill_locked(exc)
                raise exc
            self._end = end
            self._can_read.notify_all()
            self._can_send.notify_all()

    # ---------------------------------------------------------------- killing
    def kill(self, reason: BaseException) -> None:
        """Kill the mailbox: every waiting and future ``send``/read raises :class:`MailboxKilled`.

        Idempotent; the first reason wins. A :class:`MailboxKilled` reason is unwrapped to the
        original exception.
        """
        reason = original_exception(reason)
        if not isinstance(reason, BaseException):
            raise TypeError(f"kill() needs an exception, got {reason!r}")
        with self._lock:
            self._kill_locked(reason)

    def _kill_locked(self, reason: BaseException) -> bool:
        if self._reason is not None:
            return False
        self._reason = original_exception(reason)
        self._msgs.clear()
        self._can_read.notify_all()
        self._can_send.notify_all()
        return True
