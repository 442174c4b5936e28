"""A request's claims as others see them: what it records, how long it waits, how it ends.

- **What it is doing**: every claim a request takes records it (``recording``), e.g.
  ``iter_chunks/get_array peaks of run r1``, next to the holder's pid, host, start time and
  command line, so whoever finds the data set claimed is told who holds it, since when and why.
- **Waiting for another writer** (``wait_for_writer``): until its data set is complete, its
  writer is gone, or the context's ``timeout``; then ClaimTimeout naming the data set, the
  holder (host, pid, what it is doing, since when) and what to do. Without a ``timeout``
  the wait has no limit (the holder is alive: its heartbeat says so), but it is reported: a
  warning after ``REPORT_FIRST_S`` seconds, then at doubling intervals up to
  ``REPORT_MAX_S``, each naming the same.
- **Streams nobody closed** (``tracked``): a half-read ``iter_chunks`` kept until the
  interpreter exits is closed by an ``atexit`` hook *before* modules are torn down, as if
  the caller had stopped reading: its pipeline stops, its unfinished writes are discarded
  (resumable ones kept ``partial``), and its claims are released last
  (``strax_storage.claims`` releases any claim still left afterwards). Without it, the
  stream would be finalised during module teardown, when
  builtins are gone (``NameError`` tracebacks, break locks left behind).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final, TypeVar

from strax_storage import ClaimInfo, ClaimTimeout, DataKey, Store
from strax_storage.claims import doing

if TYPE_CHECKING:  # pragma: no cover
    from strax_decl.session import Request

__all__ = [
    "REPORT_FIRST_S",
    "REPORT_MAX_S",
    "close_streams",
    "recording",
    "request_doing",
    "tracked",
    "wait_for_writer",
]

log = logging.getLogger(__name__)

REPORT_FIRST_S: Final = 10.0
"""Seconds of waiting for another writer before the first "still waiting" warning."""
REPORT_MAX_S: Final = 600.0
"""The longest interval between two such warnings (they double from the first)."""

S = TypeVar("S", bound=Iterator[Any])


def request_doing(request: Request) -> str:
    """What a request records in the claims it takes (``strax_storage.claims.doing``)."""
    how = "iter_chunks/get_array" if request.output else "make"
    return f"{how} {', '.join(request.targets)} of run {request.run_id}"


def recording(request: Request) -> contextlib.AbstractContextManager[None]:
    """Around taking ``request``'s claims: they record what it does."""
    return doing(request_doing(request))


def _since(holder: ClaimInfo | None, key: DataKey, store: Store) -> str:
    if holder is None:
        return f"data set {key} in {store.url} is being written by another process"
    return (
        f"data set {key} in {store.url} is being written by {holder.describe()} "
        f"(claim {holder.location})"
    )


def wait_for_writer(
    store: Store,
    key: DataKey,
    holder: ClaimInfo | None,
    timeout: float | None,
    report_first: float | None = None,
) -> None:
    """Wait for the data set ``key`` that another writer (``holder``) is writing.

    Returns when it is complete; WriterGone (from ``Store.wait_complete``) as soon as nobody
    is writing it any more; ClaimTimeout after ``timeout`` seconds (None: no limit, but a
    warning after ``report_first`` seconds, default :data:`REPORT_FIRST_S`, and at doubling
    intervals), naming the data set and the holder.
    """
    report_first = REPORT_FIRST_S if report_first is None else report_first
    t0 = time.monotonic()
    deadline = None if timeout is None else t0 + timeout
    next_report = t0 + report_first
    interval = report_first
    while True:
        now = time.monotonic()
        until = next_report if deadline is None else min(next_report, deadline)
        try:
            store.wait_complete(key, timeout=max(0.0, until - now))
            return
        except ClaimTimeout as e:
            holder = e.holder or holder
        now = time.monotonic()
        waited = now - t0
        if deadline is not None and now >= deadline:
            raise ClaimTimeout(
                f"gave up after {waited:.1f} s (the context's timeout) waiting for another "
                f"writer: {_since(holder, key, store)}. If that is a stream left open (a "
                "half-read iter_chunks), close it or read it to the end; else wait longer "
                "(a larger timeout, or none), or use on_conflict='fail' to fail at once",
                key,
                holder,
            ) from None
        if now >= next_report:
            log.warning(
                "still waiting after %.0f s: %s (set the context's timeout to bound this "
                "wait, or on_conflict='fail' to fail at once)",
                waited,
                _since(holder, key, store),
            )
            interval = min(REPORT_MAX_S, 2 * interval)
            next_report = now + interval


# ------------------------------------------------------------------ streams closed at exit

_lock = threading.Lock()
_streams: weakref.WeakSet[Iterator[Any]] = weakref.WeakSet()


def tracked(stream: S) -> S:
    """``stream`` (a request's generator), to be closed at exit if nobody closed it."""
    with _lock:
        _streams.add(stream)
    return stream


def close_streams() -> None:
    """Close every stream still open, as if its caller had stopped reading (at exit)."""
    with _lock:
        streams = list(_streams)
        _streams.clear()
    for stream in streams:
        close = getattr(stream, "close", None)
        if close is None:
            continue
        try:
            close()
        except ValueError:  # being iterated by another thread right now: leave it be
            continue
        except BaseException:
            with contextlib.suppress(Exception):
                log.exception("could not close a stream at exit")


# Registered after strax_storage.claims' own hook (imported above), so it runs before it.
atexit.register(close_streams)
