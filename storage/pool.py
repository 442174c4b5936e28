"""The one small thread pool that compresses, decompresses and does chunk file I/O.

Shared by every saver and loader of the process so that several concurrent savers (one per
data type in a pipeline) do not multiply threads on a 2-core machine. Tasks submitted here never
wait on other tasks of the pool, so sharing it cannot deadlock.

``STORAGE_THREADS`` (environment) sets the size; default 2 (DESIGN.md: more threads than cores
only adds contention, fewer leaves compression serial).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["n_threads", "pool"]

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pid: int | None = None


def n_threads() -> int:
    """Worker count: ``$STORAGE_THREADS`` or 2."""
    try:
        return max(1, int(os.environ.get("STORAGE_THREADS", "2")))
    except ValueError:
        return 2


def pool() -> ThreadPoolExecutor:
    """The process-wide pool, created on first use (and again after a fork)."""
    global _pool, _pid
    with _lock:
        if _pool is None or _pid != os.getpid():
            _pool = ThreadPoolExecutor(max_workers=n_threads(), thread_name_prefix="storage")
            _pid = os.getpid()
        return _pool
