"""A producer thread's work in the threaded executor: iterate one producer, send its outputs.

One producer alone in its thread (a loader, a source, a ``parallel`` plugin, or a plugin no
other plugin is fused with: ``segments.py``) sends every output chunk to that output's
mailbox and to its inline savers (``inline_saving.py``), and closes them at its end. A
``parallel`` producer's chunk still computing in a pool goes to the mailboxes as its future,
and to the savers once it is done (``InlineSavers.send_later``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from concurrent.futures import Future

from strax_decl.chunk import Chunk, check_touches
from strax_decl.engine.futures import then
from strax_decl.engine.graph import Producer
from strax_decl.engine.hooks import Hooks
from strax_decl.engine.inline_saving import InlineSavers
from strax_decl.engine.mailbox import Mailbox, MailboxKilled, Subscription
from strax_decl.engine.stopping import Span, note_failure
from strax_decl.plugin import Submit

__all__ = ["produce"]


def produce(
    producer: Producer,
    inputs: Mapping[str, Subscription],
    outputs: Mapping[str, Mailbox],
    submit: Submit | None,
    hooks: Hooks,
    run_id: str | None = None,
    inline: InlineSavers | None = None,
) -> None:
    """A producer thread's work: iterate the producer, send its outputs (to their mailboxes
    and its ``inline`` savers), close them."""
    # Outputs nobody reads (a by-product of a multi-output plugin that is neither saved nor
    # requested) are dropped here instead of filling a mailbox forever.
    live = {o: mb for o, mb in outputs.items() if mb.active_subscribers}
    saved = inline.by_output if inline is not None else {}
    if not saved:
        inline = None
    previous_end: dict[str, int] = {}
    bound = min((mb.max_messages for mb in outputs.values()), default=1)  # chunks in flight
    span = Span()
    read = {d: span.reading(sub) for d, sub in inputs.items()}
    iterator = iter(producer.start(read, submit, hooks))
    try:
        for item in iterator:
            if not item:  # a live source waiting for data (sd.NOT_YET): stop if told to
                _raise_if_killed(outputs)
                continue
            if isinstance(item, Future):
                # computing in a pool (or cancelled: the run stops, which its mailboxes say):
                # readers and savers wait for it
                if not item.done() or item.cancelled():
                    for o, mailbox in live.items():
                        mailbox.send(_pick(item, o))
                    if inline is not None:
                        inline.send_later(item, bound, lambda: _raise_if_killed(outputs))
                    previous_end.clear()  # its chunks' ends are not known here yet
                    if not live:  # saved only: told to stop?
                        _raise_if_killed(outputs)
                    continue
                # computed inline (``pools.INLINE_BELOW_S``), or already: a result like any
                # other (its exception, noted where it was computed, is this producer's)
                item = item.result()
            for o, chunk in item.items():
                span.produced(chunk)
                mb = live.get(o)
                if mb is None and o not in saved:
                    continue
                check_touches(f"{producer.name}, output {o!r}", chunk, previous_end.get(o))
                previous_end[o] = chunk.end
                if mb is not None:
                    mb.send(chunk)
                elif (killed := outputs[o].reason) is not None:  # saved only; told to stop
                    raise MailboxKilled(killed, o)
                if inline is not None and o in saved:
                    inline.send(o, chunk)
        for mb in outputs.values():
            mb.close()
        if inline is not None and inline.save_computed():
            inline.close()
            inline.join()
    except MailboxKilled:
        raise  # someone else's failure
    except BaseException as e:
        note_failure(e, producer.name, run_id, span.where)
        raise
    finally:
        # Run the producer's cleanup (a generator's finally blocks) in its own thread, and
        # stop holding back the mailboxes it read.
        close = getattr(iterator, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
        for sub in inputs.values():
            sub.close()


def _raise_if_killed(outputs: Mapping[str, Mailbox]) -> None:
    """Raise the reason the run stops, if it does (a killed output mailbox)."""
    for box in outputs.values():
        if box.reason is not None:
            raise MailboxKilled(box.reason, box.name)


def _pick(future: Future[dict[str, Chunk]], output: str) -> Future[Chunk]:
    """A future of one output of a multi-output future; always completes when ``future`` does
    (also if it is cancelled), so no reader can wait for it forever."""
    return then(future, lambda outputs: outputs[output])  # KeyError if it lacks this output
