"""The resolver: (run, targets, config) -> an inspectable Plan. Nothing runs here.

For every data type the request needs, the plan says whether it is loaded (complete data
with the same lineage and the declared dtype is stored) or computed, and why; and for every
computed output, whether it is saved, and why (or why not).

``resolve`` only reads: one listing of the run per store it consults (``Store.list``), from
which every data type's status, the reasons and the loaded data sets' infos are decided. A
load step records the store and the info it was found with, so the stages after it (the
graph, the loaders, the progress bar) never ask storage again. Claiming what the plan saves,
waiting for other writers and recovering from corruption belong to the request's session
(``strax_decl.session``).
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from strax_decl.fuzzy import Fuzzy
from strax_decl.lineage import Lineages, diff
from strax_decl.plugin import SaveWhen
from strax_decl.registry import Registry
from strax_decl.resuming import ResumeFrom, resume_of
from strax_storage import DataCorrupted, DataKey, DataSetInfo, RunFolder, Status, Store

__all__ = [
    "Plan",
    "StaleVersionWarning",
    "Step",
    "rejection",
    "resolve",
]

Action = Literal["load", "compute"]


class StaleVersionWarning(UserWarning):
    """Stored data was made by the same plugin version, but the plugin's code has changed."""


@dataclass(frozen=True)
class Step:
    """What happens to one data type in a plan."""

    data_type: str
    kind: str
    plugin: str
    action: Action
    reason: str
    key: DataKey
    inputs: tuple[str, ...]
    save: bool = False
    save_reason: str = ""
    needed: bool = True  # False: a by-product of a multi-output plugin nobody reads
    store: Store | None = field(default=None, compare=False, repr=False)
    """For a load: the store the data set is loaded from (None for a compute)."""
    info: DataSetInfo | None = field(default=None, compare=False, repr=False)
    """For a load: the data set's info as read while resolving (the loader trusts it)."""
    resume: ResumeFrom | None = field(default=None, compare=False, repr=False)
    """For a compute: the killed writer's final prefix it continues after (``resuming``)."""
    fuzzy: tuple[str, ...] = ()
    """For a fuzzy load (``fuzzy_for``): how the loaded lineage differs from the requested."""

    def describe(self) -> str:
        what = f"{self.action} ({self.reason})"
        if self.action == "compute":
            what += f", {'save' if self.save else 'do not save'} ({self.save_reason})"
        return what


class StepLists:
    """The data types of a plan's ``steps`` by what happens to them (for any kind of plan)."""

    steps: Mapping[str, Step]

    @property
    def to_load(self) -> list[str]:
        return [d for d, s in self.steps.items() if s.action == "load"]

    @property
    def to_compute(self) -> list[str]:
        return [d for d, s in self.steps.items() if s.action == "compute"]

    @property
    def to_resume(self) -> list[str]:
        """Computed data types that continue after a killed writer's final prefix."""
        return [d for d, s in self.steps.items() if s.resume is not None]

    @property
    def to_save(self) -> list[str]:
        return [d for d, s in self.steps.items() if s.save]

    @property
    def fuzzy_loaded(self) -> list[str]:
        """Data types loaded with another lineage (``fuzzy_for``; see ``strax_decl.fuzzy``)."""
        return [d for d, s in self.steps.items() if s.fuzzy]


@dataclass(frozen=True)
class Plan(StepLists):
    """The resolved request; ``print(plan)`` shows a readable tree."""

    run_id: str
    targets: tuple[str, ...]
    steps: dict[str, Step]  # dependency order: a step's inputs come before it
    lineages: dict[str, dict[str, Any]] = field(repr=False, default_factory=dict)
    #: The run folder of each store (by URL) that resolving listed: claiming the data sets to
    #: save looks for their leftovers there instead of listing the folder again.
    folders: dict[str, RunFolder] = field(repr=False, default_factory=dict, compare=False)
    #: Per-run option values of this run: plugin -> option -> {"value", "source", ...}.
    options: dict[str, dict[str, dict[str, Any]]] = field(repr=False, default_factory=dict)

    @property
    def plugins_to_run(self) -> list[str]:
        """Plugin names that will compute, in dependency order (each once)."""
        seen: dict[str, None] = {}
        for s in self.steps.values():
            if s.action == "compute":
                seen.setdefault(s.plugin, None)
        return list(seen)

    def __str__(self) -> str:
        lines = [f"Plan for run {self.run_id!r}, targets {', '.join(self.targets)}:"]
        shown: set[str] = set()

        def show(data_type: str, prefix: str, last: bool, top: bool) -> None:
            step = self.steps[data_type]
            branch = "" if top else ("└─ " if last else "├─ ")
            seen_before = data_type in shown
            suffix = " (see above)" if seen_before else f": {step.describe()}"
            lines.append(
                f"{prefix}{branch}{data_type} [{step.plugin}, {step.key.lineage_hash}]{suffix}"
            )
            if seen_before or step.action == "load":
                return
            shown.add(data_type)
            deps = list(step.inputs)
            child_prefix = prefix + ("" if top else ("   " if last else "│  "))
            for i, dep in enumerate(deps):
                show(dep, child_prefix, i == len(deps) - 1, False)

        for t in self.targets:
            show(t, "  ", True, True)
        extras = [d for d, s in self.steps.items() if not s.needed]
        for d in extras:
            lines.append(f"  also {d}: {self.steps[d].describe()}")
        running = set(self.plugins_to_run) | {s.plugin for s in self.steps.values()}
        shown_options = [
            (p, o, v) for p, opts in self.options.items() if p in running for o, v in opts.items()
        ]
        if shown_options:
            lines.append(f"  per-run options of run {self.run_id!r}:")
            for plugin, option, v in shown_options:
                where = v["source"]
                if "correction" in v:
                    where += f" {v['correction']} {v['version']}"
                lines.append(f"    {plugin}.{option} = {v['value']!r:.80} ({where})")
        return "\n".join(lines)


def resolve(
    registry: Registry,
    lineages: Lineages,
    stores: Sequence[Store],
    run_id: str,
    targets: Sequence[str],
    save: Sequence[str] = (),
    saving: bool = True,
    distrust: Collection[DataKey] = (),
    fuzzy_for: Collection[str] = (),
) -> Plan:
    """Decide load or compute for every data type ``targets`` need in ``run_id``.

    ``distrust``: keys whose stored data was found corrupted; they are computed (and saved
    again, replacing the corrupted data) even where they look complete. ``fuzzy_for``: plugin
    names whose version and options may differ in what is loaded (``strax_decl.fuzzy``).
    """
    targets = tuple(targets)
    for t in (*targets, *save):
        registry.provider(t)  # KeyError naming the unknown data type
    for s in save:
        if registry.output_spec(s).save == SaveWhen.NEVER:
            raise ValueError(
                f"data type {s!r} is never saved (plugin {registry.provider(s).name} declares "
                "save='never'), but it was listed in save="
            )
    writable = [s for s in stores if not s.readonly]
    steps: dict[str, Step] = {}
    needed: set[str] = set()
    snapshots = _Snapshots(stores, run_id)
    fuzzy = Fuzzy(fuzzy_for)

    def key(data_type: str) -> DataKey:
        return DataKey(run_id=run_id, data_type=data_type, lineage_hash=lineages.hash(data_type))

    def stored_status(data_type: str) -> tuple[tuple[Store, DataSetInfo] | None, str]:
        """Where complete, loadable data of ``data_type`` is (None if nowhere), and why."""
        k = key(data_type)
        for store in stores:
            try:
                info = snapshots.of(store).complete(k)
            except DataCorrupted:
                # a published data set was damaged: the request fails, unless the session
                # already decided to recompute it (distrust)
                if k not in distrust:
                    raise
                info = None
            if info is None:
                continue
            problem = rejection(registry, store, info, distrust)
            if problem is not None:
                return None, problem
            _warn_if_code_changed(registry, k, info.metadata)
            return (store, info), f"stored in {store.url}"
        statuses = [snapshots.of(s).status(k) for s in stores]
        if "failed" in statuses:
            store = stores[statuses.index("failed")]
            problem = _failure_summary(snapshots.of(store).info(k))
            if problem.startswith("DataCorrupted"):
                return None, f"stored data in {store.url} is corrupted"
            return None, "stored data failed while it was written" + (
                f" ({problem})" if problem else ""
            )
        if "writing" in statuses:
            return None, "stored data is incomplete (being written, or its writer died)"
        if "partial" in statuses:
            return None, "stored data is partial (a stopped writer's final prefix)"
        return None, _why_not_stored(snapshots, k, lineages.lineage(data_type))

    def visit(data_type: str) -> None:
        needed.add(data_type)
        if data_type in steps:
            return
        plugin = registry.provider(data_type)
        found, why = stored_status(data_type)
        differs: tuple[str, ...] = ()
        if found is None and fuzzy:  # another lineage, differing only where allowed
            others = [(s, i) for s in stores for i in snapshots.of(s).of_type(data_type)]
            ok = [(s, i) for s, i in others if rejection(registry, s, i, distrust) is None]
            hit = fuzzy.match(data_type, ok, lineages.lineage(data_type))
            if hit is not None:
                found, why, differs = hit
        if found is not None:
            steps[data_type] = Step(
                data_type,
                registry.kind(data_type),
                plugin.name,
                "load",
                why,
                found[1].key,  # the exact key, or a fuzzy match's
                tuple(plugin.inputs),
                store=found[0],
                info=found[1],
                fuzzy=differs,
            )
            return
        for dep in plugin.inputs:
            visit(dep)
        for out, spec in plugin.outputs.items():
            if out in steps:
                continue
            if out != data_type:
                out_found, out_why = stored_status(out)
                out_complete = out_found is not None
            else:
                out_complete, out_why = False, why
            do_save, save_why = _save_decision(
                spec.save, out in targets, out in save, saving, bool(writable), out_complete
            )
            tainted = fuzzy.tainted([out], plugin.inputs)
            do_save, save_why = (False, tainted) if tainted else (do_save, save_why)
            resume, resume_why = (
                resume_of(plugin, steps, writable, key(out), snapshots.of(writable[0]).folder)
                if do_save and len(writable) == 1
                else (None, "")
            )
            if resume_why:
                out_why = resume_why if out == data_type else out_why
            steps[out] = Step(
                out,
                spec.kind,
                plugin.name,
                "compute",
                out_why if out == data_type or not out_complete else f"computed with {data_type}",
                key(out),
                tuple(plugin.inputs),
                do_save,
                save_why,
                needed=out == data_type,
                resume=resume,
            )

    for t in targets:
        visit(t)
    # A by-product visited early may turn out to be needed by a later target.
    final = {
        d: (s if s.needed or d not in needed else _replace_needed(s)) for d, s in steps.items()
    }
    return Plan(
        run_id, targets, final, {d: lineages.lineage(d) for d in final}, snapshots.folders()
    )


def _replace_needed(step: Step) -> Step:
    return replace(step, needed=True)


def rejection(
    registry: Registry, store: Store, info: DataSetInfo, distrust: Collection[DataKey] = ()
) -> str | None:
    """Why the complete data set ``info`` in ``store`` must not be loaded (None: it may).

    The one rule for "loadable", shared with the session's re-check under claims.
    """
    if info.key in distrust:
        return f"stored data in {store.url} is corrupted"
    declared = registry.dtype(info.key.data_type)
    if info.dtype != declared:
        return (
            f"stored data in {store.url} has dtype {info.dtype}, but plugin "
            f"{registry.provider(info.key.data_type).name} declares {declared}"
        )
    return None


class _Snapshot:
    """What one store holds of one run, read as little as possible and at most once.

    A data set that is complete is found by reading its own metadata (``Store.find``: no
    listing). Only a miss needs the run folder: it is listed once (``Store.run_folder``), and
    the data sets of a data type are read from that listing when first asked about.
    """

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.folder: RunFolder | None = None
        self._found: dict[DataKey, DataSetInfo | None] = {}
        self._of_type: dict[str, list[DataSetInfo]] = {}

    def complete(self, key: DataKey) -> DataSetInfo | None:
        """The complete data set under ``key`` (only a final path can be complete)."""
        if key not in self._found:
            self._found[key] = self.store.find(key)
        return self._found[key]

    def of_type(self, data_type: str) -> list[DataSetInfo]:
        """Every data set of ``data_type`` in the run, any status and lineage."""
        if data_type not in self._of_type:
            if self.folder is None:
                self.folder = self.store.run_folder(self.run_id)
            self._of_type[data_type] = self.store.list(self.run_id, data_type, folder=self.folder)
        return self._of_type[data_type]

    def status(self, key: DataKey) -> Status:
        """As ``Store.status``, for a key ``complete`` did not find: writing beats failed."""
        states = {i.status for i in self.of_type(key.data_type) if i.key == key}
        order: tuple[Status, ...] = ("writing", "partial", "failed")
        return next((s for s in order if s in states), "absent")

    def info(self, key: DataKey) -> DataSetInfo | None:
        """As ``Store.info``: the data set at the final path, else a write in progress."""
        infos = [i for i in self.of_type(key.data_type) if i.key == key]
        final = self.store.backend.where(key.path)
        return next((i for i in infos if i.location == final), infos[0] if infos else None)


class _Snapshots:
    """One snapshot per store; the plan keeps the run folders they listed."""

    def __init__(self, stores: Sequence[Store], run_id: str) -> None:
        self.stores = stores
        self.run_id = run_id
        self._taken: dict[int, _Snapshot] = {}

    def of(self, store: Store) -> _Snapshot:
        snap = self._taken.get(id(store))
        if snap is None:
            snap = self._taken[id(store)] = _Snapshot(store, self.run_id)
        return snap

    def folders(self) -> dict[str, RunFolder]:
        """The run folders listed, by store URL."""
        return {
            snap.store.url: snap.folder for snap in self._taken.values() if snap.folder is not None
        }


def _save_decision(
    policy: SaveWhen,
    is_target: bool,
    explicit: bool,
    saving: bool,
    writable: bool,
    already_stored: bool,
) -> tuple[bool, str]:
    if already_stored:
        return False, "already stored"
    if not saving:
        return False, "saving disabled"
    if not writable:
        return False, "no writable store"
    if policy == SaveWhen.ALWAYS:
        return True, "save='always'"
    if policy == SaveWhen.TARGET:
        return (
            (True, "save='target' and requested")
            if is_target
            else (False, "save='target' and not requested")
        )
    if policy == SaveWhen.EXPLICIT:
        return (
            (True, "listed in save=")
            if explicit
            else (False, "save='explicit' and not listed in save=")
        )
    return False, "save='never'"


def _why_not_stored(snapshots: _Snapshots, key: DataKey, lineage: dict[str, Any]) -> str:
    others = [
        info
        for store in snapshots.stores
        for info in snapshots.of(store).of_type(key.data_type)
        if info.key.lineage_hash != key.lineage_hash and info.status == "complete"
    ]
    if not others:
        return "not stored"
    info = others[0]
    old = info.metadata.get("lineage") if isinstance(info.metadata, dict) else None
    changes = diff(old, lineage) if isinstance(old, dict) else []
    detail = f": {'; '.join(changes[:3])}" if changes else ""
    return f"stored only with a different lineage (hash {info.key.lineage_hash}){detail}"


def _failure_summary(info: DataSetInfo | None) -> str:
    """The last line of the exception recorded in a failed data set ("" if none)."""
    exc = info.exception if info is not None else None
    lines = (exc or "").strip().splitlines()
    text = lines[-1] if lines else ""
    return text if len(text) <= 200 else text[:197] + "..."


def _warn_if_code_changed(registry: Registry, key: DataKey, metadata: Any) -> None:
    plugin = registry.provider(key.data_type)
    stored_code = metadata.get("code_hash") if isinstance(metadata, dict) else None
    if stored_code and stored_code != plugin.code_hash:
        warnings.warn(
            f"plugin {plugin.name} still says version {plugin.version!r}, but its source code "
            f"differs from the code that made the stored {key.data_type!r} ({key}); the cache "
            "may be stale: bump the version, or use version = 'auto'",
            StaleVersionWarning,
            stacklevel=4,
        )
