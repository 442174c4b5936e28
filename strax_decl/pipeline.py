"""The threaded executor: one thread per loader, plugin and saver, joined by mailboxes.

Every data type has a mailbox. A producer thread iterates its plugin (which pulls its inputs
from mailbox subscriptions) and sends each output chunk to that output's mailbox; a saver
thread drains a subscription into its saver; the caller's thread reads the requested output.
Mailboxes are bounded, so a fast producer waits for its slowest reader and memory stays flat.

Failure: the first exception anywhere is recorded, every mailbox is killed (which wakes every
waiting thread), all threads are joined, unfinished savers are marked failed, and the caller
gets the original exception, once, with its traceback. Savers whose data finished before the
failure have already closed, so their data sets stay complete.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from storage import Saver
from strax_decl.chunk import Chunk, ChunkLawViolation
from strax_decl.graph import Graph, Producer
from strax_decl.mailbox import Mailbox, MailboxKilled

__all__ = ["PipelineStuck", "run_threaded"]

JOIN_ALARM_S = 60.0  # last resort: a thread that does not end this long after a kill is a bug


class PipelineStuck(RuntimeError):
    """A thread did not end after the pipeline was stopped (a bug; names the thread)."""


class _Run:
    def __init__(self, graph: Graph, max_workers: int, max_messages: int,
                 timeout: float | None) -> None:
        self.graph = graph
        self.max_workers = max_workers
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.mailboxes: dict[str, Mailbox] = {}
        for p in graph.producers:
            bound = p.max_messages or max_messages
            for o in p.outputs:
                self.mailboxes[o] = Mailbox(o, max_messages=bound, timeout=timeout)
        self.threads: list[threading.Thread] = []
        self.savers: list[Saver] = []
        self.pools: dict[str, Executor] = {}

    # ------------------------------------------------------------------ failure

    def fail(self, exc: BaseException) -> None:
        """Record the first real error and stop everything."""
        original = exc.reason if isinstance(exc, MailboxKilled) else exc
        with self.lock:
            if self.error is None:
                self.error = original
        for mb in self.mailboxes.values():
            mb.kill(original)

    # ------------------------------------------------------------------ threads

    def pool_for(self, producer: Producer) -> Executor | None:
        mode = producer.parallel
        if not mode or self.max_workers <= 1:
            return None
        kind = "process" if mode == "process" else "thread"
        if kind not in self.pools:
            self.pools[kind] = (
                ProcessPoolExecutor(self.max_workers) if kind == "process"
                else ThreadPoolExecutor(self.max_workers, thread_name_prefix="sd-compute")
            )
        return self.pools[kind]

    def producer_thread(self, producer: Producer) -> threading.Thread:
        inputs = {d: self.mailboxes[d].subscribe() for d in producer.inputs}
        pool = self.pool_for(producer)
        submit = pool.submit if pool is not None else None
        outputs = {o: self.mailboxes[o] for o in producer.outputs}

        def work() -> None:
            previous_end: dict[str, int] = {}
            # Outputs nobody reads (a by-product of a multi-output plugin that is neither
            # saved nor requested) are dropped here instead of filling a mailbox forever.
            for o in [o for o, mb in outputs.items() if not mb.active_subscribers]:
                del outputs[o]
            try:
                for item in producer.start(inputs, submit):
                    if isinstance(item, Future):
                        for o, mb in outputs.items():
                            mb.send(_pick(item, o))
                        continue
                    for o, chunk in item.items():
                        if o not in outputs:
                            continue
                        prev = previous_end.get(o)
                        if prev is not None and chunk.start != prev:
                            raise ChunkLawViolation(
                                f"{producer.name}, output {o!r}: chunk {chunk!r} does not "
                                f"touch the previous chunk, which ended at {prev}"
                            )
                        previous_end[o] = chunk.end
                        outputs[o].send(chunk)
                for mb in outputs.values():
                    mb.close()
            except BaseException as e:  # noqa: BLE001 - every error must stop the pipeline
                self.fail(e)
            finally:
                for sub in inputs.values():
                    sub.close()

        return threading.Thread(target=work, name=f"sd:{producer.name}", daemon=True)

    def saver_thread(self, data_type: str, saver: Saver) -> threading.Thread:
        subscription = self.mailboxes[data_type].subscribe()

        def work() -> None:
            waited = [0.0]
            t0 = time.perf_counter()
            try:
                saver.save_from(_timed(subscription, waited))
            except BaseException as e:  # noqa: BLE001
                self.fail(e)
            finally:
                subscription.close()
                busy = time.perf_counter() - t0 - waited[0]
                self.graph.stats.add(f"save {data_type}", busy)

        return threading.Thread(target=work, name=f"sd:save {data_type}", daemon=True)

    # ------------------------------------------------------------------ run

    def run(self) -> Iterator[Chunk]:
        output_sub = None
        try:
            for data_type, factories in self.graph.savers.items():
                for make in factories:
                    saver = make()
                    self.savers.append(saver)
                    self.threads.append(self.saver_thread(data_type, saver))
            for producer in self.graph.producers:
                self.threads.append(self.producer_thread(producer))
            if self.graph.output is not None:
                output_sub = self.mailboxes[self.graph.output].subscribe()
            # Every subscription exists before any thread starts: nobody misses a message.
            for t in self.threads:
                t.start()
            if output_sub is not None:
                yield from output_sub
        except GeneratorExit:
            self.fail(RuntimeError("processing stopped: the caller stopped reading early"))
            self.finish(raise_error=False)
            raise
        except MailboxKilled:
            pass  # the real error is in self.error
        except BaseException as e:
            self.fail(e)
        finally:
            if output_sub is not None:
                output_sub.close()
        self.finish(raise_error=True)

    def finish(self, raise_error: bool) -> None:
        for t in self.threads:
            t.join(JOIN_ALARM_S)
        stuck = [t.name for t in self.threads if t.is_alive()]
        for pool in self.pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        if self.error is not None:
            for saver in self.savers:
                saver.fail(self.error)
        if stuck:
            raise PipelineStuck(f"threads still running after the pipeline stopped: {stuck}")
        if raise_error and self.error is not None:
            raise self.error


def _timed(chunks: Iterable[Chunk], waited: list[float]) -> Iterator[Chunk]:
    """Pass chunks through, adding the time spent waiting for them to ``waited[0]``."""
    it = iter(chunks)
    while True:
        t0 = time.perf_counter()
        try:
            chunk = next(it)
        except StopIteration:
            waited[0] += time.perf_counter() - t0
            return
        waited[0] += time.perf_counter() - t0
        yield chunk


def _pick(future: Future[dict[str, Chunk]], output: str) -> Future[Chunk]:
    """A future of one output of a multi-output future."""
    child: Future[Any] = Future()

    def done(f: Future[dict[str, Chunk]]) -> None:
        exc = f.exception()
        if exc is not None:
            child.set_exception(exc)
        else:
            child.set_result(f.result()[output])

    future.add_done_callback(done)
    return child


def run_threaded(
    graph: Graph, *, max_workers: int = 2, max_messages: int = 4, timeout: float | None = None
) -> Iterator[Chunk]:
    """Run ``graph`` in threads; yield the chunks of ``graph.output``."""
    return _Run(graph, max_workers, max_messages, timeout).run()
