"""Savers fed in their producer's thread (the threaded executor's default for savers).

A saver thread per data type cost two thread hand-offs per chunk (a wake-up and a GIL
transfer each) for work that is small in Python: ``Saver.send`` checks the chunk and buffers
its rows, and compression runs on the storage pool outside the GIL. With many small chunks
those hand-offs were most of the cost of saving (issue 21). A ``parallel`` producer sends
futures, so its savers keep their own threads.

A saver's failure stays its own, as it was with a saver thread: it ends that saver (failed,
with the error) and is reported to the run as ``save <data type>``; the producer goes on as
long as anything else needs it. The run's ``timeout`` still bounds a saver's wait for its
next chunk (a saver thread waited on a mailbox): :meth:`InlineSavers.check_stalled`, called
while the run winds down, fails the savers of a producer that stalls longer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from strax_decl.engine.hooks import Hooks
from strax_decl.engine.mailbox import MailboxTimeout
from strax_decl.engine.saving import RunSavers
from strax_decl.engine.stopping import note_failure
from strax_storage import Saver
from strax_storage.chunk import Chunk

__all__ = ["InlineSavers"]


class InlineSavers:
    """The savers of one producer's ``outputs``, called from the producer's thread."""

    def __init__(
        self,
        outputs: tuple[str, ...],
        savers: RunSavers,
        hooks: Hooks,
        fail: Callable[[BaseException], None],
        run_id: str | None,
    ) -> None:
        self.savers = [(o, s) for o in outputs for s in savers.by_type.get(o, ())]
        self.by_output = {o: [s for d, s in self.savers if d == o] for o, _ in self.savers}
        self._run_savers = savers
        self._hooks = hooks
        self._fail = fail
        self._run_id = run_id
        self._last = time.monotonic()  # when the savers last got a chunk (or were created)
        self._busy = False  # inside a saver's send or close: working, not waiting
        self._n_chunks = 0

    def send(self, data_type: str, chunk: Chunk) -> None:
        """Save ``chunk`` in every open saver of ``data_type`` (reported as its saver's work)."""
        self._busy = True
        try:
            for saver in self.by_output[data_type]:
                if saver.closed:  # failed before: its failure was reported then
                    continue
                t0 = time.perf_counter()
                try:
                    saver.send(chunk)
                except Exception as e:
                    self._failed(data_type, saver, e)
                    continue
                self._hooks.on_chunk(f"save {data_type}", time.perf_counter() - t0, [chunk])
        finally:
            self._n_chunks += 1
            self._last = time.monotonic()
            self._busy = False

    def close(self) -> None:
        """The producer finished: close every saver still open (its data set is complete)."""
        self._busy = True
        for data_type, saver in self.savers:
            if not saver.closed:
                try:
                    saver.close()
                except Exception as e:
                    self._failed(data_type, saver, e)

    def check_stalled(
        self, timeout: float | None, producer: str, caller_back: float | None = None
    ) -> None:
        """Fail the open savers if they have waited ``timeout`` s for the next chunk (the
        last-resort alarm a saver thread's mailbox wait had; None: no alarm). The wait is
        counted from ``caller_back`` if later (when the caller last came back to read or
        stopped reading): a producer the caller paused was not stalled."""
        since = max(self._last, caller_back or 0.0)
        if timeout is None or self._busy or time.monotonic() - since < timeout:
            return
        for data_type, saver in self.savers:
            if not saver.closed:
                exc = MailboxTimeout(
                    f"saver of {data_type!r}: gave up after {timeout} s waiting for chunk "
                    f"{self._n_chunks} from {producer}"
                )
                self._failed(data_type, saver, exc)

    def _failed(self, data_type: str, saver: Saver, exc: Exception) -> None:
        note_failure(exc, f"save {data_type}", self._run_id, None)
        self._run_savers.stop_one(saver, exc)  # the saver already failed itself: a no-op
        self._fail(exc)
