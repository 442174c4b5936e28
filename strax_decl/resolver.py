"""The resolver: (run, targets, config) -> an inspectable Plan. Nothing runs here.

For every data type the request needs, the plan says whether it is loaded (complete data
with the same lineage and the declared dtype is stored) or computed, and why; and for every
computed output, whether it is saved, and why (or why not).

``claim_plan`` turns a plan into one this process may execute: it claims (``Store.claim``)
every data set the plan will save, in a fixed order; if another process holds one of them it
either waits for that data set to complete and plans again (which then loads it), or fails
fast (``on_conflict="fail"``). The plan that runs is always made while holding the claims, so
two processes never compute the same stored data set twice.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from strax_decl.lineage import Lineages, diff
from strax_decl.plugin import SaveWhen
from strax_decl.registry import Registry
from strax_storage import (
    Claim,
    ClaimHeld,
    DataCorrupted,
    DataKey,
    StorageError,
    Store,
    WriterGone,
)

__all__ = [
    "OnConflict",
    "OnCorrupted",
    "Plan",
    "StaleVersionWarning",
    "Step",
    "claim_plan",
    "corrupted_key",
    "mark_corrupted",
    "release_claims",
    "resolve",
]

log = logging.getLogger(__name__)

Action = Literal["load", "compute"]
OnConflict = Literal["wait", "fail"]
"""What a run does when another process is writing a data set it would save."""
OnCorrupted = Literal["raise", "recompute"]
"""What a run does when stored data it loads turns out corrupted."""


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
    distrust: Collection[DataKey] = (),
) -> Plan:
    """Decide load or compute for every data type ``targets`` need in ``run_id``.

    ``distrust``: keys whose stored data was found corrupted; they are computed (and saved
    again, replacing the corrupted data) even where they look complete.
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

    def key(data_type: str) -> DataKey:
        return DataKey(run_id=run_id, data_type=data_type, lineage_hash=lineages.hash(data_type))

    def stored_status(data_type: str) -> tuple[bool, str]:
        k = key(data_type)
        for store in stores:
            info = store.find(k)  # one read gives "complete?" and the info
            if info is None:
                continue
            if k in distrust:
                return False, f"stored data in {store.url} is corrupted"
            declared = registry.dtype(data_type)
            if info.dtype != declared:
                return False, (
                    f"stored data in {store.url} has dtype {info.dtype}, but plugin "
                    f"{registry.provider(data_type).name} declares {declared}"
                )
            _warn_if_code_changed(registry, k, info.metadata)
            return True, f"stored in {store.url}"
        statuses = [s.status(k) for s in stores]
        if "failed" in statuses:
            store = stores[statuses.index("failed")]
            problem = _failure_summary(store, k)
            if problem.startswith("DataCorrupted"):
                return False, f"stored data in {store.url} is corrupted"
            return False, "stored data failed while it was written" + (
                f" ({problem})" if problem else ""
            )
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
                data_type,
                registry.kind(data_type),
                plugin.name,
                "load",
                why,
                key(data_type),
                tuple(plugin.inputs),
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


def _failure_summary(store: Store, key: DataKey) -> str:
    """The last line of the exception recorded in a failed data set ("" if none)."""
    try:
        exc = store.info(key).exception
    except StorageError:
        return ""
    lines = (exc or "").strip().splitlines()
    text = lines[-1] if lines else ""
    return text if len(text) <= 200 else text[:197] + "..."


def release_claims(claims: Iterable[Claim]) -> None:
    """Release every claim (errors are logged: releasing runs while others propagate)."""
    for claim in claims:
        try:
            claim.release()
        except Exception:
            log.exception("could not release %r", claim)


def _acquire(plan: Plan, stores: Sequence[Store], on_conflict: OnConflict) -> list[Claim] | None:
    """Claim every data set ``plan`` saves; None after waiting for another writer."""
    writable = [s for s in stores if not s.readonly]
    held: list[Claim] = []
    try:
        for key in sorted({plan.steps[d].key for d in plan.to_save}):
            for store in writable:
                claim = store.claim(key)
                if claim is not None:
                    held.append(claim)
                    continue
                holder = store.claim_holder(key)
                release_claims(held)
                held = []
                if holder is None:
                    return None  # released meanwhile: plan again
                if on_conflict == "fail":
                    raise ClaimHeld(
                        f"data set {key} is being written by {holder.describe()} "
                        f"(claim {holder.location}); not computing it a second time because "
                        "on_conflict='fail'. Wait for it, or use on_conflict='wait'",
                        key,
                        holder,
                    )
                log.info("waiting for data set %s, being written by %s", key, holder.describe())
                try:
                    store.wait_complete(key)
                except WriterGone as e:
                    log.info("%s", e)
                return None
    except BaseException:
        release_claims(held)
        raise
    return held


def claim_plan(
    make_plan: Callable[[], Plan],
    stores: Sequence[Store],
    on_conflict: OnConflict = "wait",
    max_rounds: int = 1000,
) -> tuple[Plan, list[Claim]]:
    """A plan made while holding the claims on everything it saves, and those claims.

    Plans, claims the data sets to save (sorted by key, so two processes cannot deadlock),
    and plans once more under the claims; if that plan differs (another writer finished
    something meanwhile), or another process holds a claim (after waiting for its data set to
    complete, or to be abandoned), starts over. ``on_conflict="fail"`` raises ClaimHeld
    instead of waiting. The caller releases the claims (``release_claims``) when done.
    """
    for _ in range(max_rounds):
        plan = make_plan()
        if not plan.to_save:
            return plan, []
        claims = _acquire(plan, stores, on_conflict)
        if claims is None:
            continue
        try:
            again = make_plan()
        except BaseException:
            release_claims(claims)
            raise
        if again.to_save == plan.to_save and again.to_compute == plan.to_compute:
            return again, claims
        release_claims(claims)
    raise StorageError(f"could not claim the data sets to save after {max_rounds} attempts")


def corrupted_key(plan: Plan, error: DataCorrupted) -> DataKey | None:
    """The key of the data set ``plan`` loads that ``error`` is about (None if none)."""
    loaded = {step.key for step in plan.steps.values() if step.action == "load"}
    return error.key if error.key in loaded else None


def mark_corrupted(stores: Sequence[Store], key: DataKey, error: DataCorrupted) -> None:
    """Mark the complete copies of ``key`` failed (with the error) where the store allows."""
    for store in stores:
        if store.readonly:
            continue
        try:
            if store.status(key) != "complete":
                continue
            store.mark_failed(key, f"DataCorrupted: {error}", created=store.info(key).created)
            log.warning("marked the corrupted data set %s in %s failed", key, store.url)
        except StorageError as e:
            log.warning("could not mark the corrupted data set %s failed: %s", key, e)


def _warn_if_code_changed(registry: Registry, key: DataKey, metadata: Any) -> None:
    plugin = registry.provider(key.data_type)
    stored_code = metadata.get("code_hash") if isinstance(metadata, dict) else None
    if stored_code and stored_code != plugin.code_hash and not plugin.version.startswith("auto-"):
        warnings.warn(
            f"plugin {plugin.name} still says version {plugin.version!r}, but its source code "
            f"differs from the code that made the stored {key.data_type!r} ({key}); the cache "
            "may be stale: bump the version, or use version = 'auto'",
            StaleVersionWarning,
            stacklevel=4,
        )
