"""Superruns: several runs, or pieces of runs, treated as one (strax's ``define_run``).

A superrun ``_sr1`` is a run document with a ``sub_run_spec`` (``{subrun: "all" | [(t0, t1),
...]}``, in time order). Getting data of a superrun:

- a **per-run** data type (the default) is got for each subrun (only inside its intervals:
  a time-range load) and the pieces are concatenated in order; ``get_array`` adds a
  ``run_id`` field naming each row's subrun, as for several runs. What is saved is saved per
  subrun, as for any run.
- a **superrun-level** data type (its plugin declares ``allow_superrun = True``) is computed
  once, by one plugin instance, on the joined stream of its per-run inputs (the subruns'
  chunks in order, empty chunks over the gaps between them), and stored under the superrun
  only when listed in ``save=`` (storing superrun data is explicit). Its lineage includes the
  joined inputs', which name every subrun, its intervals and the lineage hash of the input
  in that subrun: changing the definition, or what a subrun's input is made of, changes it.

This runs in an inner context (a copy of this one in which each per-run input of the
superrun-level plugins is provided by a ``SuperrunJoin_<data type>`` source reading the
subruns from the outer context); plans of superruns come from ``plan``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import create_model

from strax_decl.chunk import Chunk
from strax_decl.context.many import leave_out
from strax_decl.plugin import Options, Outputs, Plugin, SaveWhen, option, output
from strax_decl.progress import ProgressBar, enabled, run_label
from strax_decl.registry import Registry
from strax_decl.resolver import Plan, StepLists
from strax_decl.rows import columns_of_each_run, tag_runs
from strax_decl.run_meta import RunDoc, SubRunSpec, is_superrun, normalize_spec
from strax_storage import DataKey, DataNotFound

if TYPE_CHECKING:  # pragma: no cover - typing only
    from strax_decl.context.context import Context

__all__ = [
    "SuperrunPlan",
    "get_array",
    "get_runs",
    "inner_context",
    "iter_chunks",
    "make",
    "plan",
    "sources_of",
    "spec_of",
    "spec_of_data",
    "superrun_key",
    "superrun_level",
]

Interval = tuple[int, int] | None


def spec_of_data(data: Sequence[str] | Mapping[str, Any]) -> SubRunSpec:
    return normalize_spec(data)


def superrun_level(registry: Registry, data_type: str) -> bool:
    return bool(getattr(registry.provider(data_type), "allow_superrun", False))


def sources_of(registry: Registry, targets: Sequence[str]) -> list[type[Plugin]]:
    """The source plugins that ``targets`` need."""
    seen: set[str] = set()
    found: dict[str, type[Plugin]] = {}
    todo = list(targets)
    while todo:
        dt = todo.pop()
        if dt in seen:
            continue
        seen.add(dt)
        plugin = registry.provider(dt)
        if plugin.is_source:
            found[plugin.name] = plugin
        todo.extend(plugin.inputs)
    return list(found.values())


def spec_of(ctx: Context, run_id: str) -> SubRunSpec:
    """The ``sub_run_spec`` of superrun ``run_id``; DataNotFound if it is not defined."""
    doc = ctx._doc(run_id)
    if doc is None or doc.get("sub_run_spec") is None:
        raise DataNotFound(
            f"superrun {run_id!r} is not defined in any store: define it first with "
            f"ctx.define_run({run_id!r}, [run ids] or {{run id: [(t0, t1), ...]}})"
        )
    spec = RunDoc(**doc).sub_run_spec
    assert spec is not None
    return spec


def pieces(spec: SubRunSpec, time_range: Interval) -> list[tuple[str, Interval]]:
    """``(subrun, interval or None for all of it)`` in order, limited to ``time_range``."""
    out: list[tuple[str, Interval]] = []
    for run, what in spec.items():
        intervals: list[Interval] = [None] if what == "all" else list(what)  # type: ignore[arg-type]
        for iv in intervals:
            if time_range is not None:
                a, b = iv if iv is not None else time_range
                a, b = max(a, time_range[0]), min(b, time_range[1])
                if b <= a:
                    continue
                iv = (a, b)
            out.append((run, iv))
    return out


def _split(registry: Registry, targets: Sequence[str]) -> bool:
    """True if ``targets`` are superrun-level, False if per-run; mixed ones are refused."""
    levels = {superrun_level(registry, t) for t in targets}
    if len(levels) > 1:
        raise ValueError(
            f"targets {list(targets)} mix superrun-level and per-run data types; on a "
            "superrun get them separately"
        )
    return levels.pop()


# ---------------------------------------------------------------------- the inner context


def _joined_source(outer: Context, data_type: str, spec: SubRunSpec) -> type[Plugin]:
    """A source plugin providing ``data_type`` of the superrun: the subruns' chunks in
    order, from ``outer``; its one option (in the lineage) names subruns, intervals and the
    input's lineage hash in each subrun."""
    out = outer.registry.output_spec(data_type)
    dtype = out.dtype
    described = [
        [
            run,
            what if what == "all" else [list(iv) for iv in what],
            outer.key_for(run, data_type).lineage_hash,
        ]
        for run, what in spec.items()
    ]
    name = f"joined_{data_type}"
    outputs = create_model(  # type: ignore[call-overload]
        "Outputs",
        __base__=Outputs,
        **{data_type: (out.schema, output(kind=out.kind, save=SaveWhen.NEVER))},
    )
    options = create_model(  # type: ignore[call-overload]
        "Options",
        __base__=Options,
        **{name: (list, option(described, description="the subruns joined"))},
    )
    parts = pieces(spec, None)
    spans = time_spans(outer, parts)

    def run_end(self: Plugin, run_id: str) -> int | None:
        """The end of the last piece: the progress bar's end of the joined stream."""
        return spans[-1][1] if spans else None

    def source(self: Plugin, run_id: str) -> Iterator[Chunk]:
        prev_end: int | None = None
        for sub, iv in parts:
            chunks = outer.iter_chunks(sub, data_type, time_range=iv, progress=False)
            try:
                for c in chunks:
                    if prev_end is not None and c.start != prev_end:
                        if c.start < prev_end:
                            raise ValueError(
                                f"superrun {run_id!r}: {data_type} of subrun {sub!r} starts at "
                                f"{c.start}, before the previous piece ended ({prev_end}): "
                                "subruns must not overlap in time"
                            )
                        yield Chunk(prev_end, c.start, np.zeros(0, dtype))
                    yield c
                    prev_end = c.end
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()

    return type(
        f"SuperrunJoin_{data_type}",
        (Plugin,),
        {
            "version": "1",
            "Outputs": outputs,
            "Options": options,
            "source": source,
            "run_end": run_end,
            "__module__": __name__,
            "__doc__": f"{data_type} of the subruns of a superrun, joined in order.",
        },
    )


def _explicit(plugin: type[Plugin]) -> type[Plugin]:
    """``plugin`` whose outputs are saved only when listed in ``save=`` (same name, version,
    options and so lineage)."""
    attrs = {"version": plugin.version, "__module__": plugin.__module__}
    attrs["__qualname__"] = plugin.__qualname__
    sub: type[Plugin] = type(plugin.__name__, (plugin,), attrs)
    sub.outputs = {
        k: dataclasses.replace(v, save=SaveWhen(min(v.save, SaveWhen.EXPLICIT)))
        for k, v in plugin.outputs.items()
    }
    return sub


def inner_context(outer: Context, run_id: str, targets: Sequence[str]) -> Context:
    """The context computing superrun-level ``targets`` of superrun ``run_id``."""
    spec = spec_of(outer, run_id)
    registry = outer.registry
    level: dict[str, type[Plugin]] = {}
    boundary: list[str] = []
    todo = list(targets)
    while todo:
        dt = todo.pop()
        if superrun_level(registry, dt):
            plugin = registry.provider(dt)
            if plugin.name not in level:
                level[plugin.name] = plugin
                todo.extend(plugin.inputs)
        elif dt not in boundary:
            boundary.append(dt)
    plugins = [_explicit(p) for p in level.values()]
    plugins += [_joined_source(outer, dt, spec) for dt in sorted(boundary)]
    names = {p.name for p in plugins}
    options = {o for p in plugins for o in p.option_specs}
    config = {
        k: v
        for k, v in outer.config.items()
        if k in options or k in names or k.split(".", 1)[0] in names
    }
    inner = type(outer)(storage=outer.stores, plugins=plugins, config=config, **outer.settings())
    inner._inside_superrun = True  # type: ignore[attr-defined]
    return inner


def superrun_key(outer: Context, run_id: str, data_type: str) -> DataKey:
    """Where superrun-level ``data_type`` of superrun ``run_id`` is stored."""
    return inner_context(outer, run_id, [data_type]).key_for(run_id, data_type)


# ---------------------------------------------------------------------- getting data


def time_spans(outer: Context, parts: list[tuple[str, Interval]]) -> list[tuple[int, int]] | None:
    """The ``(t0, t1)`` of every piece (a whole subrun: its run document's start and end);
    None if one is not known."""
    spans = []
    for sub, iv in parts:
        if iv is None:
            doc = outer._doc(sub) or {}
            start, end = doc.get("start"), doc.get("end")
            if not (isinstance(start, int) and isinstance(end, int)):
                return None
            iv = (start, end)
        spans.append(iv)
    return spans


def _bar(
    outer: Context,
    run_id: str,
    targets: list[str],
    parts: list[tuple[str, Interval]],
    progress: bool | None,
) -> tuple[ProgressBar | None, list[tuple[int, int]] | None]:
    """One bar for the whole superrun (its subruns' requests show none), over the time of
    its pieces, and those pieces' spans."""
    if not enabled(progress):
        return None, None
    spans = time_spans(outer, parts)
    return ProgressBar(run_label(run_id, targets), pieces=spans), spans


def iter_chunks(outer: Context, run_id: str, targets: list[str], **kwargs: Any) -> Iterator[Chunk]:
    """The chunks of ``targets`` of superrun ``run_id`` (see the module doc)."""
    spec = spec_of(outer, run_id)
    if _split(outer.registry, targets):
        return inner_context(outer, run_id, targets).iter_chunks(run_id, targets, **kwargs)
    time_range = kwargs.pop("time_range", None)
    parts = pieces(spec, time_range)
    bar, _ = _bar(outer, run_id, targets, parts, kwargs.pop("progress", None))
    kwargs["progress"] = False
    # errors in the request surface here, not at the first chunk
    streams = [
        (sub, iv, outer.iter_chunks(sub, targets, time_range=iv, **kwargs)) for sub, iv in parts[:1]
    ]
    return _chain(outer, targets, parts, streams, kwargs, bar)


def _chain(
    outer: Context,
    targets: list[str],
    parts: list[tuple[str, Interval]],
    first: list[tuple[str, Interval, Iterator[Chunk]]],
    kwargs: dict[str, Any],
    bar: ProgressBar | None,
) -> Iterator[Chunk]:
    error: BaseException | None = None
    try:
        for i, (sub, iv) in enumerate(parts):
            if bar is not None:
                bar.at(f"{i + 1}/{len(parts)} {sub}")
            chunks = (
                first[0][2]
                if i == 0 and first
                else outer.iter_chunks(sub, targets, time_range=iv, **kwargs)
            )
            try:
                for chunk in chunks:
                    if bar is not None:
                        bar(sub, chunk)
                    yield chunk
            except Exception as e:
                e.add_note(f"(in subrun {sub!r} of the superrun)")
                raise
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
    except BaseException as e:
        error = e
        raise
    finally:
        if bar is not None:
            bar.on_end(error)


def get_array(
    outer: Context, run_id: str, targets: list[str], tag: bool = True, **kwargs: Any
) -> np.ndarray:
    """The rows of ``targets`` of superrun ``run_id``: per-run ones tagged with ``run_id``
    (each row's subrun) unless ``tag`` is False (``get_runs`` tags them itself). Every other
    keyword (``fuzzy_for`` too) is passed to the get of each subrun."""
    spec = spec_of(outer, run_id)
    if _split(outer.registry, targets):
        inner = inner_context(outer, run_id, targets)
        return inner.get_array(run_id, targets, **kwargs)
    time_range = kwargs.pop("time_range", None)
    keep, drop = kwargs.pop("keep_columns", None), kwargs.pop("drop_columns", None)
    parts = pieces(spec, time_range)
    subruns = list(dict.fromkeys(sub for sub, _ in parts)) or list(spec)[:1]
    bar, spans = _bar(outer, run_id, targets, parts, kwargs.pop("progress", None))

    def get(sub: str, keep: list[str] | None, drop: list[str] | None) -> np.ndarray:
        ivs = [(k, iv) for k, (s, iv) in enumerate(parts) if s == sub] or [(-1, (0, 0))]
        arrays = []
        for k, iv in ivs:
            if bar is not None:
                bar.at(f"{k + 1}/{len(parts)} {sub}")
            rows = outer.get_array(
                sub, targets, time_range=iv, keep_columns=keep, drop_columns=drop,
                progress=False, **kwargs,
            )  # fmt: skip
            if bar is not None:
                bar.add(len(rows), rows.nbytes, None, spans[k][1] if spans and k >= 0 else None)
            arrays.append(rows)
        return np.concatenate(arrays) if len(arrays) > 1 else arrays[0]

    if not tag:
        return _ending(bar, lambda: np.concatenate([get(sub, keep, drop) for sub in subruns]))
    return _ending(bar, lambda: tag_runs(subruns, targets, outer._dtype(targets), get, keep, drop))


def get_runs(
    outer: Context,
    runs: list[str],
    targets: list[str],
    ignore_errors: bool = False,
    **kwargs: Any,
) -> np.ndarray:
    """``get_array`` of a list of runs among which are superruns, one after another here.

    As strax does for several runs, every row is tagged with the run id *asked for*: the rows
    of superrun ``_sr1`` get ``run_id == "_sr1"`` (not their subrun's name, which a get of
    ``_sr1`` alone gives). So ``get_array(["_sr1", "r3"], t)`` is the rows of ``_sr1``, then
    those of ``r3``. ``ignore_errors``: leave out, with a warning, the runs that fail.
    """
    keep, drop = kwargs.pop("keep_columns", None), kwargs.pop("drop_columns", None)

    def get(run: str, keep: list[str] | None, drop: list[str] | None) -> np.ndarray:
        if is_superrun(run):
            return get_array(outer, run, targets, tag=False, keep_columns=keep,
                             drop_columns=drop, **kwargs)  # fmt: skip
        return outer.get_array(run, targets, keep_columns=keep, drop_columns=drop, **kwargs)

    if not ignore_errors:
        return tag_runs(runs, targets, outer._dtype(targets), get, keep, drop)
    got: dict[str, np.ndarray] = {}
    failed: dict[str, BaseException] = {}
    for run in runs:
        try:
            got[run] = get(
                run, columns_of_each_run(keep) or None, columns_of_each_run(drop) or None
            )
        except Exception as e:
            failed[run] = e
    ok = [r for r in runs if r not in failed]
    leave_out(runs, ok, failed, stacklevel=5)

    def cached(run: str, keep: list[str] | None, drop: list[str] | None) -> np.ndarray:
        return got[run]

    return tag_runs(ok, targets, outer._dtype(targets), cached, keep, drop)


def _ending(bar: ProgressBar | None, work: Any) -> Any:
    """``work()``, the bar (if any) closed saying how it ended."""
    try:
        result = work()
    except BaseException as e:
        if bar is not None:
            bar.on_end(e)
        raise
    if bar is not None:
        bar.on_end(None)
    return result


def make(outer: Context, run_id: str, targets: list[str], **kwargs: Any) -> None:
    """Make ``targets`` of superrun ``run_id``: per-run ones for every subrun, superrun-level
    ones once, stored under the superrun (a make asks to store them: that is explicit)."""
    spec = spec_of(outer, run_id)
    if _split(outer.registry, targets):
        inner = inner_context(outer, run_id, targets)
        save = list(dict.fromkeys([*kwargs.pop("save", ()), *targets]))  # a make stores them
        inner._make_one(run_id, targets, save=save, **kwargs)
        return
    parts = pieces(spec, None)
    bar, spans = _bar(outer, run_id, targets, parts, kwargs.pop("progress", None))

    def make_all() -> None:
        for k, sub in enumerate(spec):
            if bar is not None:
                bar.at(f"{k + 1}/{len(spec)} {sub}")
            try:
                outer._make_one(sub, targets, progress=False, **kwargs)
            except Exception as e:
                e.add_note(f"(in subrun {sub!r} of superrun {run_id!r})")
                raise
            if bar is not None:
                ends = [spans[i][1] for i, (s, _) in enumerate(parts) if s == sub] if spans else []
                bar.add(0, 0, None, max(ends) if ends else None)

    _ending(bar, make_all)


@dataclasses.dataclass
class SuperrunPlan(StepLists):
    """What getting targets of a superrun would do: a plan per subrun (per-run targets) or
    the plan of the superrun-level computation (``superrun``)."""

    run_id: str
    spec: SubRunSpec
    subruns: dict[str, Plan]
    superrun: Plan | None = None

    @property
    def steps(self) -> dict[str, Any]:  # type: ignore[override]  # derived from the subplans
        """Every step: the superrun-level plan's, else ``"<subrun>/<data type>"``."""
        if self.superrun is not None:
            return dict(self.superrun.steps)
        return {f"{sub}/{d}": s for sub, p in self.subruns.items() for d, s in p.steps.items()}

    def __str__(self) -> str:
        lines = [f"superrun {self.run_id}: subruns {', '.join(self.spec)}"]
        if self.superrun is not None:
            lines += ["superrun-level:", *("  " + ln for ln in str(self.superrun).splitlines())]
        for sub, p in self.subruns.items():
            lines += [f"subrun {sub}:", *("  " + ln for ln in str(p).splitlines())]
        return "\n".join(lines)


def plan(
    outer: Context,
    run_id: str,
    targets: list[str],
    save: Sequence[str] = (),
    fuzzy_for: Sequence[str] = (),
) -> SuperrunPlan:
    """The plan of getting ``targets`` of superrun ``run_id`` (reads only). ``fuzzy_for``:
    as for a run, given to the plan of each subrun (or of the superrun-level computation),
    which shows it as a run's plan does."""
    spec = spec_of(outer, run_id)
    fuzzy = list(fuzzy_for)
    if _split(outer.registry, targets):
        inner = inner_context(outer, run_id, targets)
        return SuperrunPlan(run_id, spec, {}, inner.plan(run_id, targets, save, fuzzy_for=fuzzy))
    subplans = {sub: outer.plan(sub, targets, save, fuzzy_for=fuzzy) for sub in spec}
    return SuperrunPlan(run_id, spec, subplans)
