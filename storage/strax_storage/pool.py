"""The one small thread pool that compresses, decompresses and does chunk file I/O.

Shared by every saver and loader of the process so that several concurrent savers (one per
data type in a pipeline) do not multiply threads on a 2-core machine. Tasks submitted here never
wait on other tasks of the pool, so sharing it cannot deadlock.

``STORAGE_THREADS`` (environment) sets the size; default 2 (DESIGN.md: more threads than cores
only adds contention, fewer leaves compression serial). ``STORAGE_THREADS=0`` runs every task
in the thread that submits it: one process then uses one core, which is what you want when
every core already runs its own process (one Dask worker per core, one run each). Code that
knows better than the default (a one-thread Dask worker) says so with
:func:`set_default_threads`; the environment variable still wins.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["DEFAULT_THREADS", "InlineExecutor", "n_threads", "pool", "set_default_threads"]

T = TypeVar("T")

DEFAULT_THREADS = 2

_lock = threading.Lock()
_pool: Executor | None = None
_pool_threads: int | None = None
_pid: int | None = None
_default_threads = DEFAULT_THREADS


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
    """Worker count: ``$STORAGE_THREADS`` (0: no threads, work inline), else the default."""
    try:
        n = int(os.environ.get("STORAGE_THREADS", str(_default_threads)))
    except ValueError:
        return _default_threads
    return n if n >= 0 else _default_threads


def set_default_threads(n: int) -> None:
    """The worker count to use when ``$STORAGE_THREADS`` is not set (from the next task on)."""
    global _default_threads
    if n < 0:
        raise ValueError(f"storage threads must be >= 0, got {n}")
    _default_threads = n


def pool() -> Executor:
    """The process-wide pool, created on first use (again after a fork or a new size).

    A pool replaced by one of another size finishes the tasks it was given and takes new ones
    from whoever still holds it.
    """
    global _pool, _pool_threads, _pid
    with _lock:
        n = n_threads()
        if _pool is None or _pid != os.getpid() or _pool_threads != n:
            # The replaced pool is not shut down: a saver or loader may still hold its
            # ``submit`` for the loop it is in. Unreferenced, its threads end when idle.
            _pool = (
                ThreadPoolExecutor(max_workers=n, thread_name_prefix="storage")
                if n
                else InlineExecutor()
            )
            _pool_threads, _pid = n, os.getpid()
        return _pool
