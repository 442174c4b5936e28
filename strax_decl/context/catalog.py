"""Runs: the part of ``Context`` that knows runs (their documents, tags, what is stored for
them) and superruns. A mixin of :class:`~strax_decl.context.Context`.

::

    ctx.define_run("r1", start=t0, end=t1, mode="tpc_kr83m", tags=["calib"])
    ctx.add_tag("r1", "blinded")
    ctx.runs(available=["peaks"])                     # a DataFrame, one row per run
    ctx.select_runs(mode="tpc_*", tags="calib", exclude_tags="bad", available="peaks")
    ctx.define_run("_sr1", ["r1", "r2"])              # a superrun (see superruns.py)

The catalog never opens a data set to list runs: one listing of the store root and of each
run folder, one small run document per run. A data set is available if the run folder's
listing holds its directory and the store's record folder (one more listing) its completion
record (``strax_storage.status_records``); only a directory without one (a store of the
earlier layout, a non-local store) has its status read, remembered while it is unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from strax_decl.config import InvalidOption
from strax_decl.context import many, superruns
from strax_decl.context.getters import Getters, Targets, as_list
from strax_decl.lineage import PerRunLineage
from strax_decl.plugin import Plugin, SaveWhen
from strax_decl.request_args import check_run_id, check_targets
from strax_decl.run_meta import RunDoc, is_superrun, superrun_doc
from strax_decl.run_table import PatternType, RunRow, doc_fields, matcher, runs_frame, select_rows
from strax_storage import DataNotFound, StorageError, Store, validate_name
from strax_storage.run_docs import RunEntry
from strax_storage.run_scan import complete, complete_many

if TYPE_CHECKING:  # pragma: no cover - typing only
    from strax_decl.chunk import Chunk
    from strax_decl.context.context import Context
    from strax_decl.lineage import Lineages
    from strax_decl.registry import Registry

__all__ = ["RunCatalog"]

log = logging.getLogger(__name__)

Names = str | Sequence[str]


def _names(value: Names | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class RunCatalog:
    """``define_run``, ``run_metadata``, tags, ``runs``, ``select_runs``, availability, and
    superruns in ``iter_chunks`` / ``get_array`` / ``make``."""

    stores: list[Store]
    registry: Registry
    lineages: Lineages

    def _superrun_plan(
        self, run_id: str, targets: Targets, save: Sequence[str], fuzzy_for: Sequence[str] = ()
    ) -> Any:
        """The plan of a superrun (``superruns.SuperrunPlan``: a plan per subrun, or the
        superrun-level plan), or None for an ordinary run (``Context.plan`` asks first)."""
        if is_superrun(run_id) and not getattr(self, "_inside_superrun", False):
            return superruns.plan(self._ctx(), run_id, as_list(targets), save, fuzzy_for)
        return None

    def _ctx(self) -> Context:
        return cast("Context", self)

    # ------------------------------------------------------------------ run documents

    def define_run(
        self, name: str, data: Sequence[str] | Mapping[str, Any] | None = None, **fields: Any
    ) -> RunDoc:
        """Store the document of run ``name`` (in the first writable store), once.

        ``fields``: ``start``, ``end`` (ns since the epoch, a datetime or an ISO string),
        ``mode``, ``tags``, ``comments``, ``livetime`` (s) and any other JSON field.
        With ``data`` (strax's ``define_run``), ``name`` is a superrun (it starts with
        ``_``): a list of run ids, or ``{run_id: [(t0, t1), ...] or "all"}``; its start, end,
        modes, tags and livetime come from the subruns' documents. Defining the same
        document again is a no-op; a different one raises DataExistsError.
        """
        validate_name("run_id", name)
        if data is not None:
            spec = superruns.spec_of_data(data)
            subdocs = {r: self._doc(r) for r in spec}
            doc = superrun_doc(name, spec, subdocs, **fields)
        else:
            doc = RunDoc(name=name, **fields)
        store = next((s for s in self.stores if not s.readonly), None)
        if store is None:
            raise StorageError(f"cannot define run {name!r}: no writable store")
        payload = doc.to_json()
        tags = payload.get("tags", [])
        store.define_run(name, payload)
        return RunDoc(**{**payload, "tags": tags})

    def _doc(self, run_id: str) -> dict[str, Any] | None:
        """The run document (with its current tags) from the first store that has one."""
        for store in self.stores:
            doc = store.run_doc(run_id)
            if doc is not None:
                return doc
        return None

    def run_metadata(self, run_id: str, projection: Sequence[str] | None = None) -> dict[str, Any]:
        """The document of ``run_id`` (its current tags included); DataNotFound if none."""
        doc = self._doc(validate_name("run_id", run_id))
        if doc is None:
            where = ", ".join(s.url for s in self.stores) or "no store"
            raise DataNotFound(f"no run document for run {run_id!r} in {where}")
        return doc_fields(doc, projection)

    def add_tag(self, run_id: str, tag: str) -> bool:
        """Tag ``run_id`` (in every writable store holding its document, else the first
        writable store); True if the tag is new. Safe against concurrent taggers."""
        return self._tag(run_id, tag, remove=False)

    def remove_tag(self, run_id: str, tag: str) -> bool:
        """Remove a tag of ``run_id``; True if it had it."""
        return self._tag(run_id, tag, remove=True)

    def _tag(self, run_id: str, tag: str, *, remove: bool) -> bool:
        validate_name("run_id", run_id)
        writable = [s for s in self.stores if not s.readonly]
        holding = [s for s in writable if s.run_doc(run_id) is not None] or writable[:1]
        if not holding:
            raise StorageError(f"cannot tag run {run_id!r}: no writable store")
        changed = [s.tag_run(run_id, tag, remove=remove) for s in holding]
        return any(changed)

    def _ensure_doc(self, run_id: str, targets: Sequence[str]) -> None:
        """Write the run document a source plugin gives (``run_metadata(run_id)``) before
        the run is first made, if no store has one yet."""
        sources = superruns.sources_of(self.registry, targets)
        givers = [p for p in sources if p.run_metadata is not Plugin.run_metadata]
        if not givers or is_superrun(run_id) or self._doc(run_id) is not None:
            return
        ctx = self._ctx()
        for plugin_cls in givers:
            plugin = plugin_cls(ctx.options[plugin_cls.name], run_id, {})
            given = plugin.run_metadata(run_id)
            if given is None:
                continue
            fields = given.to_json() if isinstance(given, RunDoc) else dict(given)
            fields.pop("name", None)
            if any(not s.readonly for s in self.stores):
                self.define_run(run_id, **fields)
            return

    # ------------------------------------------------------------------ the catalog

    def _scan(
        self, run_ids: Sequence[str] | None = None
    ) -> dict[str, list[tuple[Store, RunEntry]]]:
        found: dict[str, list[tuple[Store, RunEntry]]] = {}
        for store in self.stores:
            for entry in store.scan_runs(run_ids):
                found.setdefault(entry.run_id, []).append((store, entry))
        return found

    def _rows(self, scanned: Mapping[str, list[tuple[Store, RunEntry]]]) -> list[RunRow]:
        rows = []
        for run, entries in sorted(scanned.items()):
            first = entries[0][1]
            if first.doc is None:  # another store's document, if one has it
                first = next((e for _, e in entries if e.doc is not None), first)
            rows.append(RunRow(run, first.doc, first.tags))
        return rows

    def _per_run(self) -> bool:
        """Do lineages depend on the run (per-run options)?"""
        configuration = getattr(self, "configuration", None)
        return bool(configuration is not None and getattr(configuration, "per_run", None))

    def _hash(self, run_id: str, data_type: str) -> str | None:
        """``data_type``'s lineage hash in ``run_id``; None if its per-run option values
        cannot be resolved for that run (e.g. no correction yet): then nothing of it is
        available, and the rest of the catalog still is."""
        try:
            return self.lineages.hash(data_type)
        except PerRunLineage:
            pass
        try:
            return self._ctx().key_for(run_id, data_type).lineage_hash
        except InvalidOption as e:
            log.info("run %r: %s is not judged available: %s", run_id, data_type, e)
            return None

    def _judge(
        self,
        rows: Sequence[RunRow],
        scanned: Mapping[str, list[tuple[Store, RunEntry]]],
        data_types: Sequence[str],
    ) -> None:
        """Fill ``row.available`` for ``data_types``: a status read only where a directory of
        the data type and lineage exists (many at once, remembered while unchanged)."""
        for dt in data_types:
            self.registry.provider(dt)  # unknown data type: a clear error
        level = {dt: superruns.superrun_level(self.registry, dt) for dt in data_types}
        needed: set[tuple[str, str]] = set()
        for row in rows:
            spec = row.get("sub_run_spec")
            for dt in data_types:
                if not isinstance(spec, dict):
                    needed.add((row.name, dt))
                elif not level[dt]:
                    needed.update((sub, dt) for sub in spec)
        missing = sorted({run for run, _ in needed} - set(scanned))
        if missing:
            scanned = {**scanned, **self._scan(missing)}
        hashes = {dt: self.lineages.hash(dt) for dt in data_types} if not self._per_run() else {}
        asked: dict[int, tuple[Store, list[tuple[str, str, str]], dict[str, RunEntry]]] = {}
        by_type: dict[str, list[str]] = {}
        for run, dt in needed:
            by_type.setdefault(dt, []).append(run)
        for dt, runs in by_type.items():  # one data type at a time: its name built once
            fixed = hashes.get(dt)
            for run in runs:
                lineage_hash = fixed or self._hash(run, dt)
                if lineage_hash is None:
                    continue
                dirname = f"{dt}-{lineage_hash}"
                for store, entry in scanned.get(run, ()):
                    if dirname in entry.dirnames:
                        _, items, entries = asked.setdefault(id(store), (store, [], {}))
                        items.append((run, dt, lineage_hash))
                        entries[run] = entry
        stored: set[tuple[str, str]] = set()
        for store, items, entries in asked.values():
            oks = complete_many(store.backend, items, entries)
            stored.update((run, dt) for (run, dt, _), ok in zip(items, oks, strict=True) if ok)
        for row in rows:
            spec = row.get("sub_run_spec")
            for dt in data_types:
                if not isinstance(spec, dict):
                    row.available[dt] = (row.name, dt) in stored
                elif not level[dt]:
                    row.available[dt] = all((sub, dt) in stored for sub in spec)
                else:
                    key = superruns.superrun_key(self._ctx(), row.name, dt)
                    row.available[dt] = any(
                        key.dirname in e.dirnames
                        and complete(s.backend, key.run_id, dt, key.lineage_hash)
                        for s, e in scanned.get(row.name, [])
                    )

    def runs(self, available: Names = (), fields: Names = ()) -> Any:
        """A pandas DataFrame with one row per run in any store: name, start, end, mode,
        tags, livetime, superrun, the document ``fields`` asked for, and one
        ``<data_type>_available`` column per data type in ``available`` (judged by this
        context's lineage hashes; a superrun has a per-run data type if all subruns do)."""
        scanned = self._scan()
        rows = self._rows(scanned)
        self._judge(rows, scanned, _names(available))
        return runs_frame(rows, _names(available), _names(fields))

    def select_runs(
        self,
        mode: Names | None = None,
        tags: Names | None = None,
        exclude_tags: Names | None = None,
        available: Names = (),
        pattern: Names | None = None,
        since: Any = None,
        until: Any = None,
        *,
        pattern_type: PatternType = "fnmatch",
        ignore_underscore: bool = True,
        fields: Names = (),
        run_mode: Names | None = None,
        include_tags: Names | None = None,
        run_id: Names | None = None,
    ) -> Any:
        """The runs (a DataFrame as ``runs()``) matching every criterion given.

        ``mode``, ``tags`` (any may match), ``exclude_tags`` (none may match: beats ``tags``)
        and ``pattern`` (the run name) take wildcards (``*``, ``?``, ``[...]``; with
        ``pattern_type="re"`` regular expressions), one or a list; a tag's leading ``_`` is
        ignored unless the pattern has one (``ignore_underscore``). ``available``: data types
        that must be stored (checked only for the runs left by the other criteria).
        ``since``/``until``: the run started in ``[since, until)``. strax's names
        ``run_mode``, ``include_tags`` and ``run_id`` are accepted too.
        """
        mode = mode if run_mode is None else run_mode
        tags = tags if include_tags is None else include_tags
        pattern = pattern if run_id is None else run_id
        scanned = self._scan()
        rows = select_rows(
            self._rows(scanned),
            mode=mode,
            tags=tags,
            exclude_tags=exclude_tags,
            pattern=pattern,
            since=since,
            until=until,
            pattern_type=pattern_type,
            ignore_underscore=ignore_underscore,
        )
        wanted = _names(available)
        self._judge(rows, scanned, wanted)
        rows = [r for r in rows if all(r.available[dt] for dt in wanted)]
        return runs_frame(rows, wanted, _names(fields))

    def list_available(self, data_type: str, runs: Names | None = None) -> list[str]:
        """Sorted run ids (of ``runs``, or of every run) for which ``data_type`` is stored
        under this context's lineage."""
        scanned = self._scan(None if runs is None else _names(runs))
        rows = self._rows(scanned)
        self._judge(rows, scanned, [data_type])
        return sorted(r.name for r in rows if r.available[data_type])

    def available_for_run(
        self,
        run_id: str,
        include_targets: Names | None = None,
        exclude_targets: Names | None = None,
        pattern_type: PatternType = "fnmatch",
    ) -> Any:
        """Which data types (those ever stored, matching ``include_targets`` and not
        ``exclude_targets``, wildcards allowed) are stored for ``run_id``: a DataFrame with
        columns ``target`` and ``is_stored``, as strax's."""
        import pandas as pd

        validate_name("run_id", run_id)
        keep = matcher(_names(include_targets), pattern_type) if include_targets else None
        drop = matcher(_names(exclude_targets), pattern_type)
        targets = [
            dt
            for dt in self.registry.providers
            if self.registry.output_spec(dt).save != SaveWhen.NEVER
            and (keep is None or keep(dt))
            and not drop(dt)
        ]
        scanned = self._scan([run_id])
        rows = self._rows(scanned) or [RunRow(run_id, None, ())]
        self._judge(rows, scanned, targets)
        return pd.DataFrame(
            {"target": targets, "is_stored": [rows[0].available[t] for t in targets]}
        )

    # ------------------------------------------------------------------ getting data

    def iter_chunks(self, run_id: str, targets: Any, **kwargs: Any) -> Iterator[Chunk]:
        """As ``Getters.iter_chunks``; a superrun is dispatched to ``superruns``, and a run
        is given its source plugin's run document first."""
        self._check_request(run_id, targets)
        if is_superrun(run_id) and not getattr(self, "_inside_superrun", False):
            return superruns.iter_chunks(self._ctx(), run_id, as_list(targets), **kwargs)
        self._ensure_doc(run_id, as_list(targets))
        return Getters.iter_chunks(self._ctx(), run_id, targets, **kwargs)

    def get_array(self, run_id: Any, targets: Any, **kwargs: Any) -> Any:
        """As ``Getters.get_array``; a superrun's per-run data types are its subruns' rows in
        order with a ``run_id`` field (as for several runs)."""
        if isinstance(run_id, str):
            self._check_request(run_id, targets)
        if (
            isinstance(run_id, str)
            and is_superrun(run_id)
            and not getattr(self, "_inside_superrun", False)
        ):
            kwargs.pop("ignore_errors", None)
            return superruns.get_array(self._ctx(), run_id, as_list(targets), **kwargs)
        return Getters.get_array(self._ctx(), run_id, targets, **kwargs)

    def _get_runs(
        self, runs: list[str], targets: Any, ignore_errors: bool = False, **kwargs: Any
    ) -> Any:
        """Several runs (checked by ``Getters.get_array``), up to ``max_workers`` at a time
        (``many.py``)."""
        return many.get_runs(
            self._ctx(), runs, as_list(targets), ignore_errors=ignore_errors, **kwargs
        )

    def _make_runs(self, runs: list[str], targets: list[str], **kwargs: Any) -> Any:
        """Several runs made here, up to ``max_workers`` at a time (``many.py``)."""
        return many.make_runs(self._ctx(), runs, targets, **kwargs)

    def _check_request(self, run_id: object, targets: Any) -> None:
        """The argument checks of ``Getters`` first, so a typo gets its "did you mean"."""
        check_run_id(run_id)
        check_targets(self._ctx().registry.providers, as_list(targets))

    def _make_one(self, run_id: str, targets: Any, **kwargs: Any) -> None:
        self._check_request(run_id, targets)
        if is_superrun(run_id) and not getattr(self, "_inside_superrun", False):
            superruns.make(self._ctx(), run_id, as_list(targets), **kwargs)
            return
        self._ensure_doc(run_id, as_list(targets))
        Getters._make_one(self._ctx(), run_id, targets, **kwargs)
