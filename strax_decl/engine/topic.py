"""An output read in the thread that computes it: buffered until every reader took it.

Both the serial executor and the threaded executor's fused segments run producers on demand:
a reader that finds nothing new makes the producer take one step (``node.advance()``), so
nothing is computed ahead of need and buffers stay as short as the readers' lag.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Protocol

from strax_decl.chunk import Chunk
from strax_decl.engine.mailbox import MailboxKilled

__all__ = ["OnDemand", "Topic"]


class OnDemand(Protocol):
    """The producer behind a topic, stepped by its readers."""

    done: bool  # its iterator ended: every chunk was pushed
    error: BaseException | None  # its iterator raised: it is dead

    @property
    def name(self) -> str: ...

    def advance(self) -> None: ...


class Topic:
    """One output of an on-demand producer (see the module docstring)."""

    def __init__(self, node: OnDemand) -> None:
        self.node = node
        self.buffer: deque[Chunk] = deque()
        self.first = 0  # message number of buffer[0]
        self.positions: dict[int, int] = {}

    def subscribe(self) -> int:
        rid = len(self.positions)
        self.positions[rid] = self.first
        return rid

    def unsubscribe(self, rid: int) -> None:
        """A reader that will not read again: stop buffering for it."""
        self.positions.pop(rid, None)
        self._trim()

    def push(self, chunk: Chunk) -> None:
        if self.positions:
            self.buffer.append(chunk)

    def _trim(self) -> None:
        if not self.positions:
            self.first += len(self.buffer)
            self.buffer.clear()
            return
        low = min(self.positions.values())
        while self.buffer and low > self.first:
            self.buffer.popleft()
            self.first += 1

    def read(self, rid: int) -> Iterator[Chunk]:
        node = self.node
        while True:
            pos = self.positions[rid]
            if pos < self.first + len(self.buffer):
                chunk = self.buffer[pos - self.first]
                self.positions[rid] = pos + 1
                if pos == self.first:
                    self._trim()
                yield chunk
            elif node.done:
                return
            elif node.error is not None:  # its iterator is dead: so is this reader, loudly
                raise MailboxKilled(node.error, node.name)
            else:
                node.advance()
