"""Several runs at once on one machine, in worker processes (no Dask).

``get_array(runs, ...)`` and ``make(runs, ...)`` without a client give the runs to a pool of
``min(max_workers, len(runs))`` worker processes. Threads were measured at 0.7-0.9x of one
after another on 2 cores (each run's own pipeline already contends for the GIL); processes
are not bound by it. The context travels as its spec (``ContextSpec``: plugins by import
path, never by value, lineages checked) and is rebuilt once per worker; a worker gets or
makes its run with the ordinary pipeline, writing to the shared store (two runs needing one
data set: the store's claims have it made once), and sends back the rows (a numpy array
over the pool's pipe, never into the store) or the run's outcome.

Where the time goes, and what is done about it (``bench/many_runs_bench.py``):

- *One core per worker.* When the workers of a call are as many as the cores this process
  may use (:func:`one_core`), each run in a worker uses the serial executor, no storage
  threads and no Blosc threads: one after another, a run's threads spread it over ~1.2
  cores; in a worker they only compete with the other workers, at 10-15% more CPU per run
  (0.44 s instead of 0.52 s for the bench's run). A ``processor=`` given by the caller, and
  ``$STORAGE_THREADS``, still win.
- *No warm pool.* A pool lives for one call: keeping its workers for the next call (their
  imports, kernels, rebuilt context) was measured and gained nothing (a worker forked from
  the preloaded fork server starts in milliseconds, the context is rebuilt in ~5 ms), while
  idle workers and pool threads outliving the call cost memory and surprise.
- *The caller's share.* The caller tags each run's rows with ``run_id`` as they arrive,
  while the workers compute the others (``take`` of :func:`get_runs`), so only the final
  concatenation is left once the last run is in.

:func:`in_processes` says when: several runs, ``max_workers > 1``, no store in this process's
memory (silently: no other process could see it), and, else with a one-line warning, plugins
another process can import by name (not defined in a notebook or inside a function) and
picklable arguments (a ``selection`` callable may not be).

Stopping (:meth:`RunPool.stop`): on Ctrl-C, or at the first failure when failures are not
ignored, runs not started are cancelled, running ones are interrupted (SIGINT: their
pipelines stop and discard what they had not finished, as on Ctrl-C in one run), and a worker
still alive after :data:`STOP_SECONDS` is terminated: no worker outlives the call.

A worker that dies (``os._exit``, a crash, the OOM killer) breaks the whole pool, and the
runs not finished then are each done again alone in a pool of one worker (:func:`_each_run`):
the healthy ones complete, and a run whose worker dies there fails with :class:`WorkerDied`
naming it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import strax_storage.pool as storage_pool
from strax_decl.engine.pools import _process_start_method  # the project's one choice
from strax_decl.errors import StraxDeclError
from strax_decl.progress import enabled as progress_enabled
from strax_decl.runs import MultiRunResult, RunOutcome, failure, make_one, report
from strax_decl.spec import PluginRef

if TYPE_CHECKING:  # pragma: no cover - typing only
    from strax_decl.context.context import Context
    from strax_decl.context.getters import Processor

__all__ = [
    "STOP_SECONDS",
    "RunInWorkerFailed",
    "RunPool",
    "WorkerDied",
    "get_runs",
    "in_processes",
    "make_runs",
    "one_core",
]

STOP_SECONDS = 10.0
"""How long interrupted workers get to wind down before they are terminated."""

PRELOAD = ["__main__", "strax_decl.context.worker_start"]
"""What the fork server imports once (with the plugins' modules), so that a worker starts in
milliseconds instead of a second or two of imports and compilation (``worker_start.py``).
The fork server is started once per process: by the first pool, whose plugin modules it
imports (a later context's are imported by each of its workers)."""


class RunInWorkerFailed(StraxDeclError, RuntimeError):
    """A run failed in a worker with an exception that could not be sent back as itself."""


class WorkerDied(StraxDeclError, RuntimeError):
    """The worker process of a run ended abruptly (``os._exit``, a crash, a kill)."""


class WorkerTraceback(StraxDeclError):
    """The traceback text of an exception raised in a worker (its ``__cause__``)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


def in_processes(ctx: Context, runs: Sequence[str], arguments: Any = None) -> bool:
    """Whether ``runs`` go to worker processes (see the module doc); warns when it would be
    worth it but cannot be done."""
    if len(runs) < 2 or ctx.max_workers < 2:
        return False
    if any(s.url.startswith("memory://") for s in ctx.stores):
        return False  # only this process sees the store
    why = next(filter(None, (PluginRef.of(p).stays_here(p) for p in ctx.plugins)), None)
    if why is None:
        try:
            pickle.dumps(arguments)
        except Exception as e:
            why = f"the arguments cannot be sent to another process ({type(e).__name__}: {e})"
    if why is not None:
        warnings.warn(
            f"{why}: the {len(runs)} runs are done one after another in this process",
            stacklevel=5,
        )
        return False
    return True


def one_core(ctx: Context, n_runs: int) -> bool:
    """Whether each worker of a call has one core to itself, no more: its workers running at
    once (``min(max_workers, n_runs)``) are at least the cores this process may use."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return min(ctx.max_workers, n_runs) >= cores


# ============================================================================ in the worker

_worker: dict[str, Any] = {}  # the worker's pickled context, and the context once rebuilt


@dataclass
class Returned:
    """What a worker sends back for one run: its result, or the error and its traceback."""

    value: Any
    error: BaseException | None = None
    traceback: str | None = None
    pid: int = 0


def _start_worker(blob: bytes, stopping: Any, alone: bool) -> None:
    """The worker's initializer: Ctrl-C is the caller's to handle (:meth:`RunPool.stop`);
    a worker ``alone`` on its core starts no threads to compress or write."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker["blob"], _worker["stopping"], _worker["alone"] = blob, stopping, alone
    if alone:
        storage_pool.set_default_threads(0)  # $STORAGE_THREADS still wins
        from numcodecs import blosc  # imported by the fork server already

        blosc.use_threads = False  # else Blosc starts its own threads in the main thread


def _context() -> Context:
    """The caller's context, rebuilt from its spec on the worker's first run."""
    if "ctx" not in _worker:
        _worker["ctx"] = pickle.loads(_worker["blob"])  # Context.from_spec: lineages checked
    ctx: Context = _worker["ctx"]
    return ctx


def _processor(ctx: Context, asked: Processor | None) -> Processor | None:
    """The executor of a run in a worker: the caller's choice, else serial when the worker
    is alone on its core (the threaded one would spread the run over threads that only
    compete with the other workers)."""
    if asked is None and _worker["alone"] and ctx.processor == "threaded":
        return "serial"
    return asked


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt while a run goes (so its pipeline stops cleanly); a
    run queued for this worker before the pool was stopped does not start."""
    if _worker["stopping"].is_set():
        raise KeyboardInterrupt("the runs were stopped before this one started")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _failed(error: BaseException) -> Returned:
    text = "".join(traceback.format_exception(error))
    try:  # sent as itself if it survives the trip (notes included), else as its text
        pickle.loads(pickle.dumps(error))
    except Exception:
        message = "".join(traceback.format_exception_only(error)).strip()
        error = RunInWorkerFailed(message)
    return Returned(None, error, text, os.getpid())


def _get_task(run: str, targets: list[str], arguments: dict[str, Any]) -> Returned:
    try:
        with _interruptible():
            ctx = _context()
            processor = _processor(ctx, arguments.get("processor"))
            asked = {**arguments, "progress": False, "processor": processor}
            rows = ctx.get_array(run, targets, **asked)
    except BaseException as e:  # reported to the caller, who decides
        return _failed(e)
    return Returned(rows, pid=os.getpid())


def _make_task(
    run: str,
    targets: list[str],
    save: list[str],
    processor: Processor | None,
) -> Returned:
    where = "local"  # as one after another: a worker process of this machine
    t0 = time.perf_counter()
    try:
        with _interruptible():
            ctx = _context()
            chosen = _processor(ctx, processor)
            outcome = make_one(ctx, run, targets, save, chosen, None, where)
    except BaseException as e:  # the context could not be rebuilt, or an interrupt
        outcome = failure(run, e, time.perf_counter() - t0, where)
    return Returned(outcome, pid=os.getpid())


# ============================================================================ in the caller


class RunPool:
    """The worker processes of one call; leaving the ``with`` block ends every one of them
    (waiting for them after success, :meth:`stop` after an exception)."""

    def __init__(self, ctx: Context, n_runs: int) -> None:
        method = _process_start_method()
        mp_context = multiprocessing.get_context(method)
        if method == "forkserver":  # effective if the fork server is not running yet
            modules = {p.__module__ for p in ctx.plugins if p.__module__ != "__main__"}
            mp_context.set_forkserver_preload([*PRELOAD, *sorted(modules)])
        self.stopping = mp_context.Event()  # a queued run does not start once it is set
        self.executor = ProcessPoolExecutor(
            min(ctx.max_workers, n_runs),
            mp_context=mp_context,
            initializer=_start_worker,
            # the context as its spec, and whether each worker is alone on its core
            initargs=(pickle.dumps(ctx), self.stopping, one_core(ctx, n_runs)),
        )

    def __enter__(self) -> RunPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        if kind is None:
            self.executor.shutdown(wait=True)
        else:
            self.stop()

    def submit(self, fn: Callable[..., Returned], *args: Any) -> Future[Returned]:
        return self.executor.submit(fn, *args)

    def processes(self) -> list[Any]:
        """The pool's worker processes started so far."""
        return list((getattr(self.executor, "_processes", None) or {}).values())

    def stop(self) -> None:
        """Cancel what has not started, interrupt what runs, terminate what stays."""
        processes = self.processes()
        self.stopping.set()
        self.executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.pid is not None and process.is_alive():
                with contextlib.suppress(OSError):
                    os.kill(process.pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_SECONDS
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(1.0)
            if process.is_alive():  # pragma: no cover - ignored SIGTERM
                process.kill()
                process.join()


def _outcome(fut: Future[Returned], run: str) -> Returned:
    """What the worker returned, or a failure of the call itself (the rows could not be
    sent back, say); a worker that died is :func:`_each_run`'s to handle."""
    try:
        return fut.result()
    except Exception as e:  # one exception per future
        e.add_note(f"(run {run!r} in a worker process)")
        return Returned(None, e, "".join(traceback.format_exception(e)))


def raised(returned: Returned) -> BaseException:
    """The worker's exception, its traceback text as its cause, as the caller raises it."""
    error = returned.error
    assert error is not None
    if returned.traceback is not None and error.__cause__ is None:
        error.__cause__ = WorkerTraceback(returned.traceback)
    if returned.pid:
        error.add_note(f"(in worker process {returned.pid})")
    return error


def _each_run(
    ctx: Context,
    runs: Sequence[str],
    task: Callable[..., Returned],
    args: tuple[Any, ...],
    done: Callable[[str, Returned], bool],
) -> None:
    """``task(run, *args)`` for each run in the pool, ``done(run, returned)`` as each
    finishes (in this thread); ``done`` returning True stops the others.

    A worker that dies (``os._exit``, a crash, the OOM killer) breaks the pool: every run
    not finished then fails with one shared ``BrokenProcessPool``, whichever run's worker it
    was. Those runs are done again, each alone in a new pool of one worker, where a death
    is that run's own (:func:`_died`)."""
    again: list[str] = []
    with RunPool(ctx, len(runs)) as pool:
        futures = {pool.submit(task, run, *args): run for run in runs}
        for fut in as_completed(futures):
            run = futures[fut]
            if isinstance(fut.exception(), BrokenProcessPool):
                again.append(run)
            elif done(run, _outcome(fut, run)):
                pool.stop()
                return
    for run in sorted(again, key=list(runs).index):
        with RunPool(ctx, 1) as alone:
            fut = alone.submit(task, run, *args)
            processes = alone.processes()
            if isinstance(fut.exception(), BrokenProcessPool):
                returned = _died(run, processes)
            else:
                returned = _outcome(fut, run)
            if done(run, returned):
                alone.stop()
                return


def _died(run: str, processes: list[Any]) -> Returned:
    """The failure of ``run``, whose worker (alone in its pool) died: a new exception."""
    code: int | None = None
    pid = 0
    for process in processes:
        process.join(5.0)
        code, pid = process.exitcode, process.pid or 0
    how = "" if code is None else f" (exit code {code})"
    return Returned(None, WorkerDied(f"the worker process for run {run!r} died{how}"), pid=pid)


def get_runs(
    ctx: Context,
    runs: Sequence[str],
    targets: list[str],
    arguments: dict[str, Any],
    *,
    stop_at_failure: bool,
    take: Callable[[str, Any], Any] | None = None,
) -> dict[str, Any]:
    """``{run: take(run, rows) or exception}`` in the order of ``runs`` (``take`` runs in
    this thread as each run's rows arrive, while the workers go on); with
    ``stop_at_failure`` the first failure stops the others (the runs not reached are left
    out)."""
    got: dict[str, Any] = {}

    def done(run: str, returned: Returned) -> bool:
        if returned.error is None:
            got[run] = returned.value if take is None else take(run, returned.value)
            return False
        got[run] = raised(returned)
        return stop_at_failure

    _each_run(ctx, runs, _get_task, (targets, arguments), done)
    return {r: got[r] for r in runs if r in got}


def make_runs(
    ctx: Context,
    runs: Sequence[str],
    targets: list[str],
    *,
    save: Sequence[str],
    processor: Processor | None,
    progress: bool | None,
) -> MultiRunResult:
    """``make`` of every run in the pool: outcomes in the order of ``runs`` (none raises)."""
    t0 = time.perf_counter()
    shown = progress_enabled(progress)
    outcomes: dict[str, RunOutcome] = {}

    def done(run: str, returned: Returned) -> bool:
        if returned.error is not None:
            outcome = failure(run, returned.error, 0.0, "local")
        else:
            outcome = returned.value
        outcomes[run] = outcome
        report(shown, len(outcomes), len(runs), outcome)
        return False

    _each_run(ctx, runs, _make_task, (targets, list(save), processor), done)
    return MultiRunResult({r: outcomes[r] for r in runs}, time.perf_counter() - t0)
