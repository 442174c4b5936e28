"""Fused segments: several plugins run in one thread of the threaded executor, pulling on demand.

A thread per plugin cost a mailbox hand-off (a wake-up and a GIL transfer) per chunk and per
edge, for plugins that mostly hold the GIL anyway: with many small chunks those hand-offs were
the largest part of the engine's cost (issue 21). So the threaded executor keeps threads only
where they buy parallelism: a producer without inputs (a loader decompressing, a source) and a
``parallel`` plugin (its pool works while the others go on) get their own; every other plugin
is fused with its neighbours into a *segment* that one thread runs as the serial executor runs
a graph: a consumer reading an input made in its segment advances that input's producer by one
step in the same thread (:class:`Topic`), and outputs read outside the segment (another
thread, the caller, nobody) go to their mailboxes as before.

:func:`partition` groups the plugins by the set of ``parallel`` plugins upstream of them (then
into connected parts), so no path leaves a segment and comes back into it: a segment never
waits on a mailbox that only its own later work would fill.

The thread drives the segment's sinks (members no other member reads), always the one that has
read its inputs least far, so that in-segment buffers for several readers hold only the
chunks between them (flat memory). On a failure, with ``keep_finished``, the members that the
unfinished savers still need are run to their end (``needed``), as separate threads would have.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future

from strax_decl.chunk import Chunk, check_touches
from strax_decl.engine.graph import Graph, Producer
from strax_decl.engine.hooks import Hooks
from strax_decl.engine.inline_saving import InlineSavers
from strax_decl.engine.mailbox import Mailbox, MailboxKilled, Subscription
from strax_decl.engine.stopping import Span, is_interrupt, note_failure
from strax_decl.engine.topic import Topic
from strax_decl.plugin import Submit

__all__ = ["Segment", "partition"]

Fail = Callable[[BaseException, Sequence[str]], None]
"""The run's ``fail(exc, failed_data_types)``."""
Needed = Callable[[], "set[str] | None"]
"""Names of the producers still needed after a failure (None: everything stops)."""


def partition(graph: Graph) -> list[tuple[Producer, ...]]:
    """The graph's producers in segments (dependency order inside each): a producer without
    inputs or ``parallel`` alone, the others grouped by the ``parallel`` producers upstream of
    them and split into connected parts."""
    by_output = {o: p for p in graph.producers for o in p.outputs}
    upstream: dict[str, frozenset[str]] = {}
    for p in graph.producers:  # dependency order
        seen: set[str] = set()
        for d in p.inputs:
            q = by_output.get(d)
            if q is not None:
                seen |= upstream[q.name]
                if q.parallel:
                    seen.add(q.name)
        upstream[p.name] = frozenset(seen)
    fusable = {p.name for p in graph.producers if p.inputs and not p.parallel}
    parent = {p.name: p.name for p in graph.producers}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for p in graph.producers:
        if p.name not in fusable:
            continue
        for d in p.inputs:
            q = by_output.get(d)
            if q is not None and q.name in fusable and upstream[q.name] == upstream[p.name]:
                parent[root(q.name)] = root(p.name)
    groups: dict[str, list[Producer]] = {}
    for p in graph.producers:
        groups.setdefault(root(p.name), []).append(p)
    return [tuple(g) for g in groups.values()]


class _Node:
    """One member of a segment: its iterator, its outputs (in-segment topics, mailboxes, inline
    savers) and where it is."""

    def __init__(
        self,
        producer: Producer,
        mailboxes: Mapping[str, Mailbox],
        inline: InlineSavers,
        run_id: str | None,
    ) -> None:
        self.producer = producer
        self.name = producer.name
        self.mailboxes = {o: mailboxes[o] for o in producer.outputs}
        self.inline = inline
        self.saved = inline.by_output
        self.run_id = run_id
        self.topics: dict[str, Topic] = {}
        self.live: dict[str, Mailbox] = {}  # exported outputs somebody reads (set at start)
        self.previous_end: dict[str, int] = {}
        self.iterator: Iterator[object] | None = None
        self.reads: list[tuple[Topic, int]] = []
        self.subscriptions: list[Subscription] = []
        self.span = Span()
        self.done = False
        self.error: BaseException | None = None

    def advance(self) -> None:
        """One step of the producer (which pulls its in-segment inputs on demand)."""
        try:
            self._advance()
        except MailboxKilled as e:
            self.error = e.reason
            raise  # someone else's failure
        except BaseException as e:
            self.error = e
            note_failure(e, self.name, self.run_id, self.span.where)
            raise

    def _advance(self) -> None:
        assert self.iterator is not None
        try:
            item = next(self.iterator)
        except StopIteration:
            self.done = True
            self._stop_reading()
            for box in self.mailboxes.values():
                box.close()
            self.inline.close()
            return
        if not item:  # a live wait (sd.NOT_YET): stop if told to
            self._check_killed(self.producer.outputs)
            return
        if isinstance(item, Future):  # pragma: no cover - parallel producers are not fused
            raise TypeError(f"{self.name} sent a future inside a fused segment")
        assert isinstance(item, dict)
        for o, chunk in item.items():
            self.span.produced(chunk)
            mb = self.live.get(o)
            topic = self.topics.get(o)
            if mb is None and topic is None and o not in self.saved:
                continue  # nobody reads it (a by-product): dropped
            check_touches(f"{self.name}, output {o!r}", chunk, self.previous_end.get(o))
            self.previous_end[o] = chunk.end
            if topic is not None:
                topic.push(chunk)
            if mb is not None:
                mb.send(chunk)
            else:
                self._check_killed((o,))  # in-segment or saved only: told to stop?
            if o in self.saved:
                self.inline.send(o, chunk)

    def _check_killed(self, outputs: Sequence[str]) -> None:
        for o in outputs:
            reason = self.mailboxes[o].reason
            if reason is not None:
                raise MailboxKilled(reason, o)

    def close(self) -> None:
        """Run its cleanup (a generator's finally blocks) and stop holding back its inputs."""
        close = getattr(self.iterator, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
        self._stop_reading()

    def _stop_reading(self) -> None:
        """It will not read again: nothing is buffered or held back for it any more."""
        for sub in self.subscriptions:
            sub.close()
        for topic, rid in self.reads:
            topic.unsubscribe(rid)


class Segment:
    """Several producers run in one thread (see the module docstring)."""

    def __init__(
        self,
        producers: Sequence[Producer],
        mailboxes: Mapping[str, Mailbox],
        inline: Mapping[str, InlineSavers],
        run_id: str | None,
    ) -> None:
        self.nodes = [_Node(p, mailboxes, inline[p.name], run_id) for p in producers]
        self.names = tuple(p.name for p in producers)
        by_output = {o: n for n in self.nodes for o in n.producer.outputs}
        # Every subscription exists before any thread starts (the executor's rule).
        self._inputs: dict[str, dict[str, Iterator[Chunk]]] = {}
        for node in self.nodes:
            inputs: dict[str, Iterator[Chunk]] = {}
            for d in node.producer.inputs:
                source = by_output.get(d)
                if source is None:
                    sub = mailboxes[d].subscribe()
                    node.subscriptions.append(sub)
                    inputs[d] = node.span.reading(sub)
                else:
                    topic = source.topics.setdefault(d, Topic(source))
                    rid = topic.subscribe()
                    node.reads.append((topic, rid))
                    inputs[d] = node.span.reading(topic.read(rid))
            self._inputs[node.name] = inputs
        self.thread_name = "+".join(self.names)

    @property
    def failed_outputs(self) -> tuple[str, ...]:
        return tuple(o for n in self.nodes if n.error is not None for o in n.producer.outputs)

    def run(
        self,
        submit: Callable[[Producer], Submit | None],
        hooks: Hooks,
        fail: Fail,
        needed: Needed,
    ) -> None:
        """The thread's work: start every member, drive the sinks to their end; on a failure
        record it (``fail``), finish what is still ``needed``, and raise it."""
        try:
            for node in self.nodes:
                node.live = {o: mb for o, mb in node.mailboxes.items() if mb.active_subscribers}
                start = node.producer.start
                node.iterator = iter(start(self._inputs[node.name], submit(node.producer), hooks))
            try:
                self._drive(self.nodes)
            except BaseException as e:
                if is_interrupt(e):
                    raise
                fail(e, self.failed_outputs)
                self._keep_finished(fail, needed)
                raise
        finally:
            for node in reversed(self.nodes):  # downstream first
                node.close()
            for node in self.nodes:  # their savers closing in the background
                node.inline.join()

    def _keep_finished(self, fail: Fail, needed: Needed) -> None:
        """After a failure: run to their end the members still needed (another failure dooms
        what depends on it and the rest goes on; an interrupt is raised at once)."""
        while True:
            wanted = needed()
            if wanted is None:
                return
            todo = []
            for node in self.nodes:
                if node.name in wanted and not node.done and node.error is None:
                    todo.append(node)
                else:  # not needed (or dead): its cleanup runs, it holds nothing back
                    node.close()
            if not todo:
                return
            try:
                self._drive(todo)
                return
            except BaseException as e:
                if is_interrupt(e):
                    raise
                fail(e, self.failed_outputs)

    def _drive(self, nodes: Sequence[_Node]) -> None:
        """Advance the sinks among ``nodes``, the one that read least far first, until
        all are done; then whatever member is left (nothing read it to its end)."""
        ids = {id(n) for n in nodes}
        sinks = [
            n
            for n in nodes
            if not any(
                id(topic.node) in ids and id(reader) in ids
                for reader in nodes
                for topic, _ in reader.reads
                if topic.node is n
            )
        ]
        pending = [n for n in sinks if not n.done]
        while pending:
            node = min(pending, key=_read_up_to) if len(pending) > 1 else pending[0]
            node.advance()
            if node.done:
                pending = [n for n in pending if not n.done]
        for node in reversed(nodes):
            while not node.done:
                node.advance()


def _read_up_to(node: _Node) -> int:
    """How far a sink has read its inputs (the one behind is advanced first)."""
    end = node.span.end
    return -(2**63) if end is None else end
