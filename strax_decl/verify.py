"""Verify a stored data set: recompute it from its stored inputs and compare, field by field.

``verify`` (``ctx.verify``, ``strax-decl verify``) takes the complete data set of a data type
stored under the context's lineage, recomputes it in memory from its *stored* inputs (with
the plugin's current code; nothing is saved or claimed) and compares it with what is stored,
chunk by chunk and field by field. It does so twice: with the inputs in their stored chunks,
and (``rechunk=True``) with the inputs cut at other times drawn from ``seed``. It reports,
naming plugin, run, the stored chunk ``[t0, t1)`` and the field:

- ``corrupted``: DataCorrupted while loading the stored data set or one of its inputs (the
  file at fault in ``where``);
- ``code_changed``: rows (or chunk boundaries) that differ from the stored ones with the stored
  chunking, while the plugin's code hash differs from the one recorded with the data: an
  *unversioned code change* (the code changed, its version did not, so the lineage did not);
- ``mismatch``: the same, with the recorded code hash: a nondeterministic plugin, code it
  calls that the code hash cannot see (module-level helpers, imports), or damage no checksum
  caught;
- ``chunk_dependent``: the rows recomputed with the other chunking of the inputs differ from
  those recomputed with the stored chunking (or computing raised): the plugin's result
  depends on where its inputs' chunks begin and end;
- ``failed``: recomputing with the stored chunking raised.

Sampling: ``sample`` stored chunks are compared (the first, the last and seeded random others;
None: all). The data type is recomputed *whole*, in memory, however small the sample: which
rows and chunk boundaries an overlap-window, loop or down-chunking plugin produces for one
stored chunk depends on every step before it, so recomputing exactly one stored chunk needs the
run's history anyway, and a whole recompute compares chunk boundaries exactly. The sample
bounds what is compared and kept of the stored target; its inputs are loaded (and verified)
whole. Inputs that are not stored are computed in memory from their nearest stored ancestors
(said in the notes).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from strax_decl.chunk import Chunk
from strax_decl.lineage import Lineages
from strax_decl.plugin import Options
from strax_decl.recompute import (
    InputCorrupted,
    boundaries,
    compare_rows,
    compute_inputs,
    cut_at,
    describe_boundaries,
    load_stored,
    random_times,
    rows_in,
    rows_of,
    run_plugin,
    span_of,
)
from strax_decl.registry import Registry
from strax_decl.resolver import Plan, StaleVersionWarning, resolve
from strax_storage import DataCorrupted, DataKey, DataNotFound, Store

__all__ = ["Problem", "ProblemKind", "VerifyReport", "pick_chunks", "verify"]

ProblemKind = Literal["corrupted", "code_changed", "mismatch", "chunk_dependent", "failed"]

LABELS: dict[str, str] = {
    "corrupted": "corrupted",
    "code_changed": "unversioned code change",
    "mismatch": "differs from the stored rows",
    "chunk_dependent": "chunk-dependent",
    "failed": "recomputing failed",
}

SHOWN = 20
"""Problems ``str(report)`` lists (all are in ``report.problems``)."""


@dataclass(frozen=True)
class Problem:
    """One finding: what (``kind``), whose (``plugin``, ``run_id``, ``data_type``), where (the
    stored chunk number ``chunk`` and its ``interval`` ``[t0, t1)``, the ``field``, the file
    ``where`` for corruption) and the details."""

    kind: ProblemKind
    plugin: str
    run_id: str
    data_type: str
    detail: str
    chunk: int | None = None
    interval: tuple[int, int] | None = None
    field: str | None = None
    where: str | None = None

    def __str__(self) -> str:
        parts = [f"plugin {self.plugin}", f"run {self.run_id!r}", self.data_type]
        if self.chunk is not None or self.interval is not None:
            number = f" {self.chunk}" if self.chunk is not None else ""
            span = f" [{self.interval[0]}, {self.interval[1]})" if self.interval else ""
            parts.append(f"chunk{number}{span}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        return f"{LABELS[self.kind]}: {', '.join(parts)}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["label"] = LABELS[self.kind]
        out["interval"] = list(self.interval) if self.interval else None
        return out


@dataclass
class VerifyReport:
    """What ``verify`` compared and found; ``ok`` when nothing is wrong, ``str()`` to read."""

    run_id: str
    data_type: str
    plugin: str
    key: str
    code_hash: str
    store: str = ""
    stored_code_hash: str | None = None
    n_chunks: int = 0
    checked: list[int] = field(default_factory=list)
    """Indices of the stored chunks compared."""
    chunkings: list[str] = field(default_factory=list)
    """How the data type was recomputed: the chunkings of its inputs, in words."""
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def kinds(self) -> set[str]:
        """The kinds of problem found."""
        return {p.kind for p in self.problems}

    def summary(self) -> str:
        """One line: the data set and the verdict."""
        what = f"{self.data_type} of run {self.run_id!r} (plugin {self.plugin})"
        if self.ok:
            return f"{what}: OK, {len(self.checked)} of {self.n_chunks} stored chunks agree"
        found = ", ".join(sorted({LABELS[p.kind] for p in self.problems}))
        n = len(self.problems)
        return f"{what}: {n} problem{'s' if n != 1 else ''} ({found})"

    def __str__(self) -> str:
        lines = [f"verify {self.summary()}", f"  data set {self.key} in {self.store or '-'}"]
        lines.append(f"  compared {len(self.checked)} of {self.n_chunks} stored chunks")
        lines += [f"  recomputed {c}" for c in self.chunkings]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  - {p}" for p in self.problems[:SHOWN]]
        if len(self.problems) > SHOWN:
            lines.append(f"  ... and {len(self.problems) - SHOWN} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        out["problems"] = [p.to_dict() for p in self.problems]
        return out


def pick_chunks(n_chunks: int, sample: int | None, seed: int) -> list[int]:
    """Indices of ``sample`` of ``n_chunks`` chunks: the first, the last and seeded random
    others (all when ``sample`` is None or not smaller)."""
    if sample is None or sample >= n_chunks:
        return list(range(n_chunks))
    picked = {0, n_chunks - 1} if sample >= 2 else {0}
    rest = np.arange(1, n_chunks - 1)
    rng = np.random.default_rng(seed)
    picked.update(int(i) for i in rng.choice(rest, size=sample - len(picked), replace=False))
    return sorted(picked)


def _resolve(
    registry: Registry,
    lineages: Lineages,
    stores: Sequence[Store],
    run_id: str,
    targets: Sequence[str],
) -> Plan:
    """The resolver's plan for ``targets``, saving nothing; a changed code hash is reported
    by verify itself, not warned about."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StaleVersionWarning)
        return resolve(registry, lineages, stores, run_id, targets, saving=False)


def _chunk_interval(store: Store | None, key: DataKey, i: int) -> tuple[int, int] | None:
    """``[start, end)`` of stored chunk ``i`` from the chunk index (None if unreadable)."""
    if store is None:
        return None
    try:
        index = store.zarr_group(key)["_index"]
        starts, ends = index["start"], index["end"]  # type: ignore[index]
        if i < starts.shape[0]:  # type: ignore[union-attr]
            return int(starts[i]), int(ends[i])  # type: ignore[index, arg-type]
    except Exception:  # the index itself may be what is damaged
        return None
    return None


def _corrupted(registry: Registry, run_id: str, e: InputCorrupted) -> Problem:
    step = e.step
    return Problem(
        "corrupted",
        registry.provider(step.data_type).name,
        run_id,
        step.data_type,
        str(e.error),
        chunk=e.chunk,
        interval=_chunk_interval(step.store, step.key, e.chunk),
        where=e.error.where,
    )


def _other_chunking(
    inputs: Mapping[str, list[Chunk]], dtypes: Mapping[str, np.dtype], seed: int
) -> tuple[dict[str, list[Chunk]], str] | None:
    """The inputs cut at random times (about as many cuts as they have chunks, drawn from
    ``seed``) into a chunking other than their own, and its description; None if no other
    chunking keeping the laws was found."""
    span = span_of(inputs)
    if span is None:
        return None
    own = boundaries(inputs)
    rng = np.random.default_rng(seed)
    for _ in range(8):
        alt = cut_at(inputs, random_times(span, max(1, len(own)), rng), dtypes)
        if boundaries(alt) != own:
            described = describe_boundaries(alt)
            return alt, f"with the inputs cut at random times (seed {seed}): {described}"
    return None


def verify(
    registry: Registry,
    lineages: Lineages,
    options: Mapping[str, Options],
    stores: Sequence[Store],
    run_id: str,
    data_type: str,
    *,
    sample: int | None = None,
    rechunk: bool = True,
    seed: int = 0,
) -> VerifyReport:
    """Recompute the stored ``data_type`` of ``run_id`` and compare (see the module).

    DataNotFound if no complete data set of ``data_type`` is stored under the lineage;
    KeyError for an unknown data type; ValueError for a ``sample`` below 1.
    """
    if sample is not None:
        if isinstance(sample, bool) or not isinstance(sample, numbers.Integral) or sample < 1:
            raise ValueError(f"sample must be a positive integer or None, got {sample!r}")
        sample = int(sample)
    plugin = registry.provider(data_type)
    key = DataKey(run_id, data_type, lineages.hash(data_type))
    report = VerifyReport(run_id, data_type, plugin.name, str(key), plugin.code_hash)

    def problem(kind: ProblemKind, detail: str, **where: Any) -> None:
        report.problems.append(Problem(kind, plugin.name, run_id, data_type, detail, **where))

    try:
        step = _resolve(registry, lineages, stores, run_id, [data_type]).steps[data_type]
    except DataCorrupted as e:
        problem("corrupted", str(e), where=e.where)
        return report
    if step.action != "load" or step.store is None or step.info is None:
        raise DataNotFound(
            f"cannot verify {data_type!r} of run {run_id!r}: no complete data set under the "
            f"context's lineage ({key}): {step.reason}"
        )
    info = step.info
    report.store = step.store.url
    report.n_chunks = info.n_chunks
    recorded = info.metadata.get("code_hash") if isinstance(info.metadata, dict) else None
    report.stored_code_hash = recorded if isinstance(recorded, str) else None
    truncated = False
    if report.stored_code_hash is not None and report.stored_code_hash != plugin.code_hash:
        # the code changed under the same version: a sample could miss the chunks it changed,
        # and the data type is recomputed whole anyway, so every chunk is compared
        sample = None
    try:
        bounds, stored = load_stored(step, pick_chunks(info.n_chunks, sample, seed))
    except InputCorrupted as e:
        report.problems.append(_corrupted(registry, run_id, e))
        bounds, stored, truncated = e.bounds, e.kept, True

    inputs: dict[str, list[Chunk]] = {}
    if not plugin.is_source:
        try:
            plan = _resolve(registry, lineages, stores, run_id, list(plugin.inputs))
            report.notes += _input_notes(registry, plan)
            inputs = compute_inputs(plan, registry, options, run_id)
        except DataCorrupted as e:  # a damaged zarr.json of an input
            owner = e.key.data_type if e.key is not None else data_type
            report.problems.append(
                Problem(
                    "corrupted",
                    registry.provider(owner).name,
                    run_id,
                    owner,
                    str(e),
                    where=e.where,
                )
            )
            return report
        except InputCorrupted as e:
            report.problems.append(_corrupted(registry, run_id, e))
            return report
    inputs = {d: inputs[d] for d in plugin.inputs}

    dtype = registry.dtype(data_type)
    what = (
        f"with the inputs as stored ({describe_boundaries(inputs)})"
        if inputs
        else "from the source itself (no inputs)"
    )
    report.chunkings.append(what)
    try:
        again = run_plugin(plugin, registry, options, run_id, inputs)[data_type]
    except Exception as e:
        problem("failed", f"with the inputs as stored it raised {type(e).__name__}: {e}")
        return report
    report.checked = sorted(stored)
    changed = report.stored_code_hash is not None and report.stored_code_hash != plugin.code_hash
    kind: ProblemKind = "code_changed" if changed else "mismatch"
    again_rows = rows_of(again, dtype)
    n_before = len(report.problems)
    _compare_bounds(problem, kind, bounds, [(c.start, c.end) for c in again], truncated)
    for i in sorted(stored):
        chunk = stored[i]
        diff = compare_rows(chunk.data, rows_in(again_rows, chunk.start, chunk.end))
        if diff is not None:
            detail = diff.describe("stored", "recomputed")
            problem(kind, detail, chunk=i, interval=(chunk.start, chunk.end), field=diff.field)
    if changed:
        agree = len(report.problems) == n_before
        report.notes.append(
            f"plugin {plugin.name} has code hash {plugin.code_hash}, the stored data was made "
            f"by code {report.stored_code_hash}, both as version {plugin.version!r}"
            + (
                "; the rows of every stored chunk agree (a change that does not alter them)"
                if agree
                else ": bump the version (or use version = 'auto')"
            )
        )

    if not rechunk:
        return report
    if plugin.is_source:
        report.notes.append("a source has no inputs to chunk otherwise")
        return report
    other = _other_chunking(inputs, {d: registry.dtype(d) for d in inputs}, seed)
    if other is None:
        report.notes.append("the inputs cannot be chunked otherwise (no safe cut time)")
        return report
    alt_inputs, described = other
    report.chunkings.append(described)
    try:
        alt = run_plugin(plugin, registry, options, run_id, alt_inputs)[data_type]
    except Exception as e:
        problem(
            "chunk_dependent",
            f"{described} it raised {type(e).__name__}: {e}",
        )
        return report
    alt_rows = rows_of(alt, dtype)
    for i in sorted(stored):
        t0, t1 = bounds[i]
        diff = compare_rows(rows_in(again_rows, t0, t1), rows_in(alt_rows, t0, t1))
        if diff is not None:
            detail = diff.describe("with the stored chunking", "with another")
            problem("chunk_dependent", detail, chunk=i, interval=(t0, t1), field=diff.field)
    return report


def _compare_bounds(
    problem: Any,
    kind: ProblemKind,
    stored: list[tuple[int, int]],
    again: list[tuple[int, int]],
    truncated: bool,
) -> None:
    """Report the first stored chunk whose boundaries the recomputation does not reproduce."""
    n = min(len(stored), len(again))
    first = next((i for i in range(n) if stored[i] != again[i]), None)
    if first is not None:
        a, b = again[first]
        problem(
            kind,
            f"chunk boundaries differ: recomputed [{a}, {b})",
            chunk=first,
            interval=stored[first],
            field="chunk boundaries",
        )
    elif len(again) != len(stored) and not (truncated and len(again) > len(stored)):
        problem(
            kind,
            f"{len(again)} chunks recomputed, {len(stored)} stored",
            chunk=n,
            interval=stored[n] if n < len(stored) else again[n],
            field="chunk boundaries",
        )


def _input_notes(registry: Registry, plan: Plan) -> list[str]:
    """What the plan of the inputs says: what is computed in memory (not stored), and stored
    inputs made by code other than today's (their own verify would tell more)."""
    notes = []
    computed = [d for d, s in plan.steps.items() if s.action == "compute" and s.needed]
    if computed:
        notes.append(f"not stored, computed in memory: {', '.join(computed)}")
    for d, s in plan.steps.items():
        recorded = s.info.metadata.get("code_hash") if s.info is not None else None
        provider = registry.provider(d)
        if s.action == "load" and recorded and recorded != provider.code_hash:
            notes.append(
                f"input {d!r} was made by other code of plugin {provider.name} "
                f"(code hash {recorded}, now {provider.code_hash}); verify it too"
            )
    return notes
