"""The serial executor: runs a Graph in the caller's thread, pulling on demand.

It exists for debugging (``processor="serial"``: ``pdb`` steps straight into plugins) and as
the reference the threaded pipeline must agree with. Reading a data type that is not produced
yet advances its producer by one step; each produced chunk goes to the savers at once and is
buffered only until every reader has taken it. Savers follow the lifecycle shared with the
threaded executor (``saving.RunSavers``); the run is reported to its hooks. It stops as the
threaded one does (``stopping.py``): an interrupt or an early stop closes every producer and
discards the unfinished savers; a failure, with ``keep_finished``, first runs to their end the
producers that unfinished savers need and that do not depend on the failing plugin. A
saver's failure is its own (``inline_saving.InlineSavers``, as in the threaded executor):
that saver fails, named ``saving <data type>``, the rest goes on (with ``keep_finished``) and
the run raises it at its end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from strax_decl.chunk import Chunk, check_touches
from strax_decl.engine.failures import RunFailures
from strax_decl.engine.graph import Graph, Producer
from strax_decl.engine.hooks import Hook, Hooks
from strax_decl.engine.inline_saving import InlineSavers
from strax_decl.engine.saving import RunSavers
from strax_decl.engine.stopping import (
    ProcessingStopped,
    Span,
    doomed_types,
    interrupt_behind,
    is_interrupt,
    needed_producers,
    note_failure,
)
from strax_decl.engine.topic import Topic
from strax_decl.plugin import Submit

__all__ = ["run_serial"]


class _Node:
    def __init__(self, producer: Producer, savers: InlineSavers, run_id: str | None) -> None:
        self.producer = producer
        self.name = producer.name
        self.savers = savers  # a saver's failure stays its own, as in the threaded executor
        self.run_id = run_id
        self.topics: dict[str, Topic] = {o: Topic(self) for o in producer.outputs}
        self.previous_end: dict[str, int] = {}
        self.iterator: Iterator[object] | None = None
        self.reads: list[tuple[Topic, int]] = []  # the subscriptions it reads
        self.span = Span()
        self.done = False
        self.error: BaseException | None = None  # its iterator raised

    @property
    def failed(self) -> bool:
        return self.error is not None

    def advance(self) -> None:
        """One step of the producer (which pulls its inputs on demand)."""
        try:
            self._advance()
        except BaseException as e:
            # The innermost node notes it first (note_failure adds one note only); every node
            # the exception passes through is dead: its iterator raised.
            self.error = e
            note_failure(e, self.producer.name, self.run_id, self.span.where)
            raise

    def _advance(self) -> None:
        assert self.iterator is not None
        try:
            item = next(self.iterator)
        except StopIteration:
            self.done = True
            self.savers.close()
            return
        if not isinstance(item, dict):
            raise TypeError(f"{self.producer.name} yielded {type(item).__name__}, not outputs")
        for name, chunk in item.items():
            check_touches(
                f"{self.producer.name}, output {name!r}", chunk, self.previous_end.get(name)
            )
            self.previous_end[name] = chunk.end
            self.span.produced(chunk)
            self.topics[name].push(chunk)
            if name in self.savers.by_output:
                self.savers.send(name, chunk)


def run_serial(
    graph: Graph,
    *,
    hooks: Iterable[Hook] = (),
    max_workers: int = 1,
    max_messages: int = 1,
    timeout: float | None = None,
    submit: Submit | None = None,
    keep_finished: bool = True,
    run_id: str | None = None,
) -> Iterator[Chunk]:
    """Yield the chunks of ``graph.output`` (nothing for make-only graphs), saving as it goes.

    On a failure, with ``keep_finished``, the producers that unfinished savers need and that
    do not depend on the failing plugin first run to their end (their data is saved); then
    every saver that has not closed is marked failed and every producer is closed (its
    cleanup runs). On an interrupt or when the caller stops reading early, that happens at
    once and the unfinished savers are discarded instead. Data sets whose producer finished
    before were closed at once and stay complete. The exception propagates unchanged, with its
    traceback and a note naming the plugin, run and chunk, once. ``hooks`` observe the run (no
    mailboxes). The other settings are the threaded executor's (pools, mailboxes): accepted,
    so that every executor is called alike, and ignored: everything runs in this thread.
    """
    run_hooks = Hooks(hooks)
    savers = RunSavers(run_hooks)
    nodes: dict[str, _Node] = {}
    output: tuple[Topic, int] | None = None
    failures = RunFailures(graph)

    def saver_failed(exc: BaseException) -> None:
        """A saver failed (``InlineSavers``): the rest goes on with ``keep_finished``, and
        the run raises it at its end, as the threaded executor does."""
        failures.add(exc)
        if not keep_finished:
            raise exc

    try:
        savers.open(graph)
        for producer in graph.producers:
            inline = InlineSavers(producer.outputs, savers, run_hooks, saver_failed, run_id)
            node = _Node(producer, inline, run_id)
            for o in producer.outputs:
                nodes[o] = node
        run_hooks.on_start(graph, {})
        for producer in graph.producers:
            node = nodes[producer.outputs[0]]
            inputs = {}
            for d in producer.inputs:
                topic = nodes[d].topics[d]
                rid = topic.subscribe()
                node.reads.append((topic, rid))
                inputs[d] = node.span.reading(topic.read(rid))
            node.iterator = iter(producer.start(inputs, None, run_hooks))
        if graph.output is not None:
            out_topic = nodes[graph.output].topics[graph.output]
            output = (out_topic, out_topic.subscribe())
            yield from out_topic.read(output[1])
        _drain(graph, nodes, None)
        if failures.first is not None:
            raise failures.first
    except GeneratorExit as e:
        # Closed by a caller unwinding on Ctrl-C: an interrupt, else an early stop.
        stop = interrupt_behind(e) or ProcessingStopped(
            "processing stopped: the caller stopped reading early"
        )
        _stop(savers, nodes, run_hooks, stop, failures)
        failures.note_on(None)  # nothing is raised: failures before the stop are logged
        raise
    except BaseException as e:
        error: BaseException = e
        if not is_interrupt(e):
            failures.add(e, _failed_types(nodes))
            error = failures.first or e  # the first failure, as the threaded executor reports
        if keep_finished and not is_interrupt(e):
            try:
                _keep_finished(graph, nodes, savers, output, failures)
            except BaseException as interrupt:  # only an interrupt escapes
                error = interrupt
        _stop(savers, nodes, run_hooks, error, failures)
        failures.note_on(error)  # after the data sets recorded their own failures
        if error is not e:
            raise error from None
        raise
    run_hooks.on_end(None)


def _drain(graph: Graph, nodes: dict[str, _Node], needed: set[str] | None) -> None:
    """Run the (``needed``; None: all) producers to their end, downstream first, so each
    pulls its inputs on demand and nothing is buffered for long."""
    for producer in reversed(graph.producers):
        node = nodes[producer.outputs[0]]
        if needed is not None and producer.name not in needed:
            continue
        while not node.done:
            node.advance()


def _failed_types(nodes: dict[str, _Node]) -> set[str]:
    return {o for node in nodes.values() if node.failed for o in node.producer.outputs}


def _keep_finished(
    graph: Graph,
    nodes: dict[str, _Node],
    savers: RunSavers,
    output: tuple[Topic, int] | None,
    failures: RunFailures,
) -> None:
    """After a failure: finish what unfinished savers need and does not depend on it.

    A further failure dooms what depends on it too and the rest goes on; an interrupt is
    raised at once.
    """
    if output is not None:
        output[0].unsubscribe(output[1])  # the caller will not read again
    while True:
        failed = _failed_types(nodes)
        if not failed:
            return  # not a plugin's failure (e.g. a hook's): nothing to keep going
        doomed = doomed_types(graph, failed)
        wanted = {d for d, saver in savers.items() if not saver.closed and d not in doomed}
        needed = needed_producers(graph, wanted)
        for node in {id(n): n for n in nodes.values()}.values():
            if node.producer.name not in needed:
                for topic, rid in node.reads:
                    topic.unsubscribe(rid)
        try:
            _drain(graph, nodes, needed)
            return
        except BaseException as e:
            if is_interrupt(e):
                raise
            failures.add(e, _failed_types(nodes))


def _stop(
    savers: RunSavers,
    nodes: dict[str, _Node],
    hooks: Hooks,
    error: BaseException,
    failures: RunFailures | None = None,
) -> None:
    """End the savers (each failed one with the failure it depends on), close the
    producers, tell the hooks; an interrupt meanwhile (even a second one) does not cut this
    short."""
    while True:
        try:
            savers.stop(error, cause=None if failures is None else failures.cause_of)
            _close_all(nodes)
            break
        except (KeyboardInterrupt, SystemExit) as e:
            error = e
    hooks.on_end(error)


def _close_all(nodes: dict[str, _Node]) -> None:
    """Close every producer's iterator, downstream first, so generator cleanup runs now."""
    seen: set[int] = set()
    for node in reversed(list(nodes.values())):
        if id(node) in seen or node.iterator is None:
            continue
        seen.add(id(node))
        close = getattr(node.iterator, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
