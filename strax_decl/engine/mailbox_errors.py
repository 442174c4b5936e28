"""The exceptions of the mailboxes (``strax_decl.engine.mailbox``, which re-exports them)."""

from __future__ import annotations

from strax_decl.errors import StraxDeclError

__all__ = [
    "InvalidMessageNumber",
    "LateSubscription",
    "MailboxClosed",
    "MailboxKilled",
    "MailboxTimeout",
]


class MailboxKilled(StraxDeclError):
    """Raised in readers and senders of a killed mailbox.

    ``reason`` is the original exception (with its ``__traceback__``); it is also the
    ``__cause__`` of the raised ``MailboxKilled``.
    """

    def __init__(self, reason: BaseException, mailbox: str = "?") -> None:
        super().__init__(reason, mailbox)
        self.reason = reason
        self.mailbox = mailbox

    def __str__(self) -> str:
        return f"mailbox {self.mailbox!r} was killed by {type(self.reason).__name__}: {self.reason}"


class MailboxClosed(StraxDeclError):
    """Sending to a closed mailbox."""


class InvalidMessageNumber(StraxDeclError, ValueError):
    """A message number that is not an integer >= 0, or was already sent or delivered."""


class MailboxTimeout(StraxDeclError):
    """A wait on a mailbox lasted longer than its ``timeout`` (a last-resort alarm)."""


class LateSubscription(StraxDeclError, RuntimeError):
    """Subscribing after the mailbox has already dropped messages."""
