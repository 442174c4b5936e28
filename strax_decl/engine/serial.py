"""The serial executor: runs a Graph in the caller's thread, pulling on demand.

It exists for debugging (``processor="serial"``: ``pdb`` steps straight into plugins) and as
the reference the threaded pipeline must agree with. Reading a data type that is not produced
yet advances its producer by one step; each produced chunk goes to the savers at once and is
buffered only until every reader has taken it.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterator

from strax_decl.chunk import Chunk, check_touches
from strax_decl.engine.graph import Graph, Producer
from strax_decl.engine.threaded import ProcessingStopped
from strax_decl.stats import RunStats
from strax_storage import Saver

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
    def __init__(self, producer: Producer, savers: dict[str, list[Saver]], stats: RunStats) -> None:
        self.producer = producer
        self.stats = stats
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
            for savers in self.savers.values():
                for saver in savers:
                    saver.close()
            return
        if not isinstance(item, dict):
            raise TypeError(f"{self.producer.name} yielded {type(item).__name__}, not outputs")
        for name, chunk in item.items():
            check_touches(
                f"{self.producer.name}, output {name!r}", chunk, self.previous_end.get(name)
            )
            self.previous_end[name] = chunk.end
            self.topics[name].push(chunk)
            for saver in self.savers.get(name, ()):
                t0 = time.perf_counter()
                saver.send(chunk)
                self.stats.add(f"save {name}", time.perf_counter() - t0, [chunk])


def run_serial(graph: Graph) -> Iterator[Chunk]:
    """Yield the chunks of ``graph.output`` (nothing for make-only graphs), saving as it goes.

    On any exception (or when the caller stops reading early), every saver that has not
    closed is marked failed and every producer is closed (its cleanup runs); data sets whose
    producer finished before that were closed at once and stay complete. The exception
    propagates unchanged, with its traceback, once.
    """
    savers: dict[str, list[Saver]] = {}
    nodes: dict[str, _Node] = {}
    try:
        for data_type, factories in graph.savers.items():
            group = savers[data_type] = []
            for make in factories:
                group.append(make())
        for producer in graph.producers:
            node = _Node(producer, {o: savers.get(o, []) for o in producer.outputs}, graph.stats)
            for o in producer.outputs:
                nodes[o] = node
        for producer in graph.producers:
            node = nodes[producer.outputs[0]]
            inputs = {
                d: nodes[d].topics[d].read(nodes[d].topics[d].subscribe()) for d in producer.inputs
            }
            node.iterator = iter(producer.start(inputs, None))
        if graph.output is not None:
            out_topic = nodes[graph.output].topics[graph.output]
            yield from out_topic.read(out_topic.subscribe())
        for producer in reversed(graph.producers):
            node = nodes[producer.outputs[0]]
            while not node.done:
                node.advance()
    except GeneratorExit:
        _fail_all(savers, ProcessingStopped("processing stopped: the caller stopped reading early"))
        _close_all(nodes)
        raise
    except BaseException as e:
        _fail_all(savers, e)
        _close_all(nodes)
        raise


def _fail_all(savers: dict[str, list[Saver]], exc: BaseException) -> None:
    for group in savers.values():
        for saver in group:
            saver.fail(exc)  # a no-op for savers that closed


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
