"""The pools of one threaded run: where ``parallel`` plugins' chunk computations go.

``True``/``"thread"``: a thread pool, ``"process"``: a process pool, both of ``max_workers``
and created on first use; or the caller's own ``submit`` (e.g. a Dask cluster). Every
computation is tracked until done, so a stop can cancel what has not started, and wrapped
so that its exception gets its note (plugin, run, chunk) in the worker, before any reader
sees it. Shutting down after a stop terminates worker processes at once (their results
would be thrown away) and waits for thread computations only until a deadline: those still
running then are reported by plugin. A thread cannot be ended, so the pool's threads are
daemons: a computation that never returns does not hold up the interpreter's exit either
(``ThreadPoolExecutor`` joins its threads at exit).

A thread pool only pays for chunks that take long to compute: sending one to a pool thread and
its result back costs two thread wake-ups and GIL transfers (about 0.1 ms on a loaded
machine), which with many small chunks was a large part of the run (issue 21). So a plugin
whose chunks compute in less than :data:`INLINE_BELOW_S` on average computes them in the
thread that submits them and hands back a finished future; once its chunks grow, they go to
the pool again (``_CostGauge``). Results are the same either way; only where the work runs
changes. Process pools and a caller's ``submit`` (a cluster) are always used as asked.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any

from strax_decl.engine.stopping import note_failure
from strax_decl.plugin import Submit

__all__ = ["COMPUTE_THREAD_PREFIX", "INLINE_BELOW_S", "DaemonThreadPool", "RunPools"]

COMPUTE_THREAD_PREFIX = "sd-compute"
"""Thread pool threads are named ``sd-compute_<n>``."""

INLINE_BELOW_S = 2.5e-4
"""A thread-pool plugin whose chunks take less than this on average computes them inline (see
the module docstring): about twice the cost of a pool round trip here."""


class _CostGauge:
    """A plugin's running mean compute time per chunk, which says where its next chunk goes.

    The first chunk goes to the pool (nothing is known yet). Updates from several pool threads
    may race; a lost update only delays the switch by a chunk.
    """

    __slots__ = ("mean",)

    def __init__(self) -> None:
        self.mean: float | None = None

    def inline(self) -> bool:
        mean = self.mean
        return mean is not None and mean < INLINE_BELOW_S

    def record(self, seconds: float) -> None:
        # Clipped: one computation that waited long for the GIL (a pool thread may wait a
        # switch interval, 5 ms) must not send many cheap chunks back to the pool, while
        # chunks that really grew are seen at the next one.
        seconds = min(seconds, 2 * INLINE_BELOW_S)
        mean = self.mean
        self.mean = seconds if mean is None else 0.5 * (mean + seconds)


def _process_start_method() -> str:
    """``$STRAX_DECL_START_METHOD``, else ``forkserver`` where available, else ``spawn``.

    Not ``fork`` by default: the pool starts while loader, saver and storage threads run, and a
    forked child inherits whatever locks they hold at that moment (a classic source of hangs;
    Python 3.14 dropped ``fork`` as the default for this reason). The fork server is
    single-threaded, so forking from it is safe. The price: a script whose plugins run in
    processes needs the ``if __name__ == "__main__":`` guard, and the plugin classes must be
    importable by module name (not defined in ``__main__`` of a notebook). Set the variable
    to ``fork`` to trade that safety for convenience.
    """
    chosen = os.environ.get("STRAX_DECL_START_METHOD")
    if chosen:
        return chosen
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


class DaemonThreadPool(Executor):
    """A pool of ``max_workers`` daemon threads (started as needed), otherwise like
    ``ThreadPoolExecutor``; see the module docstring for why daemons."""

    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        self.max_workers = max_workers
        self.prefix = thread_name_prefix
        self.threads: list[threading.Thread] = []
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new computations after the pool shut down")
            fut: Future[Any] = Future()
            self._queue.put((fut, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and len(self.threads) < self.max_workers:
                thread = threading.Thread(
                    target=self._work, name=f"{self.prefix}_{len(self.threads)}", daemon=True
                )
                thread.start()
                self.threads.append(thread)
            return fut

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.put(None)  # for the next thread
                return
            fut, fn, args, kwargs = item
            del item
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn(*args, **kwargs))
                except BaseException as e:
                    fut.set_exception(e)
            del fut, fn, args, kwargs  # no reference to the last computation while idle
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            self._queue.put(None)
        if wait:
            for thread in self.threads:
                thread.join()


class RunPools:
    """The pools and pending computations of one run."""

    def __init__(self, max_workers: int, submit: Submit | None, run_id: str | None) -> None:
        self.max_workers = max_workers
        self.submit = submit  # the caller's executor for parallel plugins (None: own pools)
        self.run_id = run_id
        self.pools: dict[str, Executor] = {}
        self.pending: dict[Future[Any], str] = {}  # submitted, not done yet -> plugin name
        self.in_process: set[Future[Any]] = set()  # those of them computed in processes
        self.stopped = False
        self._lock = threading.Lock()

    def cancel_pending(self) -> None:
        """Cancel what has not started (from now on, also what is submitted later)."""
        self.stopped = True
        with self._lock:
            pending = list(self.pending)
        for fut in pending:
            fut.cancel()  # no-op for running or finished computations

    def _track(self, fut: Future[Any], name: str, in_process: bool = False) -> Future[Any]:
        with self._lock:
            self.pending[fut] = name
            if in_process:
                self.in_process.add(fut)
        fut.add_done_callback(self._untrack)
        if self.stopped:  # submitted after the run was told to stop
            fut.cancel()
        return fut

    def _untrack(self, fut: Future[Any]) -> None:
        with self._lock:
            self.pending.pop(fut, None)
            self.in_process.discard(fut)

    def submitter(self, name: str, mode: bool | str) -> Submit | None:
        """The ``submit`` given to the parallel plugin ``name`` (None: compute inline)."""
        run_id = self.run_id
        if mode and self.submit is not None:  # e.g. a Dask cluster (strax_decl.cluster)
            custom = self.submit

            def submit_custom(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
                fut = custom(fn, *args, **kwargs)
                fut.add_done_callback(lambda f: _note_future(f, name, run_id, args))
                return self._track(fut, name)

            return submit_custom
        if not mode or self.max_workers <= 1:
            return None
        if mode == "process":
            pool = self.pools.get("process")
            if pool is None:
                context = multiprocessing.get_context(_process_start_method())
                pool = self.pools["process"] = ProcessPoolExecutor(
                    self.max_workers, mp_context=context
                )
            process_pool = pool

            def submit_process(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
                # Pickle here, in the producer's thread: an unpicklable plugin raises at once,
                # naming the plugin, instead of breaking the pool's feeder thread.
                try:
                    payload = pickle.dumps(
                        (_call_noting, (name, run_id, fn, *args), kwargs),
                        protocol=pickle.HIGHEST_PROTOCOL,
                    )
                except Exception as e:
                    e.add_note(
                        f"plugin {name} has parallel='process': the plugin instance "
                        "and its inputs are pickled to a worker process, so they must be "
                        "picklable and the plugin class importable by module name"
                    )
                    raise
                return self._track(process_pool.submit(_call_pickled, payload), name, True)

            return submit_process
        pool = self.pools.get("thread")
        if pool is None:
            pool = self.pools["thread"] = DaemonThreadPool(
                self.max_workers, thread_name_prefix=COMPUTE_THREAD_PREFIX
            )
        thread_pool = pool

        gauge = _CostGauge()

        def submit_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
            if gauge.inline() and not self.stopped:
                fut: Future[Any] = Future()
                fut.set_running_or_notify_cancel()
                try:
                    fut.set_result(_call_timed(gauge, name, run_id, fn, *args, **kwargs))
                except BaseException as e:  # as in a pool thread: the future carries it
                    fut.set_exception(e)
                return fut
            fut = thread_pool.submit(_call_timed, gauge, name, run_id, fn, *args, **kwargs)
            return self._track(fut, name)

        return submit_thread

    def shutdown(self, stopped: bool, deadline: float) -> list[str]:
        """Shut the pools down; after a stop, without waiting past ``deadline`` (monotonic).
        Returns the plugins whose computations were still running then."""
        if not stopped:  # every future was read, so every computation is done
            for pool in self.pools.values():
                pool.shutdown(wait=True)
            return []
        self.cancel_pending()
        with self._lock:
            pending = dict(self.pending)
            in_process = set(self.in_process)
        process = self.pools.get("process")
        if process is not None:
            # Nobody will read these results: end the workers now instead of waiting.
            busy = [f for f in in_process if not f.done()]
            processes = list((getattr(process, "_processes", None) or {}).values())
            manager = getattr(process, "_executor_manager_thread", None)
            process.shutdown(wait=not busy, cancel_futures=True)
            if busy:
                for worker in processes:
                    with contextlib.suppress(Exception):
                        worker.terminate()
                if isinstance(manager, threading.Thread):
                    manager.join(max(0.0, deadline - time.monotonic()))
        threaded = [f for f in pending if f not in in_process]
        wait_futures(threaded, timeout=max(0.0, deadline - time.monotonic()))
        running = sorted({pending[f] for f in threaded if not f.done()})
        threads = self.pools.get("thread")
        if threads is not None:
            # a thread cannot be ended: a stuck one is reported (and, a daemon, left behind)
            threads.shutdown(wait=not running, cancel_futures=True)
        return running


def _interval(args: tuple[Any, ...]) -> tuple[int, int] | None:
    """The step ``(start, end)`` of a ``compute_step(by_kind, start, end)`` call's arguments."""
    if len(args) >= 2 and all(isinstance(a, int) for a in args[-2:]):
        return int(args[-2]), int(args[-1])
    return None


def _call_noting(
    name: str, run_id: str | None, fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """Runs in a pool's worker: the computation, its exception noted where it happened."""
    try:
        return fn(*args, **kwargs)
    except BaseException as e:
        note_failure(e, name, run_id, _interval(args))
        raise


def _call_timed(
    gauge: _CostGauge,
    name: str,
    run_id: str | None,
    fn: Callable[..., Any],
    *args: Any,
    **kwargs: Any,
) -> Any:
    """:func:`_call_noting`, its duration recorded in ``gauge`` (a thread pool's, or inline)."""
    t0 = time.perf_counter()
    try:
        return _call_noting(name, run_id, fn, *args, **kwargs)
    finally:
        gauge.record(time.perf_counter() - t0)


def _note_future(fut: Future[Any], name: str, run_id: str | None, args: tuple[Any, ...]) -> None:
    """Done-callback for futures of a caller's executor (best effort: it runs after)."""
    if not fut.cancelled():
        exc = fut.exception()
        if exc is not None:
            note_failure(exc, name, run_id, _interval(args))


def _call_pickled(payload: bytes) -> Any:
    """Runs in a worker process: the call pickled by the submitting thread."""
    fn, args, kwargs = pickle.loads(payload)
    return fn(*args, **kwargs)
