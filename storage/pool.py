"""The one small thread pool that compresses, decompresses and does chunk file I/O.

Shared by every saver and loader of the process so that several concurrent savers (one per
data type in a pipeline) do not multiply threads on a 2-core machine. Tasks submitted here never
wait on other tasks of the pool, so sharing it cannot deadlock.

``STORAGE_THREADS`` (environment) sets the size; default 2 (DESIGN.md: more threads than cores
only adds contention, fewer leaves compression serial). ``STORAGE_THREADS=0`` runs every task
in the thread that submits it: one process then uses one core, which is what you want when
every core already runs its own process (one Dask worker per core, one run each).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["InlineExecutor", "n_threads", "pool"]

T = TypeVar("T")

_lock = threading.Lock()
_pool: Executor | None = None
_pid: int | None = None


class InlineExecutor(Executor):
    """Runs each task at once in the submitting thread; returns its finished future.

    Callers treat it like the thread pool (errors come out of ``future.result()``), since pool
    tasks never wait on each other.
    """

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:  # delivered like a pool task's error
            future.set_exception(e)
        return future


def n_threads() -> int:
    """Worker count: ``$STORAGE_THREADS`` (0: no threads, work inline) or 2."""
    try:
        return max(0, int(os.environ.get("STORAGE_THREADS", "2")))
    except ValueError:
        return 2


def pool() -> Executor:
    """The process-wide pool, created on first use (and again after a fork)."""
    global _pool, _pid
    with _lock:
        if _pool is None or _pid != os.getpid():
            n = n_threads()
            _pool = (
                ThreadPoolExecutor(max_workers=n, thread_name_prefix="storage")
                if n
                else InlineExecutor()
            )
            _pid = os.getpid()
        return _pool
