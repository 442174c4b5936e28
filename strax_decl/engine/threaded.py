"""The threaded executor: threads for loaders, sources, ``parallel`` plugins and fused
segments of the other plugins (``segments.py``), joined by mailboxes.

Every data type has a mailbox. A producer thread iterates its plugin (which pulls its inputs
from mailbox subscriptions; inside a segment, from the producers fused with it, on demand)
and sends each output chunk read elsewhere to that output's mailbox and to its
savers (``inline_saving.py``: no thread hand-off per saved chunk; a ``parallel`` producer
saves its chunks computed in a pool once they are done); the caller's thread reads the
requested output.
Mailboxes are bounded, so a fast producer waits for its slowest reader and memory stays flat.
``parallel`` plugins submit each chunk's compute to a thread pool (``True``/``"thread"``) or a
process pool (``"process"``) of ``max_workers`` (``pools.py``) and send the future; the mailbox
delivers the results in order.

Savers follow the lifecycle shared with the serial executor (``saving.RunSavers``); what the
run does is reported to its hooks (``hooks.Hook``: timing, progress, its mailboxes).

How a run stops (``stopping.py`` has the three ways; ``tests/core/test_failures.py``,
``test_interrupts.py`` and ``test_early_stop.py`` check them):

- The first exception anywhere (a loader, plugin, saver, a future's compute, the caller's own
  read) is recorded. With ``keep_finished`` (the default) only what depends on the failing
  component stops: the mailboxes of every producer no unfinished saver (nor the caller) still
  needs are killed, and the rest runs to its end, so finished upstream work is saved. Without
  it, or for an interrupt (KeyboardInterrupt, SystemExit) or the caller stopping early, every
  open mailbox is killed at once, which wakes every waiting thread; pending pool futures are
  cancelled.
- Mailboxes that were already *closed* (their producer finished) are not killed: their readers
  drain them, so a data set whose producer finished before the stop is saved completely.
- Every thread is joined *inside* the handler (an interrupt during the join, even a second
  one, keeps the join going), pools are shut down without waiting for ever, and every saver
  that did not close is marked failed (a failure) or discarded quietly (an interrupt or early
  stop). A saver that closed stays complete. The session releases the claims after this.
- The caller gets the original exception (not a ``MailboxKilled``), once, with the traceback
  of the thread that raised it and a note naming the plugin, the run and the chunk interval;
  an interrupt is re-raised as is. A caller that stops reading early gets no exception. The
  hooks' ``on_end`` hears of it first, after every thread was joined.
- Every thread ends because every wait is a mailbox wait that a kill wakes, and a thread that
  ends for any reason closes or kills the mailboxes it sends to. The mailboxes' ``timeout`` is
  a last-resort alarm; it also bounds, after a stop, the wait for thread-pool computations
  and (not below :data:`JOIN_FLOOR_S`) for the threads told to stop (else
  :data:`JOIN_ALARM_S`): a thread or computation that
  outlives its bound is reported by name. Worker processes are terminated at once after a
  stop (their results would be thrown away). A thread that keeps running for the rest of
  the run (``keep_finished``) is not bounded: its own waits are mailbox waits.
- A slow caller is not a hang: the time the caller spends with a chunk it took from the
  output (between two reads of ``iter_chunks``) does not count against the ``timeout``. A
  wait that expires while the caller is busy, or that began before the caller came back to
  read, gets the full ``timeout`` again from then (``MailboxGroup.caller_busy``), so a
  producer blocked on a full output mailbox (or on a mailbox whose reader is) never times
  out for the caller's sake, while a plugin stuck inside the pipeline is still reported
  within ``timeout`` of the caller waiting for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator

from strax_decl.chunk import Chunk
from strax_decl.engine.failures import RunFailures
from strax_decl.engine.graph import Graph, Producer
from strax_decl.engine.hooks import Hook, Hooks
from strax_decl.engine.inline_saving import InlineSavers
from strax_decl.engine.mailbox import (
    Mailbox,
    MailboxGroup,
    MailboxTimeout,
    Subscription,
    original_exception,
)
from strax_decl.engine.pools import RunPools
from strax_decl.engine.producing import produce
from strax_decl.engine.saving import RunSavers
from strax_decl.engine.segments import Segment, partition
from strax_decl.engine.stopping import (
    ProcessingStopped,
    doomed_types,
    interrupt_behind,
    is_interrupt,
    needed_producers,
)
from strax_decl.errors import StraxDeclError
from strax_decl.plugin import Submit
from strax_storage import Saver

__all__ = [
    "JOIN_ALARM_S",
    "JOIN_FLOOR_S",
    "THREAD_PREFIX",
    "PipelineStuck",
    "ProcessingStopped",
    "run_threaded",
]

JOIN_ALARM_S = 60.0
"""Without a ``timeout``: threads still running this long after they were told to stop are
reported (a plugin call in progress may take its time to return). With one, the ``timeout``
bounds this wait too, but never below :data:`JOIN_FLOOR_S`."""
JOIN_FLOOR_S = 5.0
"""The least time threads told to stop are given to return from a call in progress (a tiny
``timeout`` meant for mailbox waits must not abandon a plugin call that is about to end)."""

THREAD_PREFIX = "sd"
"""Every thread the pipeline starts is named ``sd:<component>`` (pool threads ``sd-compute``)."""


class PipelineStuck(StraxDeclError, RuntimeError):
    """A thread did not end after the pipeline was stopped (a bug; names the thread)."""


_STOPS_ALL = (MailboxTimeout, PipelineStuck)
"""Failures that stop everything even with ``keep_finished`` (something is stuck)."""


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
        keep_finished: bool = True,
        run_id: str | None = None,
    ) -> None:
        self.graph = graph
        self.hooks = hooks
        self.keep_finished = keep_finished
        self.run_id = run_id
        self.alarm = JOIN_ALARM_S if timeout is None else max(timeout, JOIN_FLOOR_S)
        self.alarm_is_timeout = timeout is not None
        self.pool_alarm = JOIN_ALARM_S if timeout is None else timeout
        self.timeout = timeout
        self.inline: list[tuple[str, InlineSavers]] = []  # savers fed by producer threads
        self.error: BaseException | None = None  # the first failure
        self.failures = RunFailures(graph)  # every failure, and which data sets each ends
        self.stop: BaseException | None = None  # the first interrupt or early stop
        self.stopped_all = False
        self.failed_types: set[str] = set()
        self.caller_reading = False
        self._deadline: float | None = None  # of the join, once everything was told to stop
        self._told: dict[str, float] = {}  # producer name -> deadline of its join (pruned)
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
        # Set by each thread as it ends. Joins wait on these, not on Thread.join(timeout): a
        # KeyboardInterrupt landing inside Thread.join (a notebook's Ctrl-C) makes CPython
        # < 3.12 mark a running thread as stopped, so is_alive() would lie from then on.
        self._ended: dict[threading.Thread, threading.Event] = {}
        self.savers = RunSavers(hooks)
        self.saver_threads: list[tuple[Saver, threading.Thread]] = []
        self.pools = RunPools(max_workers, submit, run_id)
        self.segments = partition(graph)  # the producers that share a thread

    # ------------------------------------------------------------------ failure

    def fail(self, exc: BaseException, failed: Iterable[str] = (), *, caller: bool = False) -> None:
        """Record why the run stops and stop what must stop (idempotent; never raises).

        ``failed``: the data types of the component that failed (a producer's outputs);
        ``caller``: the caller stopped reading the output.
        """
        reason = original_exception(exc)
        with self._lock:
            if is_interrupt(reason) or isinstance(reason, ProcessingStopped):
                if self.stop is None:
                    self.stop = reason
            else:
                self.failures.add(reason, failed)
                if self.error is None:
                    self.error = reason
            self.failed_types.update(failed)
            if caller:
                self.caller_reading = False
            killer = self.stop or self.error
            assert killer is not None
            everything = (
                self.stop is not None
                or not self.keep_finished
                or isinstance(self.error, _STOPS_ALL)
            )
            if everything and not self.stopped_all:
                self.stopped_all = True
                self._deadline = time.monotonic() + self.alarm
        if everything:  # again on every call: an interrupt may have cut an earlier one short
            for mb in self.mailboxes.values():
                if not mb.closed:  # closed: its producer finished; let its readers drain it
                    mb.kill(killer)
            self.pools.cancel_pending()
        else:  # what stops now stops because of this failure: its readers are told so
            self._prune(reason)

    def _prune(self, reason: BaseException) -> None:
        """Stop the producers that nothing still wanted depends on (``keep_finished``)."""
        needed = self._needed() or set()
        deadline = time.monotonic() + self.alarm
        for segment in self.segments:
            if not any(p.name in needed for p in segment):
                with self._lock:  # told to stop: its join is bounded from now on
                    name = "+".join(p.name for p in segment)
                    self._told.setdefault(f"{THREAD_PREFIX}:{name}", deadline)
            for producer in segment:
                if producer.name in needed:
                    continue
                for o in producer.outputs:
                    if not self.mailboxes[o].closed:
                        self.mailboxes[o].kill(reason)

    def _needed(self) -> set[str] | None:
        """The producers that unfinished savers (and the caller, while reading) still need
        after a failure; None once everything stops."""
        with self._lock:
            if self.stopped_all:
                return None
            doomed = doomed_types(self.graph, self.failed_types)
            caller_reading = self.caller_reading
        wanted = {d for d, saver in self.savers.items() if not saver.closed and d not in doomed}
        output = self.graph.output
        if caller_reading and output is not None and output not in doomed:
            wanted.add(output)
        return needed_producers(self.graph, wanted)

    # ------------------------------------------------------------------ threads

    def _spawn(
        self,
        name: str,
        body: Callable[[], None],
        sends_to: list[Mailbox],
        failed: tuple[str, ...] = (),
    ) -> threading.Thread:
        ended = threading.Event()

        def main() -> None:
            own: BaseException | None = None  # why this thread ended, if it failed
            try:
                body()
            except BaseException as e:  # every error must stop the pipeline
                own = original_exception(e)
                self.fail(e, failed)
            finally:
                # Whatever happened, nobody may wait for this thread any more; its readers
                # are told why it ended (its own failure, not merely the run's first).
                for mb in sends_to:
                    if not mb.closed and not mb.killed:
                        mb.kill(
                            self.stop
                            or own
                            or self.error
                            or PipelineStuck(f"thread {name!r} ended without closing {mb.name!r}")
                        )
                self.group.thread_done()
                ended.set()

        thread = threading.Thread(target=main, name=f"{THREAD_PREFIX}:{name}", daemon=True)
        self.threads.append(thread)
        self._ended[thread] = ended
        return thread

    def _add_producer(self, producer: Producer) -> None:
        inputs = {d: self.mailboxes[d].subscribe() for d in producer.inputs}
        submit = self.pools.submitter(producer.name, producer.parallel)
        outputs = {o: self.mailboxes[o] for o in producer.outputs}
        inline = InlineSavers(
            producer.outputs,
            self.savers,
            self.hooks,
            self.fail,
            self.run_id,
            close_in_background=True,
        )

        def body() -> None:
            produce(producer, inputs, outputs, submit, self.hooks, self.run_id, inline)

        thread = self._spawn(producer.name, body, list(outputs.values()), producer.outputs)
        self.saver_threads.extend((saver, thread) for _, saver in inline.savers)
        if inline.savers:
            self.inline.append((producer.name, inline))

    def _add_segment(self, producers: tuple[Producer, ...]) -> None:
        """Several plugins in one thread (``segments.py``), their savers inline."""
        inline = {
            p.name: InlineSavers(
                p.outputs,
                self.savers,
                self.hooks,
                self.fail,
                self.run_id,
                close_in_background=True,
            )
            for p in producers
        }
        segment = Segment(producers, self.mailboxes, inline, self.run_id)

        def body() -> None:
            segment.run(
                lambda p: self.pools.submitter(p.name, p.parallel),
                self.hooks,
                self.fail,
                self._needed,
            )

        sends_to = [self.mailboxes[o] for p in producers for o in p.outputs]
        thread = self._spawn(segment.thread_name, body, sends_to)
        for name, savers in inline.items():
            self.saver_threads.extend((saver, thread) for _, saver in savers.savers)
            if savers.savers:
                self.inline.append((name, savers))

    # ------------------------------------------------------------------ run

    def run(self) -> Iterator[Chunk]:
        output: Subscription | None = None
        stopped_early = False
        caller_takes_part = False
        first: BaseException | None = None  # why the caller stopped, failed in _finish
        try:
            self.savers.open(self.graph)
            for segment in self.segments:
                if len(segment) == 1:
                    self._add_producer(segment[0])
                else:
                    self._add_segment(segment)
            if self.graph.output is not None:
                output = self.mailboxes[self.graph.output].subscribe()
                self.caller_reading = True
            self.hooks.on_start(self.graph, self.mailboxes)
            # The caller reading the output takes part in the run like a thread: while it is
            # busy with a chunk (not waiting on the output), nothing is deadlocked.
            caller_takes_part = output is not None
            self.group.add_threads(len(self.threads) + caller_takes_part)
            # Every subscription exists before any thread starts: nobody misses a message.
            try:
                for thread in self.threads:
                    thread.start()
            finally:
                # A Ctrl-C can cut ``start()`` short after the thread began: whether a thread
                # runs is told by its ident (``began``), not by start() returning.
                for _ in range(len(self.threads) - len(self.began())):
                    self.group.thread_done()  # never started: never to wait
            if output is not None:
                for chunk in output:
                    # The caller's time with a chunk is its own: no wait counts it against
                    # the timeout (the module docstring).
                    self.group.caller_busy(True)
                    try:
                        yield chunk
                    finally:
                        self.group.caller_busy(False)
        except GeneratorExit as e:
            stopped_early = True
            # Closed by a caller unwinding on Ctrl-C: an interrupt, else an early stop.
            first = interrupt_behind(e) or ProcessingStopped(
                "processing stopped: the caller stopped reading early"
            )
        except BaseException as e:  # recorded (in _finish, where a 2nd Ctrl-C cannot skip it)
            first = e
        finally:
            if output is not None:
                output.close()
            if caller_takes_part:
                self.group.thread_done()  # the caller stopped reading
        self._finish(raise_error=not stopped_early, first=first)

    def _finish(self, raise_error: bool, first: BaseException | None = None) -> None:
        """Join, shut down, end the savers; then tell the hooks and raise. ``first``: why the
        caller stopped (recorded first). An interrupt that arrives meanwhile (even a second
        one) stops everything and the winding down goes on."""
        interrupt: BaseException | None = None
        while True:
            try:
                if first is not None:
                    self.fail(first, caller=True)
                    first = None
                if interrupt is not None:  # inside the try: a further one lands here too
                    self.fail(interrupt)
                    interrupt = None
                stuck, running = self._wind_down()
                break
            except (KeyboardInterrupt, SystemExit) as e:
                interrupt = e
        ending = self.stop or self.error
        problems = []
        if stuck:
            bound = "the context's timeout, at least 5 s" if self.alarm_is_timeout else "the limit"
            problems.append(
                f"pipeline threads still running {self.alarm:g} s ({bound}) after they were "
                f"told to stop (a plugin call that does not return, e.g. a source waiting "
                f"for data, or a bug in strax_decl): {', '.join(stuck)}"
            )
        if running:
            problems.append(
                f"computations of plugin(s) {', '.join(running)} still running in the pool "
                f"{self.pool_alarm:g} s after the pipeline was stopped (a plugin that never "
                "returns)"
            )
        error = ending
        # the other failures are noted on what is raised (or logged if nothing is)
        self.failures.note_on(
            self.error if ending is self.error else self.stop if is_interrupt(self.stop) else None
        )
        if problems:
            if error is None:
                error = PipelineStuck("; ".join(problems))
            else:
                for problem in problems:
                    error.add_note(problem)
        self.hooks.on_end(error)
        if self.stop is not None and is_interrupt(self.stop):
            if raise_error:
                raise self.stop
            return
        if error is not None and (raise_error or error is not ending):
            raise error

    def began(self) -> list[threading.Thread]:
        """The threads that were started (their ident is set as they begin)."""
        return [t for t in self.threads if t.ident is not None]

    def _wind_down(self) -> tuple[list[str], list[str]]:
        """Join every thread (bounded once everything was told to stop), shut the pools down,
        end the savers that did not close. Idempotent, so an interrupt may restart it."""
        for thread in self.began():
            ended = self._ended[thread]
            while not ended.is_set():
                # Bounded once this thread was told to stop (everything was, or its producer
                # was pruned); a thread still doing wanted work ends by itself.
                with self._lock:
                    deadline = self._deadline or self._told.get(thread.name)
                if deadline is not None and time.monotonic() >= deadline:
                    break
                ended.wait(0.05)
                back = self.group.caller_back
                for producer, inline in self.inline:
                    inline.check_stalled(self.timeout, producer, back)
        stuck = [t.name for t in self.began() if not self._ended[t].is_set()]
        for thread in self.began():
            if self._ended[thread].is_set():
                thread.join(1.0)  # only its return is left: let it be gone
        ending = self.stop or self.error
        deadline = time.monotonic() + self.pool_alarm
        running = self.pools.shutdown(ending is not None or bool(stuck), deadline)
        if ending is not None:  # a saver whose thread is stuck may still be writing
            busy = [s for s, thread in self.saver_threads if not self._ended[thread].is_set()]
            self.savers.stop(ending, skip=busy, cause=self.failures.cause_of)
        return stuck, running


def run_threaded(
    graph: Graph,
    *,
    hooks: Iterable[Hook] = (),
    max_workers: int = 2,
    max_messages: int = 4,
    timeout: float | None = None,
    submit: Submit | None = None,
    keep_finished: bool = True,
    run_id: str | None = None,
) -> Iterator[Chunk]:
    """Run ``graph`` in threads; yield the chunks of ``graph.output``.

    ``hooks`` observe the run (``strax_decl.engine.hooks``; ``MailboxesSeen`` keeps its
    mailboxes, e.g. ``Mailbox.peak``, for inspection). ``max_messages``: each mailbox's bound
    (a producer's own ``max_messages`` wins); ``timeout``: the last-resort alarm of every wait
    (mailboxes, and pool computations after a stop), not counting the time the caller spends
    with each chunk it took. ``submit``: where
    ``parallel`` plugins' chunk computations go instead of the pipeline's own pools of
    ``max_workers`` (a callable like ``Executor.submit`` returning
    ``concurrent.futures.Future``, e.g. ``strax_decl.cluster.ClientSubmit``); used whatever
    ``max_workers`` is. ``keep_finished``: on a failure, let what does not depend on the
    failing component finish (see the module docstring). ``run_id``: named in failure notes.
    """
    return _Run(
        graph, Hooks(hooks), max_workers, max_messages, timeout, submit, keep_finished, run_id
    ).run()
