"""The resolver: (run, targets, config) -> an inspectable Plan. Nothing runs here.

For every data type the request needs, the plan says whether it is loaded (complete data
with the same lineage is stored) or computed, and why; and for every computed output, whether
it is saved, and why (or why not).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from storage import DataKey, Store
from strax_decl.lineage import diff, lineage_hash, make_lineage
from strax_decl.plugin import Options, SaveWhen
from strax_decl.registry import Registry

__all__ = ["Lineages", "Plan", "Step", "StaleVersionWarning", "resolve"]

Action = Literal["load", "compute"]


class StaleVersionWarning(UserWarning):
    """Stored data was made by the same plugin version, but the plugin's code has changed."""


class Lineages:
    """Lineage dict and hash per data type for one validated configuration (memoised)."""

    def __init__(self, registry: Registry, options: Mapping[str, Options]) -> None:
        self.registry = registry
        self.options = options
        self._lineage: dict[str, dict[str, Any]] = {}
        self._hash: dict[str, str] = {}

    def lineage(self, data_type: str) -> dict[str, Any]:
        if data_type not in self._lineage:
            plugin = self.registry.provider(data_type)
            opts = self.options[plugin.name]
            tracked = {
                name: getattr(opts, name)
                for name, spec in plugin.option_specs.items()
                if spec.track
            }
            inputs = {d: self.lineage(d) for d in plugin.inputs}
            self._lineage[data_type] = make_lineage(
                data_type, plugin.name, plugin.version, tracked, inputs
            )
        return self._lineage[data_type]

    def hash(self, data_type: str) -> str:
        if data_type not in self._hash:
            self._hash[data_type] = lineage_hash(self.lineage(data_type))
        return self._hash[data_type]


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

    def describe(self) -> str:
        what = f"{self.action} ({self.reason})"
        if self.action == "compute":
            what += f", {'save' if self.save else 'do not save'} ({self.save_reason})"
        return what


@dataclass(frozen=True)
class Plan:
    """The resolved request; ``print(plan)`` shows a readable tree."""

    run_id: str
    targets: tuple[str, ...]
    steps: dict[str, Step]  # dependency order: a step's inputs come before it
    lineages: dict[str, dict[str, Any]] = field(repr=False, default_factory=dict)

    @property
    def to_load(self) -> list[str]:
        return [d for d, s in self.steps.items() if s.action == "load"]

    @property
    def to_compute(self) -> list[str]:
        return [d for d, s in self.steps.items() if s.action == "compute"]

    @property
    def to_save(self) -> list[str]:
        return [d for d, s in self.steps.items() if s.save]

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
        return "\n".join(lines)


def resolve(
    registry: Registry,
    lineages: Lineages,
    stores: Sequence[Store],
    run_id: str,
    targets: Sequence[str],
    save: Sequence[str] = (),
    saving: bool = True,
) -> Plan:
    """Decide load or compute for every data type ``targets`` need in ``run_id``."""
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

    def key(data_type: str) -> DataKey:
        return DataKey(run_id=run_id, data_type=data_type, lineage_hash=lineages.hash(data_type))

    def stored_status(data_type: str) -> tuple[bool, str]:
        k = key(data_type)
        statuses = [s.status(k) for s in stores]
        if "complete" in statuses:
            store = stores[statuses.index("complete")]
            _warn_if_code_changed(registry, store, k)
            return True, f"stored in {store.url}"
        if "failed" in statuses:
            return False, "stored data failed while it was written"
        if "writing" in statuses:
            return False, "stored data is incomplete (being written, or its writer died)"
        return False, _why_not_stored(stores, k, lineages.lineage(data_type))

    def visit(data_type: str) -> None:
        needed.add(data_type)
        if data_type in steps:
            return
        plugin = registry.provider(data_type)
        complete, why = stored_status(data_type)
        if complete:
            steps[data_type] = Step(
                data_type, registry.kind(data_type), plugin.name, "load", why,
                key(data_type), tuple(plugin.inputs),
            )
            return
        for dep in plugin.inputs:
            visit(dep)
        for out, spec in plugin.outputs.items():
            if out in steps:
                continue
            if out != data_type:
                out_complete, out_why = stored_status(out)
            else:
                out_complete, out_why = False, why
            do_save, save_why = _save_decision(
                spec.save, out in targets, out in save, saving, bool(writable), out_complete
            )
            steps[out] = Step(
                out, spec.kind, plugin.name, "compute",
                out_why if out == data_type or not out_complete else f"computed with {data_type}",
                key(out), tuple(plugin.inputs), do_save, save_why, needed=out == data_type,
            )

    for t in targets:
        visit(t)
    # A by-product visited early may turn out to be needed by a later target.
    final = {
        d: (s if s.needed or d not in needed else _replace_needed(s)) for d, s in steps.items()
    }
    return Plan(run_id, targets, final, {d: lineages.lineage(d) for d in final})


def _replace_needed(step: Step) -> Step:
    from dataclasses import replace

    return replace(step, needed=True)


def _save_decision(
    policy: SaveWhen, is_target: bool, explicit: bool, saving: bool, writable: bool,
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
        return (True, "save='target' and requested") if is_target else (
            False, "save='target' and not requested"
        )
    if policy == SaveWhen.EXPLICIT:
        return (True, "listed in save=") if explicit else (
            False, "save='explicit' and not listed in save="
        )
    return False, "save='never'"


def _why_not_stored(stores: Sequence[Store], key: DataKey, lineage: dict[str, Any]) -> str:
    others = []
    for store in stores:
        for info in store.list(run_id=key.run_id, data_type=key.data_type):
            if info.key.lineage_hash != key.lineage_hash and info.status == "complete":
                others.append(info)
    if not others:
        return "not stored"
    info = others[0]
    old = info.metadata.get("lineage") if isinstance(info.metadata, dict) else None
    changes = diff(old, lineage) if isinstance(old, dict) else []
    detail = f": {'; '.join(changes[:3])}" if changes else ""
    return f"stored only with a different lineage (hash {info.key.lineage_hash}){detail}"


def _warn_if_code_changed(registry: Registry, store: Store, key: DataKey) -> None:
    plugin = registry.provider(key.data_type)
    info = store.info(key)
    stored_code = info.metadata.get("code_hash") if isinstance(info.metadata, dict) else None
    if stored_code and stored_code != plugin.code_hash and not plugin.version.startswith("auto-"):
        warnings.warn(
            f"plugin {plugin.name} still says version {plugin.version!r}, but its source code "
            f"differs from the code that made the stored {key.data_type!r} ({key}); the cache "
            "may be stale: bump the version, or use version = 'auto'",
            StaleVersionWarning,
            stacklevel=4,
        )
