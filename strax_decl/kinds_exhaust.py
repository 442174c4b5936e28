"""The exhaust kind: ``compute`` called once, on every row of the run (strax's ExhaustPlugin).

For run-level statistics and anything else that needs the whole run at once (a percentile,
a fit over all rows). The runner reads every input to its end, joins the chunks per kind
and calls ``compute`` once over the whole input range; its output is one chunk spanning that
range (or, with a generator compute, the chunks it yields, tiling the range).

The cost is memory: all input rows of a run are held at once, twice while the chunks are
joined (``bench/exhaust_memory_bench.py`` measures it). Reading never stops while it
buffers, so bounded mailboxes cannot deadlock on it (a plugin reading both its input and its
output makes the pipeline hold the input for it, as for any lag). It keeps the run's input
as state, so it is not resumable after a killed writer, and it cannot be parallel (there is
one computation).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from typing import ClassVar

from strax_decl.chunk import Chunk, concatenate
from strax_decl.plugin import Plugin, PluginDeclarationError, Submit
from strax_decl.runner import PluginRunner

__all__ = ["ExhaustPlugin", "ExhaustRunner"]


class ExhaustRunner(PluginRunner):
    """Runs an ``ExhaustPlugin``: every aligned step is buffered, then one computation."""

    def iterate(
        self, inputs: Mapping[str, Iterator[Chunk]], submit: Submit | None = None
    ) -> Iterator[dict[str, Chunk] | Future[dict[str, Chunk]]]:
        parts: dict[str, list[Chunk]] = {}
        for by_kind, _start, _end in self.steps(inputs):  # drains every input
            for kind, chunk in by_kind.items():
                parts.setdefault(kind, []).append(chunk)
        if not parts:
            return  # no input chunk at all: no output chunk, as for any plugin
        whole = {kind: concatenate(parts.pop(kind)) for kind in list(parts)}
        first = next(iter(whole.values()))
        if self.plugin.compute_is_generator:
            yield from self.compute_down(whole, first.start, first.end)
        else:
            yield self.compute_step(whole, first.start, first.end)


class ExhaustPlugin(Plugin):
    """A plugin whose ``compute`` is called once per run, with all rows of its inputs.

    Declare ``Inputs``, ``Outputs`` and ``compute(self, <kind>=rows, ..., start, end)`` as for
    a plain plugin; ``start``/``end`` span the whole input. It returns the rows of one output
    chunk over that span (a generator may yield several chunks tiling it, to hand on a big
    output piece by piece). Memory: every input row of the run at once.
    """

    abstract = True
    resumable: ClassVar[bool] = False  # its one step is the whole run
    _runner = ExhaustRunner

    @classmethod
    def _read_declaration(cls) -> None:
        model = cls.Inputs
        if isinstance(model, type) and not getattr(model, "model_fields", {}):
            raise PluginDeclarationError(
                f"plugin {cls.__name__}: an ExhaustPlugin computes once on all rows of its "
                "inputs, so it needs at least one input (declare Inputs; a plugin without "
                "inputs is a source: subclass sd.Plugin and define source)"
            )
        super()._read_declaration()

    @classmethod
    def _check_declaration(cls) -> None:
        if cls.parallel:
            raise PluginDeclarationError(
                f"plugin {cls.name}: an ExhaustPlugin computes once per run, so it cannot be "
                "parallel"
            )
        if cls.source is not Plugin.source:
            raise PluginDeclarationError(
                f"plugin {cls.name}: an ExhaustPlugin defines compute, not source"
            )
