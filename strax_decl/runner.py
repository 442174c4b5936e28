"""Running a plugin: the step machinery, kept off the class users subclass.

A ``Plugin`` is a declaration plus the hooks its author writes (``setup``, ``compute``,
``source``, ``run_end``, and a kind's ``compute_loop`` / ``cut_by`` / ``window_size``). Turning
it into a stream of checked output chunks (time-aligned steps, same-kind inputs merged,
compute per step, down-chunking, source iteration, the output checks) is done here, by a
``PluginRunner`` wrapping one plugin instance. So a user method that happens to be called
``steps``, ``kinds`` or ``iterate`` is just a method of the plugin, and cannot replace
framework code.

A plugin kind whose steps differ (an overlap window) names its runner class in the private
class attribute ``_runner``; :func:`runner_for` picks it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from strax_decl.chunk import (
    Chunk,
    ChunkLawViolation,
    OutputWhere,
    check_chunk,
    check_touches,
    common_split_point,
    concatenate,
    empty_chunk,
    endtimes,
    merge,
    safe_split_point,
    split,
)
from strax_decl.live_wait import LiveWait
from strax_decl.plugin import Plugin, PluginGaveWrongOutput, PluginRaisedStopIteration, Submit
from strax_decl.schema import dtype_difference, same_layout
from strax_decl.sync import aligned

if TYPE_CHECKING:  # pragma: no cover
    from strax_decl.kinds import OverlapWindowPlugin

__all__ = ["NOT_YET", "ChunkReport", "OverlapWindowRunner", "PluginRunner", "runner_for"]

_DONE: Any = object()  # end-of-iteration marker for next(iterator, _DONE)


class _NotYet:
    """The type of ``NOT_YET``."""

    def __repr__(self) -> str:
        return "sd.NOT_YET"


NOT_YET: Any = _NotYet()
"""Yielded by a live source (``live = True``): no new data yet, but the run goes on."""


class ChunkReport(Protocol):
    """Where a runner reports the time of each computation and what it produced (the
    engine's hooks satisfy it)."""

    def on_chunk(self, component: str, seconds: float, chunks: Sequence[Chunk]) -> None: ...


class PluginRunner:
    """Runs one plugin instance: outputs per step, in order, checked against the declaration.

    ``report`` receives each computation's seconds and output chunks under the plugin's name
    (None: nobody times it, e.g. a copy running in a worker process).
    """

    def __init__(self, plugin: Plugin, report: ChunkReport | None = None) -> None:
        self.plugin = plugin
        self.name = plugin.name
        self.report = report
        self._names_by_kind: dict[str, list[str]] | None = None

    @property
    def kinds(self) -> list[str]:
        """Input data kinds, in declaration order: the names compute receives."""
        plugin = self.plugin
        return list(dict.fromkeys(plugin.input_kinds.get(d, d) for d in plugin.inputs))

    def iterate(
        self, inputs: Mapping[str, Iterator[Chunk]], submit: Submit | None = None
    ) -> Iterator[dict[str, Chunk] | Future[dict[str, Chunk]]]:
        """Outputs per step, in order. With ``submit``, yields futures (parallel plugins)."""
        if self.plugin.is_source:
            yield from self._touching(self._iterate_source())
            return
        for by_kind, start, end in self.steps(inputs):
            if submit is not None:
                yield submit(self.compute_step, by_kind, start, end)
            elif self.plugin.compute_is_generator:
                yield from self.compute_down(by_kind, start, end)
            else:
                yield self.compute_step(by_kind, start, end)

    def steps(
        self, inputs: Mapping[str, Iterator[Chunk]]
    ) -> Iterator[tuple[dict[str, Chunk], int, int]]:
        """Time-aligned steps ``(one merged chunk per input kind, start, end)``."""
        plugin = self.plugin
        dtypes = {
            name: d if (d := plugin.input_dtypes.get(name)) is not None else spec.schema.dtype
            for name, spec in plugin.inputs.items()
        }
        for step in aligned(inputs, dtypes):
            first = next(iter(step.values()))
            yield self.merge_by_kind(step), first.start, first.end

    def merge_by_kind(self, step: Mapping[str, Chunk]) -> dict[str, Chunk]:
        """One chunk per input kind, same-kind inputs merged field-wise."""
        names = self._names_by_kind
        if names is None:  # the grouping is the plugin's: worked out once
            plugin = self.plugin
            names = {}
            for data_type in plugin.inputs:
                kind = plugin.input_kinds.get(data_type, data_type)
                names.setdefault(kind, []).append(data_type)
            self._names_by_kind = names
        return {
            kind: step[types[0]] if len(types) == 1 else merge([step[t] for t in types], types)
            for kind, types in names.items()
        }

    def compute_step(self, by_kind: Mapping[str, Chunk], start: int, end: int) -> dict[str, Chunk]:
        """Call compute on one aligned step and wrap its result in checked chunks."""
        t0 = time.perf_counter()
        try:
            result = self.plugin.compute(**self._compute_kwargs(by_kind, start, end))
        except StopIteration as e:
            raise self._leaked(e, "compute", start, end) from e
        out = self.to_output_chunks(result, start, end)
        for name, chunk in out.items():
            if (chunk.start, chunk.end) != (start, end):
                raise ChunkLawViolation(
                    f"plugin {self.name}, output {name!r}: compute returned {chunk!r} for the "
                    f"step [{start}, {end}); return rows (they are wrapped in the step's "
                    "interval), or make compute a generator to yield several chunks"
                )
            rows = self._rows_of_kind(name, by_kind)
            if rows is not None:
                self._check_same_kind(name, chunk.data, rows, 0, start, end, last=True)
        self._report(time.perf_counter() - t0, out)
        return out

    def compute_down(
        self, by_kind: Mapping[str, Chunk], start: int, end: int
    ) -> Iterator[dict[str, Chunk]]:
        """Down-chunking: the chunks compute yields for one step, checked to tile ``[start, end)``.

        Lets a plugin with memory-heavy outputs hand them on piece by piece. A generator that
        yields nothing stands for empty outputs over the whole step.
        """
        outputs = self.plugin.outputs
        items = iter(self.plugin.compute(**self._compute_kwargs(by_kind, start, end)))
        reached = dict.fromkeys(outputs, start)
        same_kind = {o: self._rows_of_kind(o, by_kind) for o in outputs}
        offset = dict.fromkeys(outputs, 0)  # per same-kind output: input rows matched so far
        n_items = 0
        for i in itertools.count():
            t0 = time.perf_counter()
            item = self._next(items, "compute", start, end)
            if item is _DONE:
                break
            values = item.values() if isinstance(item, Mapping) else [item]
            if not all(isinstance(v, Chunk) for v in values):
                raise PluginGaveWrongOutput(
                    f"plugin {self.name}: compute is a generator (down-chunking), so it must "
                    f"yield sd.Chunk or {{output: sd.Chunk}}; item {i} was {item!r:.200}"
                )
            out = self.to_output_chunks(item, start, end)
            for name, chunk in out.items():
                if chunk.start != reached[name] or chunk.end > end:
                    raise ChunkLawViolation(
                        f"plugin {self.name}, output {name!r}: chunk {i} {chunk!r} must start "
                        f"at {reached[name]} (where the previous one ended) and end by {end}: "
                        f"the chunks yielded for one step tile the step [{start}, {end})"
                    )
                reached[name] = chunk.end
                rows = same_kind[name]
                if rows is not None:
                    self._check_same_kind(name, chunk.data, rows, offset[name], start, end)
                    offset[name] += len(chunk)
            self._report(time.perf_counter() - t0, out)
            n_items += 1
            yield out
        for name, rows in same_kind.items():
            if rows is not None:  # every row of the kind must have had its output row
                self._check_same_kind(name, rows[:0], rows, offset[name], start, end, last=True)
        if n_items == 0:
            yield {o: empty_chunk(start, end, spec.dtype) for o, spec in outputs.items()}
            return
        short = {o: r for o, r in reached.items() if r != end}
        if short:
            o, r = next(iter(short.items()))
            raise ChunkLawViolation(
                f"plugin {self.name}, output {o!r}: the chunks yielded for the step "
                f"[{start}, {end}) stop at {r}; the last one must end at {end}"
            )

    def _leaked(
        self, exc: BaseException, where: str, start: int | None = None, end: int | None = None
    ) -> PluginRaisedStopIteration:
        """The error replacing a StopIteration that escaped the plugin's own code."""
        step = f" in the step [{start}, {end})" if start is not None else ""
        return PluginRaisedStopIteration(
            f"plugin {self.name} raised StopIteration in {where}{step}: {exc!r}; left as is "
            "it would look like the end of the stream and truncate the output, so the run "
            "fails instead (catch it where it is raised, e.g. next(iterator, default))"
        )

    def _next(self, items: Iterator[Any], where: str, start: int | None, end: int | None) -> Any:
        """``next(items, _DONE)``, but a StopIteration leaking from inside a generator (which
        Python turns into a RuntimeError) becomes an error naming this plugin."""
        try:
            return next(items, _DONE)
        except RuntimeError as e:
            if isinstance(e.__cause__, StopIteration) and "raised StopIteration" in str(e):
                raise self._leaked(e.__cause__, where, start, end) from e.__cause__
            raise

    def _rows_of_kind(self, output: str, by_kind: Mapping[str, Chunk]) -> np.ndarray | None:
        """The input rows an output must correspond to one to one: those of its own kind, if
        that is an input kind (None otherwise)."""
        chunk = by_kind.get(self.plugin.outputs[output].kind)
        return None if chunk is None else chunk.data

    def _check_same_kind(
        self,
        output: str,
        got: np.ndarray,
        rows: np.ndarray,
        offset: int,
        start: int,
        end: int,
        last: bool = False,
    ) -> None:
        """Output rows ``got`` must be input rows ``rows[offset:]`` of their kind (``last``:
        exactly those): same number, same ``time`` and, where the output has one, end time.

        A same-kind output with other rows would be stored complete and fail only in a later
        merge with its siblings, or silently join wrong rows.
        """
        expected = rows[offset : offset + len(got)]
        n = min(len(got), len(expected))
        names = got.dtype.names or ()
        has_end = "endtime" in names or ("dt" in names and "length" in names)
        if (
            len(got) == len(expected)
            and not (last and offset + len(got) != len(rows))
            # compared as bytes: for the few rows of a small chunk, much faster
            and got["time"].tobytes() == expected["time"].tobytes()
            and (not has_end or endtimes(got).tobytes() == endtimes(expected).tobytes())
        ):
            return  # the common case: every row matches
        bad = np.flatnonzero(got["time"][:n] != expected["time"][:n])
        if has_end and n:
            bad_end = np.flatnonzero(endtimes(got[:n]) != endtimes(expected[:n]))
            bad = np.union1d(bad, bad_end)
        if len(bad):
            first = int(bad[0])
        elif len(got) > len(expected) or (last and offset + len(got) != len(rows)):
            first = n
        else:
            return
        kind = self.plugin.outputs[output].kind

        def row(data: np.ndarray, i: int) -> str:
            if i >= len(data):
                return "none"
            fields = data.dtype.names or ()
            if "endtime" not in fields and not ("dt" in fields and "length" in fields):
                return f"time {int(data['time'][i])}"
            return f"[{int(data['time'][i])}, {int(endtimes(data[i : i + 1])[0])})"

        so_far = "" if last else " so far"
        raise PluginGaveWrongOutput(
            f"plugin {self.name}, output {output!r} of kind {kind!r}: its rows must correspond "
            f"one to one with the input rows of kind {kind!r}, but in the step [{start}, {end}) "
            f"it gave {offset + len(got)} rows{so_far} for {len(rows)} input rows, and row "
            f"{offset + first} differs: output {row(got, first)}, input "
            f"{row(rows, offset + first)} (declare another kind for rows that are not those "
            "of the input)"
        )

    def add_timed(self, timed: tuple[Any, float]) -> Any:
        """Report a ``call_timed`` result of ``compute_step`` run elsewhere; return its outputs."""
        result, seconds = timed
        if isinstance(result, Mapping):
            self._report(seconds, result)
        return result

    def _report(self, seconds: float, out: Mapping[str, Chunk]) -> None:
        if self.report is not None:
            self.report.on_chunk(self.name, seconds, list(out.values()))

    def _compute_kwargs(self, by_kind: Mapping[str, Chunk], start: int, end: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {kind: c.data for kind, c in by_kind.items()}
        if self.plugin.compute_takes_start_end:
            kwargs["start"], kwargs["end"] = start, end
        return kwargs

    def to_output_chunks(self, result: Any, start: int, end: int) -> dict[str, Chunk]:
        """Wrap compute's return value as one chunk per output, checking dtypes."""
        outputs = self.plugin.outputs
        if not isinstance(result, Mapping) or self._are_columns(result):
            result = {self._single_output(): result}
        missing = set(outputs) - set(result)
        extra = set(result) - set(outputs)
        if missing or extra:
            hint = ""
            if len(outputs) == 1:
                fields = ", ".join(next(iter(outputs.values())).dtype.names or ())
                hint = f" (or return a dict {{field: column}} of the fields {fields})"
            raise PluginGaveWrongOutput(
                f"plugin {self.name} returned outputs {sorted(result)}, declared "
                f"{sorted(outputs)}{hint}"
            )
        out: dict[str, Chunk] = {}
        for name, value in result.items():
            expected = outputs[name].dtype
            if isinstance(value, Mapping):
                value = self._from_columns(name, value, expected)
            if isinstance(value, Chunk):
                chunk = value
            elif isinstance(value, np.ndarray):
                chunk = Chunk(start, end, value)
            else:
                raise PluginGaveWrongOutput(
                    f"plugin {self.name}, output {name!r}: compute returned "
                    f"{type(value).__name__}, expected a numpy structured array (or a dict "
                    "{field: column} of its fields)"
                )
            if chunk.data.dtype != expected:
                if not same_layout(chunk.data.dtype, expected):
                    raise PluginGaveWrongOutput(
                        f"plugin {self.name}, output {name!r}: rows have dtype other than the "
                        f"declared one: {dtype_difference(chunk.data.dtype, expected)} (build "
                        f"rows with {outputs[name].schema.__name__}.zeros(n))"
                    )
                # the same bytes (e.g. a strax dtype with titles): the declared dtype's view
                chunk = Chunk(chunk.start, chunk.end, chunk.data.view(expected))
            check_chunk(chunk, where=OutputWhere(self.name, name, chunk))
            out[name] = chunk
        return out

    def _are_columns(self, result: Mapping[str, Any]) -> bool:
        """Whether a single-output plugin's dict is ``{field: column}`` (not ``{output: rows}``)."""
        outputs = self.plugin.outputs
        if len(outputs) != 1 or not result:
            return False
        ((name, spec),) = outputs.items()
        if set(result) == {name} and not _is_column(result[name]):
            return False
        return set(result) <= set(spec.dtype.names or ())

    def _from_columns(self, name: str, columns: Mapping[str, Any], dtype: np.dtype) -> np.ndarray:
        """Rows of ``dtype`` from ``{field: column}``: every field, columns of one length."""
        fields = dtype.names or ()
        missing = [f for f in fields if f not in columns]
        unknown = [f for f in columns if f not in fields]
        if missing or unknown:
            what = []
            if missing:
                what.append(f"lacks field(s) {', '.join(map(repr, missing))}")
            if unknown:
                what.append(f"has key(s) {', '.join(map(repr, unknown))} that are not fields")
            raise PluginGaveWrongOutput(
                f"plugin {self.name}, output {name!r}: compute returned a dict that "
                f"{' and '.join(what)}; return the rows, or a dict of columns with exactly "
                f"the fields {', '.join(fields)}"
                + ("" if len(self.plugin.outputs) == 1 else " (or {output: rows})")
            )
        lengths = {f: len(c) for f, c in columns.items() if np.ndim(c)}  # scalars broadcast
        n = next(iter(lengths.values()), 0)
        if any(v != n for v in lengths.values()):
            shown = ", ".join(f"{f}: {v}" for f, v in lengths.items())
            raise PluginGaveWrongOutput(
                f"plugin {self.name}, output {name!r}: the columns returned have different "
                f"lengths ({shown})"
            )
        rows = np.zeros(n, dtype=dtype)
        for f, column in columns.items():
            try:
                rows[f] = column
            except (TypeError, ValueError) as e:
                raise PluginGaveWrongOutput(
                    f"plugin {self.name}, output {name!r}, field {f!r}: the column returned "
                    f"does not fit {dtype[f]}: {e}"
                ) from None
        return rows

    def _single_output(self) -> str:
        outputs = self.plugin.outputs
        if len(outputs) != 1:
            raise PluginGaveWrongOutput(
                f"plugin {self.name} has outputs {sorted(outputs)}: compute must return "
                "a dict {output name: rows}"
            )
        return next(iter(outputs))

    def _touching(self, items: Iterator[dict[str, Chunk]]) -> Iterator[dict[str, Chunk]]:
        """Pass ``items`` on, checking that each output's chunks touch (naming this plugin)."""
        previous: dict[str, int] = {}
        for out in items:
            for name, chunk in out.items():
                check_touches(f"plugin {self.name}, output {name!r}", chunk, previous.get(name))
                previous[name] = chunk.end
            yield out

    def _iterate_source(self) -> Iterator[dict[str, Chunk]]:
        plugin = self.plugin
        items = iter(plugin.source(plugin.run_id))
        wait = LiveWait(plugin)
        for i in itertools.count():
            t0 = time.perf_counter()
            item = self._next(items, "source", None, None)
            if item is _DONE:
                return
            if item is NOT_YET and plugin.live:
                wait.not_yet()  # no busy loop; then an empty step: the executor may stop it
                yield {}
                continue
            wait.reset()
            if isinstance(item, Chunk):
                out = self.to_output_chunks(item, item.start, item.end)
            elif isinstance(item, Mapping):
                chunks = list(item.values())
                if not chunks or not all(isinstance(c, Chunk) for c in chunks):
                    raise PluginGaveWrongOutput(
                        f"plugin {self.name}: source item {i} must be a Chunk or a dict of Chunks"
                    )
                out = self.to_output_chunks(item, chunks[0].start, chunks[0].end)
            else:
                raise PluginGaveWrongOutput(
                    f"plugin {self.name}: source yielded {type(item).__name__} at item {i}; "
                    "yield sd.Chunk(start, end, rows)"
                )
            self._report(time.perf_counter() - t0, out)  # the source's time, for the summary
            yield out


class OverlapWindowRunner(PluginRunner):
    """Runs an ``OverlapWindowPlugin``: sends what the window makes certain, holds back the
    rest until more input arrives (see that class for the contract)."""

    plugin: OverlapWindowPlugin

    def iterate(
        self, inputs: Mapping[str, Iterator[Chunk]], submit: Submit | None = None
    ) -> Iterator[dict[str, Chunk] | Future[dict[str, Chunk]]]:
        left, right = self.plugin._window()
        cache: dict[str, Chunk] | None = None  # input kept from earlier steps, per kind
        sent: dict[str, int] = {}  # per output: rows before this time have been sent
        held: dict[str, Chunk] = {}  # per output: rows computed but not yet certain
        for by_kind, start, end in self.steps(inputs):
            if cache is not None:
                by_kind = {k: concatenate([cache[k], c]) for k, c in by_kind.items()}
            if not sent:
                sent = dict.fromkeys(self.plugin.outputs, start)
            computed_from = next(iter(by_kind.values())).start
            result = self.compute_step(by_kind, computed_from, end)
            ready: dict[str, Chunk] = {}
            for name, chunk in result.items():
                new = self._unsent(name, chunk, sent[name], (left, right))
                cut = max(sent[name], end - right - 1)
                cut = safe_split_point(new, cut)
                if cut > sent[name]:
                    ready[name], held[name] = split(new, cut)
                    sent[name] = cut
                else:
                    held[name] = new
            if ready:
                yield ready
            # Keep the input that rows not yet sent may depend on (one extra ns for safety).
            keep_from = common_split_point(list(by_kind.values()), min(sent.values()) - left - 1)
            cache = {k: split(c, max(keep_from, c.start))[1] for k, c in by_kind.items()}
        final = {name: c for name, c in held.items() if c.end > c.start or len(c)}
        if final:
            yield final

    def _unsent(self, name: str, chunk: Chunk, sent: int, window: tuple[int, int]) -> Chunk:
        """The rows of ``chunk`` not sent yet: those starting at or after ``sent``."""
        data = chunk.data
        i = int(np.searchsorted(data["time"], sent, side="left")) if len(data) else 0
        if i:
            ends = endtimes(data[:i])
            late = np.flatnonzero(ends > sent)
            if len(late):
                j = int(late[0])
                raise ChunkLawViolation(
                    f"plugin {self.name}, output {name!r}: row [{int(data['time'][j])}, "
                    f"{int(ends[j])}) starts before {sent}, where the rows already sent end, "
                    f"but ends after it, so it was unknown when they were sent; the window "
                    f"{window} (left, right) must cover how far output rows reach and depend "
                    "on input"
                )
        return Chunk(sent, chunk.end, data[i:])


def _is_column(value: Any) -> bool:
    """A column of values, not rows: a plain (unstructured) array or sequence."""
    if isinstance(value, Chunk):
        return False
    if isinstance(value, np.ndarray):
        return value.dtype.names is None
    return not isinstance(value, Mapping)


def runner_for(plugin: Plugin, report: ChunkReport | None = None) -> PluginRunner:
    """The runner of ``plugin``'s kind (its class's ``_runner``, default ``PluginRunner``)."""
    cls = type(plugin)._runner or PluginRunner
    return cls(plugin, report)
