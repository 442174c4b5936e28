"""The threaded executor: one thread per loader, plugin and saver, joined by mailboxes.

Every data type has a mailbox. A producer thread iterates its plugin (which pulls its inputs
from mailbox subscriptions) and sends each output chunk to that output's mailbox; a saver
thread drains a subscription into its saver; the caller's thread reads the requested output.
Mailboxes are bounded, so a fast producer waits for its slowest reader and memory stays flat.
``parallel`` plugins submit each chunk's compute to a thread pool (``True``/``"thread"``) or a
process pool (``"process"``) of ``max_workers`` and send the future; the mailbox delivers the
results in order.

Savers follow the lifecycle shared with the serial executor (``saving.RunSavers``); what the
run does is reported to its hooks (``hooks.Hook``: timing, progress, its mailboxes).

Failure (the guarantees the tests in ``tests/core/test_failures.py`` check):

- The first exception anywhere (a loader, plugin, saver, a future's compute, the caller's own
  read, or the caller stopping early) is recorded, and every mailbox that is still open is
  killed, which wakes every waiting thread; pending pool futures are cancelled.
- Mailboxes that were already *closed* (their producer finished) are not killed: their readers
  drain them, so a data set whose producer finished before the failure is saved completely.
- Every thread is joined, pools are shut down, and every saver that did not close is marked
  failed (a failed data set is never loaded as cache). A saver that closed stays complete
  (``Saver.fail`` after ``close`` is a no-op).
- The caller gets the original exception (not a ``MailboxKilled``), once, with the traceback of
  the thread that raised it. A caller that stops reading early gets no exception. The hooks'
  ``on_end`` hears of it first, after every thread was joined.
- Every thread ends because every wait is a mailbox wait that a kill wakes, and a thread that
  ends for any reason closes or kills the mailboxes it sends to. Mailbox ``timeout`` and
  :data:`JOIN_ALARM_S` are last-resort alarms only (a thread that outlives them is a bug,
  reported by name), never part of the normal flow.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from strax_decl.chunk import Chunk, check_touches
from strax_decl.engine.futures import then
from strax_decl.engine.graph import Graph, Producer
from strax_decl.engine.hooks import Hook, Hooks
from strax_decl.engine.mailbox import Mailbox, MailboxGroup, Subscription, original_exception
from strax_decl.engine.saving import RunSavers
from strax_decl.errors import StraxDeclError
from strax_decl.plugin import Submit
from strax_storage import Saver

__all__ = [
    "JOIN_ALARM_S",
    "THREAD_PREFIX",
    "PipelineStuck",
    "ProcessingStopped",
    "run_threaded",
]

JOIN_ALARM_S = 60.0
"""Last resort: threads still running this long after the pipeline stopped are reported."""

THREAD_PREFIX = "sd"
"""Every thread the pipeline starts is named ``sd:<component>`` (pool threads ``sd-compute``)."""


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


class PipelineStuck(StraxDeclError, RuntimeError):
    """A thread did not end after the pipeline was stopped (a bug; names the thread)."""


class ProcessingStopped(StraxDeclError, RuntimeError):
    """Why savers were marked failed when the caller stopped reading before the end."""


class _Run:
    """One execution of a graph; :meth:`run` is the generator the caller iterates."""

    def __init__(
        self,
        graph: Graph,
        hooks: Hooks,
        max_workers: int,
        max_messages: int,
        timeout: float | None,
        submit: Submit | None = None,
    ) -> None:
        self.graph = graph
        self.hooks = hooks
        self.submit = submit  # the caller's executor for parallel plugins (None: own pools)
        self.max_workers = max_workers
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        # One group per run: it sees when every thread of the run waits on a bound at once (a
        # deadlock on the bounds alone, e.g. a diamond around an overlap-window plugin) and
        # lets the blocked senders overflow by one message until it resolves.
        self.group = MailboxGroup()
        self.mailboxes: dict[str, Mailbox] = {}
        for p in graph.producers:
            bound = p.max_messages or max_messages
            for o in p.outputs:
                self.mailboxes[o] = Mailbox(
                    o, max_messages=bound, timeout=timeout, group=self.group
                )
        self.threads: list[threading.Thread] = []  # created, in start order
        self.started: list[threading.Thread] = []
        self.savers = RunSavers(hooks)
        self.saver_threads: list[tuple[Saver, threading.Thread]] = []
        self.pools: dict[str, Executor] = {}
        self.pending: set[Future[Any]] = set()  # submitted to a pool and not done yet

    # ------------------------------------------------------------------ failure

    def fail(self, exc: BaseException) -> None:
        """Record the first error and stop everything (idempotent; never raises)."""
        with self._lock:
            if self.error is None:
                self.error = original_exception(exc)
            reason = self.error
        for mb in self.mailboxes.values():
            if not mb.closed:  # closed: its producer finished; let its readers drain it
                mb.kill(reason)
        self._cancel_pending()

    def _cancel_pending(self) -> None:
        with self._lock:
            pending = list(self.pending)
        for fut in pending:
            fut.cancel()  # no-op for running or finished computations

    def _track(self, fut: Future[Any]) -> Future[Any]:
        with self._lock:
            self.pending.add(fut)
        fut.add_done_callback(self._untrack)
        if self.error is not None:  # submitted after the failure was recorded
            fut.cancel()
        return fut

    def _untrack(self, fut: Future[Any]) -> None:
        with self._lock:
            self.pending.discard(fut)

    # ------------------------------------------------------------------ pools

    def _submitter(self, producer: Producer) -> Submit | None:
        """The ``submit`` given to a parallel plugin (None: compute inline)."""
        mode = producer.parallel
        if mode and self.submit is not None:  # e.g. a Dask cluster (strax_decl.cluster)
            custom = self.submit

            def submit_custom(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
                return self._track(custom(fn, *args, **kwargs))

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
                    payload = pickle.dumps((fn, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
                except Exception as e:
                    e.add_note(
                        f"plugin {producer.name} has parallel='process': the plugin instance "
                        "and its inputs are pickled to a worker process, so they must be "
                        "picklable and the plugin class importable by module name"
                    )
                    raise
                return self._track(process_pool.submit(_call_pickled, payload))

            return submit_process
        pool = self.pools.get("thread")
        if pool is None:
            pool = self.pools["thread"] = ThreadPoolExecutor(
                self.max_workers, thread_name_prefix=f"{THREAD_PREFIX}-compute"
            )
        thread_pool = pool

        def submit_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
            return self._track(thread_pool.submit(fn, *args, **kwargs))

        return submit_thread

    # ------------------------------------------------------------------ threads

    def _spawn(
        self, name: str, body: Callable[[], None], sends_to: list[Mailbox]
    ) -> threading.Thread:
        def main() -> None:
            try:
                body()
            except BaseException as e:  # every error must stop the pipeline
                self.fail(e)
            finally:
                # Whatever happened, nobody may wait for this thread any more.
                for mb in sends_to:
                    if not mb.closed and not mb.killed:
                        mb.kill(
                            self.error
                            or PipelineStuck(f"thread {name!r} ended without closing {mb.name!r}")
                        )
                self.group.thread_done()

        thread = threading.Thread(target=main, name=f"{THREAD_PREFIX}:{name}", daemon=True)
        self.threads.append(thread)
        return thread

    def _add_producer(self, producer: Producer) -> None:
        inputs = {d: self.mailboxes[d].subscribe() for d in producer.inputs}
        submit = self._submitter(producer)
        outputs = {o: self.mailboxes[o] for o in producer.outputs}

        def body() -> None:
            _produce(producer, inputs, outputs, submit, self.hooks)

        self._spawn(producer.name, body, list(outputs.values()))

    def _add_saver(self, data_type: str, saver: Saver) -> None:
        subscription = self.mailboxes[data_type].subscribe()

        def body() -> None:
            try:
                self.savers.drain(data_type, saver, subscription)
            finally:
                subscription.close()

        self.saver_threads.append((saver, self._spawn(f"save {data_type}", body, [])))

    # ------------------------------------------------------------------ run

    def run(self) -> Iterator[Chunk]:
        output: Subscription | None = None
        stopped_early = False
        caller_takes_part = False
        try:
            self.savers.open(self.graph)
            for data_type, saver in self.savers.items():
                self._add_saver(data_type, saver)
            for producer in self.graph.producers:
                self._add_producer(producer)
            if self.graph.output is not None:
                output = self.mailboxes[self.graph.output].subscribe()
            self.hooks.on_start(self.graph, self.mailboxes)
            # The caller reading the output takes part in the run like a thread: while it is
            # busy with a chunk (not waiting on the output), nothing is deadlocked.
            caller_takes_part = output is not None
            self.group.add_threads(len(self.threads) + caller_takes_part)
            # Every subscription exists before any thread starts: nobody misses a message.
            try:
                for thread in self.threads:
                    thread.start()
                    self.started.append(thread)
            finally:
                for _ in range(len(self.threads) - len(self.started)):
                    self.group.thread_done()  # never started: never to wait
            if output is not None:
                yield from output
        except GeneratorExit:
            stopped_early = True
            self.fail(ProcessingStopped("processing stopped: the caller stopped reading early"))
        except BaseException as e:  # recorded, raised once by _finish
            self.fail(e)
        finally:
            if output is not None:
                output.close()
            if caller_takes_part:
                self.group.thread_done()  # the caller stopped reading
        self._finish(raise_error=not stopped_early)

    def _finish(self, raise_error: bool) -> None:
        deadline = time.monotonic() + JOIN_ALARM_S
        for thread in self.started:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self.started if t.is_alive()]
        if self.error is not None:
            self._cancel_pending()
        for pool in self.pools.values():
            pool.shutdown(wait=not stuck, cancel_futures=True)
        error = self.error
        if error is not None:  # a saver whose thread is stuck may still be writing
            busy = [saver for saver, thread in self.saver_threads if thread.is_alive()]
            self.savers.fail(error, skip=busy)
        if stuck:
            message = (
                f"pipeline threads still running {JOIN_ALARM_S:g} s after the pipeline "
                f"stopped (a bug in strax_decl or a plugin that never returns): {stuck}"
            )
            if error is None:
                error = PipelineStuck(message)
            else:
                error.add_note(message)
        self.hooks.on_end(error)
        if error is not None and (raise_error or error is not self.error):
            raise error


def _produce(
    producer: Producer,
    inputs: Mapping[str, Subscription],
    outputs: Mapping[str, Mailbox],
    submit: Submit | None,
    hooks: Hooks,
) -> None:
    """A producer thread's work: iterate the producer, send its outputs, close them."""
    # Outputs nobody reads (a by-product of a multi-output plugin that is neither saved nor
    # requested) are dropped here instead of filling a mailbox forever.
    live = {o: mb for o, mb in outputs.items() if mb.active_subscribers}
    previous_end: dict[str, int] = {}
    iterator = iter(producer.start(inputs, submit, hooks))
    try:
        for item in iterator:
            if isinstance(item, Future):
                for o, mailbox in live.items():
                    mailbox.send(_pick(item, o))
                continue
            for o, chunk in item.items():
                mb = live.get(o)
                if mb is None:
                    continue
                check_touches(f"{producer.name}, output {o!r}", chunk, previous_end.get(o))
                previous_end[o] = chunk.end
                mb.send(chunk)
        for mb in outputs.values():
            mb.close()
    finally:
        # Run the producer's cleanup (a generator's finally blocks) in its own thread, and
        # stop holding back the mailboxes it read.
        close = getattr(iterator, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
        for sub in inputs.values():
            sub.close()


def _call_pickled(payload: bytes) -> Any:
    """Runs in a worker process: the call pickled by the submitting thread."""
    fn, args, kwargs = pickle.loads(payload)
    return fn(*args, **kwargs)


def _pick(future: Future[dict[str, Chunk]], output: str) -> Future[Chunk]:
    """A future of one output of a multi-output future; always completes when ``future`` does
    (also if it is cancelled), so no reader can wait for it forever."""
    return then(future, lambda outputs: outputs[output])  # KeyError if it lacks this output


def run_threaded(
    graph: Graph,
    *,
    hooks: Iterable[Hook] = (),
    max_workers: int = 2,
    max_messages: int = 4,
    timeout: float | None = None,
    submit: Submit | None = None,
) -> Iterator[Chunk]:
    """Run ``graph`` in threads; yield the chunks of ``graph.output``.

    ``hooks`` observe the run (``strax_decl.engine.hooks``; ``MailboxesSeen`` keeps its
    mailboxes, e.g. ``Mailbox.peak``, for inspection). ``max_messages``: each mailbox's bound
    (a producer's own ``max_messages`` wins); ``timeout``: the mailboxes' last-resort alarm.
    ``submit``: where ``parallel`` plugins' chunk computations go instead of the pipeline's
    own pools of ``max_workers`` (a callable like ``Executor.submit`` returning
    ``concurrent.futures.Future``, e.g. ``strax_decl.cluster.ClientSubmit``); used
    whatever ``max_workers`` is.
    """
    return _Run(graph, Hooks(hooks), max_workers, max_messages, timeout, submit).run()
