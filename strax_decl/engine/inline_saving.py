"""Savers fed in their producer's thread (the threaded executor's default for savers).

A saver thread per data type cost two thread hand-offs per chunk (a wake-up and a GIL
transfer each) for work that is small in Python: ``Saver.send`` checks the chunk and buffers
its rows, and compression runs on the storage pool outside the GIL. With many small chunks
those hand-offs were most of the cost of saving (issue 21). A ``parallel`` producer's chunk
that is still computing in a pool is queued as its future (:meth:`InlineSavers.send_later`)
and saved, in order, once done: the producer saves what is done whenever it sends, and at its
end waits for the rest (:meth:`InlineSavers.save_computed`). A chunk computed inline (a cheap
one, ``pools.INLINE_BELOW_S``) is saved at once, unless it must wait behind one computing.

Closing a saver compresses and writes what it still buffers (with small data sets, all of
it) and then its index and metadata: tens of milliseconds of work that is mostly outside the
GIL. In the threaded executor (``close_in_background``) each saver closes in a thread of its
own, so the closes of a segment's data sets, which all end together at the end of a run,
overlap each other and the work still left; the producer's thread joins them before it ends
(:meth:`InlineSavers.join`), so the run's end still means every data set is closed.

A saver's failure stays its own, as it was with a saver thread: it ends that saver (failed,
with the error) and is reported to the run as ``save <data type>``; the producer goes on as
long as anything else needs it. The run's ``timeout`` still bounds a saver's wait for its
next chunk (a saver thread waited on a mailbox): :meth:`InlineSavers.check_stalled`, called
while the run winds down, fails the savers of a producer that stalls longer.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

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
        close_in_background: bool = False,
    ) -> None:
        self.savers = [(o, s) for o in outputs for s in savers.by_type.get(o, ())]
        self._close_in_background = close_in_background
        self._closing: list[threading.Thread] = []
        self.by_output = {o: [s for d, s in self.savers if d == o] for o, _ in self.savers}
        self._run_savers = savers
        self._hooks = hooks
        self._fail = fail
        self._run_id = run_id
        self._last = time.monotonic()  # when the savers last got a chunk (or were created)
        self._busy = False  # inside a saver's send or close: working, not waiting
        self._n_chunks = 0
        # chunks behind one still computing: futures of a parallel producer's outputs (by
        # output), and (data type, chunk) pairs sent after them
        self._later: deque[Future[dict[str, Chunk]] | tuple[str, Chunk]] = deque()
        self._abandoned = False  # a chunk's computation was cancelled: the run stops

    def send(self, data_type: str, chunk: Chunk) -> None:
        """Save ``chunk`` in every open saver of ``data_type`` (reported as its saver's work),
        after the chunks still computing that came before it."""
        if self._abandoned:  # the run stops: the savers are left to it
            return
        if self._later:
            self._later.append((data_type, chunk))
            self._save_done()
            return
        self._send(data_type, chunk)

    def send_later(
        self, future: Future[dict[str, Chunk]], bound: int, check: Callable[[], None]
    ) -> None:
        """A chunk of every output, still computing: saved once done (see the module doc).
        At most ``bound`` wait here at once (the mailbox bound: chunks in flight stay bounded
        when nobody else reads the outputs); waiting for the oldest, ``check`` raises if the
        run stops."""
        self._later.append(future)
        self._save_done()
        while not self._abandoned and sum(isinstance(x, Future) for x in self._later) > bound:
            head = self._later[0]
            assert isinstance(head, Future)
            _wait_done(head, check)
            self._save_done()

    def save_computed(self) -> bool:
        """The producer finished: wait for the chunks still computing and save them. False if
        a computation was cancelled (the run stops; its savers are left to the run)."""
        while self._later and not self._abandoned:
            head = self._later[0]
            if isinstance(head, Future):
                _wait_done(head)  # not busy: the run's timeout alarm may fire meanwhile
            self._save_done()
        return not self._abandoned

    def _save_done(self) -> None:
        """Save, in order, the queued chunks up to the first still computing. A failed
        computation is raised (the producer's failure, noted where it was computed)."""
        later = self._later
        while later and not self._abandoned:
            head = later[0]
            if isinstance(head, tuple):
                later.popleft()
                self._send(*head)
                continue
            if not head.done():
                return
            later.popleft()
            if head.cancelled():  # only a stopping run cancels computations
                self._abandoned = True
                later.clear()
                return
            for data_type, chunk in head.result().items():
                if data_type in self.by_output:
                    self._send(data_type, chunk)

    def _send(self, data_type: str, chunk: Chunk) -> None:
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
        """The producer finished: close every saver still open (its data set is complete);
        with ``close_in_background``, each in its own thread (see the module docstring)."""
        self._busy = True
        for data_type, saver in self.savers:
            if saver.closed:
                continue
            if not self._close_in_background:
                self._close_one(data_type, saver)
                continue
            closing = threading.Thread(
                target=self._close_one,
                args=(data_type, saver),
                name=f"sd:close {data_type}",
                daemon=True,
            )
            closing.start()
            self._closing.append(closing)

    def join(self) -> None:
        """Wait for the savers closing in the background (a no-op if none are)."""
        for closing in self._closing:
            closing.join()

    def _close_one(self, data_type: str, saver: Saver) -> None:
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


def _wait_done(future: Future[dict[str, Chunk]], check: Callable[[], None] | None = None) -> None:
    """Wait until ``future`` is done, cancelled included (``concurrent.futures.wait`` does not
    wake for a future cancelled outside an executor, e.g. a cluster's), calling ``check``
    (which raises if the run stops) every tenth of a second."""
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    while not done.wait(0.1):
        if check is not None:
            check()
