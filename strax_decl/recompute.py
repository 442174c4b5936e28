"""Recomputing in memory, for checks: run a plugin on given input chunks, chunk its inputs
otherwise, and compare two results row by row and field by field.

Used by ``strax_decl.verify`` (``ctx.verify``, ``strax-decl verify``) and by
``strax_decl.testing.check_chunking_independence``. Nothing here saves, claims or writes:
stored inputs are loaded, the rest is computed with the plugins' own runners
(``runner.runner_for``) in the caller's thread, and every result is held in memory.

Other chunkings keep the chunk laws: every input is joined over the inputs' common span and
cut at the *same* times, each moved back to the latest time that cuts no row of any input
(``common_split_point``), so the pieces touch, hold their rows inside, and inputs of one
kind keep the same rows per piece.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from strax_decl.chunk import Chunk, common_split_point, concatenate, split
from strax_decl.errors import StraxDeclError
from strax_decl.lineage import Lineages
from strax_decl.plugin import Options, Plugin
from strax_decl.registry import Registry
from strax_decl.resolver import Plan, Step, resolve
from strax_decl.runner import runner_for
from strax_storage import DataCorrupted

__all__ = [
    "Difference",
    "InputCorrupted",
    "boundaries",
    "check_independence",
    "compare_rows",
    "compute_inputs",
    "cut_at",
    "describe_boundaries",
    "fraction_times",
    "load_stored",
    "random_times",
    "rows_in",
    "rows_of",
    "run_plugin",
    "span_of",
]

ChunkLists = dict[str, list[Chunk]]


class InputCorrupted(StraxDeclError):
    """Loading the data set of ``step`` (a plan's load step) raised DataCorrupted (``error``)
    while reading its stored chunk number ``chunk``; ``bounds`` and ``kept`` are what
    ``load_stored`` had read before."""

    def __init__(
        self,
        step: Step,
        chunk: int,
        error: DataCorrupted,
        bounds: list[tuple[int, int]],
        kept: dict[int, Chunk],
    ) -> None:
        super().__init__(str(error))
        self.step = step
        self.data_type = step.data_type
        self.chunk = chunk
        self.error = error
        self.bounds = bounds
        self.kept = kept


def run_plugin(
    plugin_cls: type[Plugin],
    registry: Registry,
    options: Mapping[str, Options],
    run_id: str,
    inputs: Mapping[str, Sequence[Chunk]],
) -> ChunkLists:
    """Every output chunk of a fresh instance of ``plugin_cls`` fed ``inputs`` (by data type),
    in order, per output. Parallel plugins compute serially here (same rows, same chunks)."""
    plugin = plugin_cls(options[plugin_cls.name], run_id, registry.input_kinds(plugin_cls))
    plugin.input_dtypes = {d: registry.dtype(d) for d in plugin_cls.inputs}
    if registry.resolved:  # as the engine's graph does: the schemas resolved at build
        vars(plugin)["outputs"] = registry.outputs_of(plugin_cls)
    streams: dict[str, Iterator[Chunk]] = {d: iter(inputs.get(d, ())) for d in plugin_cls.inputs}
    out: ChunkLists = {o: [] for o in plugin_cls.outputs}
    for item in runner_for(plugin).iterate(streams):  # no submit: never futures
        for name, chunk in cast("dict[str, Chunk]", item).items():
            out[name].append(chunk)
    return out


def load_stored(
    step: Step, keep: Iterable[int] | None = None
) -> tuple[list[tuple[int, int]], dict[int, Chunk]]:
    """The interval of every stored chunk of a plan's load step, and the chunks themselves
    by index (only those in ``keep``, if given: the others are still read and verified).
    DataCorrupted becomes InputCorrupted, which keeps what was read before."""
    wanted = None if keep is None else set(keep)
    bounds: list[tuple[int, int]] = []
    kept: dict[int, Chunk] = {}
    assert step.store is not None, "a load step names its store"
    try:
        for chunk in step.store.load(step.key, info=step.info):
            if wanted is None or len(bounds) in wanted:
                kept[len(bounds)] = chunk
            bounds.append((chunk.start, chunk.end))
    except DataCorrupted as e:
        raise InputCorrupted(step, len(bounds), e, bounds, kept) from e
    return bounds, kept


def compute_inputs(
    plan: Plan, registry: Registry, options: Mapping[str, Options], run_id: str
) -> ChunkLists:
    """The chunks of every data type of ``plan``: loaded where it loads (the stored chunks),
    computed in memory where it computes (each plugin once, in dependency order)."""
    chunks: ChunkLists = {}
    for data_type, step in plan.steps.items():
        if data_type in chunks:
            continue
        if step.action == "load":
            bounds, kept = load_stored(step)
            chunks[data_type] = [kept[i] for i in range(len(bounds))]
            continue
        plugin = registry.plugins[step.plugin]
        out = run_plugin(plugin, registry, options, run_id, {d: chunks[d] for d in plugin.inputs})
        for name, produced in out.items():
            chunks.setdefault(name, produced)
    return chunks


def rows_of(chunks: Sequence[Chunk], dtype: np.dtype) -> np.ndarray:
    """The rows of ``chunks`` as one array (sorted by time, as the chunk laws make them)."""
    parts = [c.data for c in chunks if len(c)]
    if not parts:
        return np.zeros(0, dtype=dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def rows_in(rows: np.ndarray, t0: int, t1: int) -> np.ndarray:
    """The rows (sorted by time) that start in ``[t0, t1)``."""
    if not len(rows):
        return rows
    lo, hi = np.searchsorted(rows["time"], [t0, t1], side="left")
    return rows[int(lo) : int(hi)]


def span_of(inputs: Mapping[str, Sequence[Chunk]]) -> tuple[int, int] | None:
    """``[start, end)`` covered by all inputs together (None: no input has a chunk)."""
    spans = [(c[0].start, c[-1].end) for c in inputs.values() if c]
    if not spans:
        return None
    return min(s for s, _ in spans), max(e for _, e in spans)


def cut_at(
    inputs: Mapping[str, Sequence[Chunk]], times: Iterable[int], dtypes: Mapping[str, np.dtype]
) -> ChunkLists:
    """The inputs joined over their common span and cut at ``times`` (each moved back to the
    latest time cutting no row of any input; times outside the span or moved onto an earlier
    cut are dropped). No times: every input as one chunk."""
    span = span_of(inputs)
    if span is None:
        return {d: list(c) for d, c in inputs.items()}
    start, end = span
    rest = {
        d: Chunk(start, end, concatenate(list(c)).data if c else np.zeros(0, dtype=dtypes[d]))
        for d, c in inputs.items()
    }
    out: ChunkLists = {d: [] for d in inputs}
    for t in sorted(set(times)):
        here = next(iter(rest.values())).start
        if not here < t < end:
            continue
        t = common_split_point(list(rest.values()), t)
        if t <= here:
            continue
        for d, chunk in rest.items():
            head, rest[d] = split(chunk, t)
            out[d].append(head)
    for d, chunk in rest.items():
        out[d].append(chunk)
    return out


def boundaries(inputs: Mapping[str, Sequence[Chunk]]) -> list[tuple[int, int]]:
    """The chunk intervals of the first input that has chunks (all are cut alike)."""
    for chunks in inputs.values():
        if chunks:
            return [(c.start, c.end) for c in chunks]
    return []


def describe_boundaries(inputs: Mapping[str, Sequence[Chunk]], limit: int = 6) -> str:
    """``"3 chunks, cut at 1200, 2400"`` (at most ``limit`` cut times shown)."""
    bounds = boundaries(inputs)
    cuts = [b for _, b in bounds[:-1]]
    shown = ", ".join(map(str, cuts[:limit])) + (", ..." if len(cuts) > limit else "")
    return f"{len(bounds)} chunk{'s' if len(bounds) != 1 else ''}" + (
        f", cut at {shown}" if cuts else ""
    )


def random_times(span: tuple[int, int], n: int, rng: np.random.Generator) -> list[int]:
    """``n`` distinct random times strictly inside ``span`` (fewer if it is too short)."""
    start, end = span
    if end - start < 2 or n < 1:
        return []
    n = min(n, end - start - 1)
    return sorted({int(t) for t in rng.integers(start + 1, end, size=n)})


def fraction_times(span: tuple[int, int], fractions: Iterable[float]) -> list[int]:
    """Cut times at ``fractions`` (each in [0, 1]) of ``span``."""
    start, end = span
    out = []
    for f in fractions:
        if not 0.0 <= float(f) <= 1.0:
            raise ValueError(f"a cut point is a fraction of the inputs' span in [0, 1], got {f}")
        out.append(start + int(float(f) * (end - start)))
    return out


@dataclass(frozen=True)
class Difference:
    """How two sets of rows differ: the first ``field`` (or ``"rows"``: their number,
    ``"dtype"``: their fields) at ``row``, its two values, and every field that differs."""

    field: str
    row: int | None
    expected: str
    got: str
    fields: tuple[str, ...] = ()

    def describe(self, expected: str = "expected", got: str = "got") -> str:
        at = f"row {self.row}: " if self.row is not None else ""
        others = [f for f in self.fields if f != self.field]
        also = f" (also {', '.join(others)})" if others else ""
        return f"{at}{expected} {self.expected}, {got} {self.got}{also}"


def _value(rows: np.ndarray, name: str, i: int) -> str:
    if i >= len(rows):
        return "no row"
    text = np.array2string(np.asarray(rows[name][i]), threshold=8, separator=",")
    return text if len(text) <= 60 else text[:57] + "..."


def _first_mismatch(a: np.ndarray, b: np.ndarray) -> int | None:
    """Index of the first row where field values ``a`` and ``b`` (same length) differ."""
    neq = a != b
    if np.issubdtype(a.dtype, np.inexact):
        neq &= ~(np.isnan(a) & np.isnan(b))
    if neq.ndim > 1:  # sub-array fields: a row differs if any element does
        neq = neq.reshape(neq.shape[0], int(np.prod(neq.shape[1:]))).any(axis=1)
    bad = np.flatnonzero(neq)
    return int(bad[0]) if len(bad) else None


def compare_rows(expected: np.ndarray, got: np.ndarray) -> Difference | None:
    """None if ``got`` holds exactly the rows ``expected`` does (NaN equals NaN), else the
    first difference: the field whose mismatch comes first (in field order at equal rows)."""
    names = expected.dtype.names or ()
    if (got.dtype.names or ()) != names:
        return Difference("dtype", None, str(expected.dtype), str(got.dtype))
    n = min(len(expected), len(got))
    first: dict[str, int] = {}
    for name in names:
        i = _first_mismatch(expected[name][:n], got[name][:n])
        if i is not None:
            first[name] = i
    if first:
        field = min(first, key=lambda f: first[f])
        i = first[field]
        return Difference(field, i, _value(expected, field, i), _value(got, field, i), tuple(first))
    if len(expected) != len(got):
        return Difference("rows", n, f"{len(expected)} rows", f"{len(got)} rows")
    return None


def check_independence(
    registry: Registry,
    lineages: Lineages,
    options: Mapping[str, Options],
    target: str,
    run_id: str,
    chunkings: Iterable[Sequence[float]] | None,
    seed: int,
) -> dict[str, np.ndarray]:
    """The work of ``strax_decl.testing.check_chunking_independence`` (documented there)."""
    plugin = registry.provider(target)
    if plugin.is_source:
        raise ValueError(f"{target!r} comes from the source {plugin.name}: it has no inputs")
    plan = resolve(registry, lineages, [], run_id, list(plugin.inputs))
    computed = compute_inputs(plan, registry, options, run_id)
    inputs = {d: computed[d] for d in plugin.inputs}
    dtypes = {d: registry.dtype(d) for d in inputs}
    reference = run_plugin(plugin, registry, options, run_id, cut_at(inputs, [], dtypes))
    expected = {o: rows_of(c, registry.dtype(o)) for o, c in reference.items()}
    span = span_of(inputs)
    if span is None:
        return expected
    cases: list[tuple[str, Mapping[str, Sequence[Chunk]]]] = [("as produced", inputs)]
    if chunkings is None:
        rng = np.random.default_rng(seed)
        times = [random_times(span, n, rng) for n in (1, 3, 10)]
        cases += [(f"cut at random times (seed {seed})", cut_at(inputs, t, dtypes)) for t in times]
    else:
        for cuts in chunkings:
            cut = cut_at(inputs, fraction_times(span, cuts), dtypes)
            cases.append((f"cut at fractions {list(cuts)}", cut))
    where = f"plugin {plugin.name}, run {run_id!r}"
    for label, chunked in cases:
        label = f"with the inputs {label} ({describe_boundaries(chunked)})"
        try:
            out = run_plugin(plugin, registry, options, run_id, chunked)
        except Exception as e:
            raise AssertionError(f"{where}: {label} it raised {type(e).__name__}: {e}") from e
        for name, chunks in out.items():
            spans = [(c[0].start, c[-1].end) if c else None for c in (reference[name], chunks)]
            if spans[0] != spans[1]:
                raise AssertionError(
                    f"{where}, output {name!r}: {label} its chunks span {spans[1]}, with "
                    f"single-chunk inputs {spans[0]}"
                )
            for c in chunks:
                diff = compare_rows(rows_in(expected[name], c.start, c.end), c.data)
                if diff is not None:
                    raise AssertionError(
                        f"{where}, output {name!r}: {label}, chunk [{c.start}, {c.end}) "
                        f"differs from the single-chunk result in field {diff.field!r}: "
                        + diff.describe("single chunk", "this chunking")
                    )
    return expected
