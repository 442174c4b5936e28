"""The serial executor: runs a Graph in the caller's thread, pulling on demand.

It exists for debugging (``processor="serial"``: ``pdb`` steps straight into plugins) and as
the reference the threaded pipeline must agree with. Reading a data type that is not produced
yet advances its producer by one step; each produced chunk goes to the savers at once and is
buffered only until every reader has taken it. Savers follow the lifecycle shared with the
threaded executor (``saving.RunSavers``); the run is reported to its hooks.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterable, Iterator

from strax_decl.chunk import Chunk, check_touches
from strax_decl.engine.graph import Graph, Producer
from strax_decl.engine.hooks import Hook, Hooks
from strax_decl.engine.saving import RunSavers
from strax_decl.engine.threaded import ProcessingStopped
from strax_decl.plugin import Submit

__all__ = ["run_serial"]


class _Topic:
    def __init__(self, name: str, node: _Node) -> None:
        self.name = name
        self.node = node
        self.buffer: deque[Chunk] = deque()
        self.first = 0  # message number of buffer[0]
        self.positions: dict[int, int] = {}

    def subscribe(self) -> int:
        rid = len(self.positions)
        self.positions[rid] = 0
        return rid

    def push(self, chunk: Chunk) -> None:
        if self.positions:
            self.buffer.append(chunk)

    def read(self, rid: int) -> Iterator[Chunk]:
        while True:
            pos = self.positions[rid]
            if pos < self.first + len(self.buffer):
                chunk = self.buffer[pos - self.first]
                self.positions[rid] = pos + 1
                while self.buffer and min(self.positions.values()) > self.first:
                    self.buffer.popleft()
                    self.first += 1
                yield chunk
            elif self.node.done:
                return
            else:
                self.node.advance()


class _Node:
    def __init__(self, producer: Producer, savers: RunSavers) -> None:
        self.producer = producer
        self.savers = savers
        self.topics: dict[str, _Topic] = {o: _Topic(o, self) for o in producer.outputs}
        self.previous_end: dict[str, int] = {}
        self.iterator: Iterator[object] | None = None
        self.done = False

    def advance(self) -> None:
        assert self.iterator is not None
        try:
            item = next(self.iterator)
        except StopIteration:
            self.done = True
            for name in self.producer.outputs:
                self.savers.close(name)
            return
        if not isinstance(item, dict):
            raise TypeError(f"{self.producer.name} yielded {type(item).__name__}, not outputs")
        for name, chunk in item.items():
            check_touches(
                f"{self.producer.name}, output {name!r}", chunk, self.previous_end.get(name)
            )
            self.previous_end[name] = chunk.end
            self.topics[name].push(chunk)
            self.savers.send(name, chunk)


def run_serial(
    graph: Graph,
    *,
    hooks: Iterable[Hook] = (),
    max_workers: int = 1,
    max_messages: int = 1,
    timeout: float | None = None,
    submit: Submit | None = None,
) -> Iterator[Chunk]:
    """Yield the chunks of ``graph.output`` (nothing for make-only graphs), saving as it goes.

    On any exception (or when the caller stops reading early), every saver that has not
    closed is marked failed and every producer is closed (its cleanup runs); data sets whose
    producer finished before that were closed at once and stay complete. The exception
    propagates unchanged, with its traceback, once. ``hooks`` observe the run (no mailboxes).
    The other settings are the threaded executor's (pools, mailboxes): accepted, so that
    every executor is called alike, and ignored: everything runs in the caller's thread.
    """
    run_hooks = Hooks(hooks)
    savers = RunSavers(run_hooks)
    nodes: dict[str, _Node] = {}
    try:
        savers.open(graph)
        for producer in graph.producers:
            node = _Node(producer, savers)
            for o in producer.outputs:
                nodes[o] = node
        run_hooks.on_start(graph, {})
        for producer in graph.producers:
            node = nodes[producer.outputs[0]]
            inputs = {
                d: nodes[d].topics[d].read(nodes[d].topics[d].subscribe()) for d in producer.inputs
            }
            node.iterator = iter(producer.start(inputs, None, run_hooks))
        if graph.output is not None:
            out_topic = nodes[graph.output].topics[graph.output]
            yield from out_topic.read(out_topic.subscribe())
        for producer in reversed(graph.producers):
            node = nodes[producer.outputs[0]]
            while not node.done:
                node.advance()
    except GeneratorExit:
        stopped = ProcessingStopped("processing stopped: the caller stopped reading early")
        _stop(savers, nodes, run_hooks, stopped)
        raise
    except BaseException as e:
        _stop(savers, nodes, run_hooks, e)
        raise
    run_hooks.on_end(None)


def _stop(savers: RunSavers, nodes: dict[str, _Node], hooks: Hooks, error: BaseException) -> None:
    savers.fail(error)
    _close_all(nodes)
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
