"""The session: the one owner of a request's path from its plan to its last chunk.

::

    session = Session(registry, lineages, options, stores, on_conflict="wait")
    request = Request("run_1", ("peaks",))
    for chunk in session.run(request):      # resolve, claim, build, execute, release
        ...
    session.last_plan, session.last_stats   # what ran, and where its time went

``resolve`` only reads; everything that changes the world around a run happens here, in this
order: claim every data set the plan saves (``Store.claim``, sorted by key, so two processes
cannot deadlock), waiting for another writer of one of them (``on_conflict="wait"``, then
plan again, which loads it) or failing fast (``"fail"``: ClaimHeld); re-check, under the
claims, only the claimed keys (one of them completed meanwhile: release and plan again);
build the graph, choose the executor, attach the statistics and the progress bar; run; stop
the pipeline and release the claims. Stored data found corrupted while loading is marked
failed and, with ``on_corrupted="recompute"``, computed again. A ``time_range`` inside the
final prefix of a target that is partly stored is read from that prefix, before any claim
(``resuming.covering_prefix``); beyond it, the plan resumes from the watermark. So two
processes never compute the same stored data set twice, and the plan that runs is always one
its claims cover.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from strax_decl.chunk import Chunk
from strax_decl.claiming import recording, tracked, wait_for_writer
from strax_decl.engine.executors import execute
from strax_decl.engine.graph import Graph, build_graph
from strax_decl.engine.hooks import Hook
from strax_decl.errors import StraxDeclError
from strax_decl.lineage import Lineages
from strax_decl.plugin import Options, Submit
from strax_decl.progress import progress_bar
from strax_decl.registry import Registry
from strax_decl.resolver import Plan, rejection, resolve
from strax_decl.resuming import covering_prefix
from strax_decl.stats import RunStats
from strax_storage import (
    Claim,
    ClaimHeld,
    ClaimInfo,
    DataCorrupted,
    DataKey,
    DataNotFound,
    StorageError,
    Store,
    WriterGone,
    validate_name,
)
from strax_storage.partial import PrefixReader

__all__ = [
    "CorruptedAfterRows",
    "OnConflict",
    "OnCorrupted",
    "Refusal",
    "Request",
    "Session",
    "acquire",
    "corrupted_key",
    "mark_corrupted",
    "release_claims",
]

log = logging.getLogger(__name__)

RunConfig = tuple[Lineages, Mapping[str, Options], dict[str, dict[str, dict[str, Any]]]]
"""One run's lineages, options per plugin, and per plugin and option its per-run value and
where it came from (shown by ``Plan``)."""

OnConflict = Literal["wait", "fail"]
"""What a run does when another process is writing a data set it would save."""
OnCorrupted = Literal["raise", "recompute"]
"""What a run does when stored data it loads turns out corrupted."""

MAX_ROUNDS = 1000
"""Plan-and-claim attempts before giving up (each one follows another writer's progress)."""
CLAIM_RETRY_LIMIT_S = 30.0
"""Seconds of claim attempts that get nowhere (no claim, no writer to wait for: e.g. the break
lock of a process that died while breaking a claim, removed as stale after 10 s) before
giving up with an error naming the data set and its holder."""
CLAIM_BACKOFF_MAX_S = 0.5
"""The longest pause between two such attempts (the pause doubles from 10 ms)."""


@dataclass(frozen=True)
class Request:
    """What one get or make asks for (everything but the context's standing settings)."""

    run_id: str
    targets: tuple[str, ...]
    save: tuple[str, ...] = ()
    output: bool = True
    """Iterate the targets' chunks (get); False: only compute and store (make)."""
    time_range: tuple[int, int] | None = None
    processor: str | None = None
    """The executor (None: the session's)."""
    progress: bool | None = None
    submit: Submit | None = None
    fuzzy_for: tuple[str, ...] = ()
    """Plugins whose version and options may differ in what is loaded (``strax_decl.fuzzy``)."""
    concatenated: bool = False
    """The caller concatenates every chunk (``get_array``): a loaded target may come in runs
    of stored chunks instead of the producer's chunks (``build_graph(combine_loaded=...)``)."""


class CorruptedAfterRows(DataCorrupted, StraxDeclError):
    """Corruption found in a stream that already yielded rows (``on_corrupted="recompute"``):
    the data set was marked failed, so the same request made again recomputes it (what
    ``get_array``, which has handed out no rows yet, does by itself)."""


class Session:
    """Runs requests against one set of plugins, options and stores (one per Context)."""

    def __init__(
        self,
        registry: Registry,
        lineages: Lineages,
        options: Mapping[str, Options],
        stores: Sequence[Store],
        *,
        processor: str = "threaded",
        max_workers: int = 2,
        max_messages: int = 4,
        timeout: float | None = None,
        on_conflict: OnConflict = "wait",
        on_corrupted: OnCorrupted = "raise",
        keep_finished: bool = True,
        for_run: Callable[[str], RunConfig] | None = None,
    ) -> None:
        """``for_run``: the lineages and options of one run, for a configuration with
        per-run options (None: ``lineages`` and ``options`` hold for every run)."""
        self.registry = registry
        self.lineages = lineages
        self.options = options
        self._for_run = for_run
        self.stores = list(stores)
        self.processor = processor
        self.max_workers = max_workers
        self.max_messages = max_messages
        self.timeout = timeout
        self.on_conflict: OnConflict = on_conflict
        self.on_corrupted: OnCorrupted = on_corrupted
        self.keep_finished = keep_finished
        self.last_plan: Plan | None = None
        """The plan the latest request executed (made while holding its claims)."""
        self.last_stats: RunStats | None = None
        """Statistics of the latest request."""

    def resolve(self, request: Request, distrust: Collection[DataKey] = ()) -> Plan:
        """The plan of ``request`` as storage is now (reads only; claims nothing).

        A published data set found damaged while planning raises DataCorrupted, unless
        ``on_corrupted="recompute"``: then it is planned to be computed again.
        """
        validate_name("run_id", request.run_id)
        distrusted = set(distrust)
        while True:
            try:
                lineages, _, described = self.configured(request.run_id)
                plan = resolve(
                    self.registry,
                    lineages,
                    self.stores,
                    request.run_id,
                    request.targets,
                    request.save,
                    distrust=distrusted,
                    fuzzy_for=request.fuzzy_for,
                )
                return dataclasses.replace(plan, options=described) if described else plan
            except DataCorrupted as e:
                if self.on_corrupted != "recompute" or e.key is None or e.key in distrusted:
                    raise
                log.warning("%s; recomputing it (on_corrupted='recompute')", e)
                distrusted.add(e.key)

    def configured(self, run_id: str) -> RunConfig:
        """Lineages, options and the per-run values' description for ``run_id``."""
        if self._for_run is None:
            return self.lineages, self.options, {}
        return self._for_run(run_id)

    def run(self, request: Request, plan: Plan | None = None) -> Iterator[Chunk]:
        """Yield the chunks of ``request``'s targets (nothing for a make), owning the run.

        ``plan``: one already resolved for ``request`` (e.g. to surface errors early), used as
        the first attempt instead of resolving again; it still runs only under its claims.
        A stream still open when the interpreter exits is closed then, before modules are
        torn down (``claiming.tracked``): it stops as if its caller had stopped reading.
        """
        validate_name("run_id", request.run_id)
        return tracked(self._run(request, plan))

    def _run(self, request: Request, plan: Plan | None) -> Iterator[Chunk]:
        distrust: set[DataKey] = set()
        if request.time_range is not None and request.output and len(request.targets) == 1:
            plan = plan or self.resolve(request)
            reader = self._prefix_reader(plan, request.targets[0], request.time_range)
            if reader is not None:  # the range is final in a partly stored data set
                self.last_plan, self.last_stats = plan, RunStats()
                yielded = False
                try:
                    for chunk in reader.chunks(request.time_range):
                        yielded = True
                        yield chunk
                    return
                except DataNotFound:  # resumed (or removed) by another writer meanwhile
                    if yielded:
                        raise
                    plan = None
        while True:
            try:
                plan, claims = self.claim(request, plan, distrust)
            except DataCorrupted as e:  # found while planning (e.g. a damaged zarr.json)
                if self.on_corrupted != "recompute" or e.key is None or e.key in distrust:
                    raise
                distrust.add(e.key)
                log.warning("%s; recomputing it (on_corrupted='recompute')", e)
                plan = None
                continue
            self.last_plan = plan
            chunks: Iterator[Chunk] | None = None
            yielded = False
            try:
                if not request.output and all(
                    plan.steps[t].action == "load" for t in request.targets
                ):
                    self.last_stats = RunStats()
                    return
                graph = build_graph(
                    plan,
                    self.registry,
                    self.configured(request.run_id)[1],
                    self.stores,
                    request.targets if request.output else None,
                    request.time_range,
                    combine_loaded=request.concatenated,
                )
                chunks = self._execute(plan, graph, request)
                for chunk in chunks:
                    yielded = True
                    yield chunk
                return
            except DataCorrupted as e:
                key = corrupted_key(plan, e)
                if self.on_corrupted != "recompute" or key is None or key in distrust:
                    raise
                mark_corrupted(self.stores, key, e)
                distrust.add(key)
                if yielded:
                    raise CorruptedAfterRows(
                        f"{e}; it was marked failed and will be recomputed when iterated again "
                        "(rows were already yielded from it)",
                        e.key,
                        e.where,
                    ) from e
                log.warning("%s; recomputing it (on_corrupted='recompute')", e)
                plan = None  # plan again, distrusting the corrupted data set
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()  # stop the pipeline (and its savers) before giving up the claims
                release_claims(claims)

    def _prefix_reader(
        self, plan: Plan, target: str, time_range: tuple[int, int]
    ) -> PrefixReader | None:
        """For a range inside a computed target's final prefix: a reader of that prefix."""
        step = plan.steps[target]
        return None if step.action == "load" else covering_prefix(self.stores, step.key, time_range)

    def claim(
        self, request: Request, plan: Plan | None = None, distrust: Collection[DataKey] = ()
    ) -> tuple[Plan, list[Claim]]:
        """A plan of ``request`` covered by claims on everything it saves, and those claims.

        Starts from ``plan`` if given (else resolves), claims what it saves, then re-checks
        only the claimed keys (``Store.find``): if one became complete and loadable meanwhile,
        or another process held a claim (after waiting for its data set, or failing fast with
        ``on_conflict="fail"``), releases and plans again. The caller releases the claims
        (``release_claims``) once the pipeline has stopped.
        """
        refusal: list[Refusal] = []
        since = time.monotonic()
        pause = 0.0
        for _ in range(MAX_ROUNDS):
            if plan is None:
                plan = self.resolve(request, distrust)
            if not plan.to_save:
                return plan, []
            refusal.clear()
            with recording(request):  # what this request does, in its claims
                claims = acquire(plan, self.stores, self.on_conflict, refusal, self.timeout)
            if claims is not None:
                try:
                    changed = self._completed_meanwhile(plan, distrust)
                except BaseException:
                    release_claims(claims)
                    raise
                if not changed:
                    return plan, claims
                release_claims(claims)
            plan = None
            if refusal and refusal[0].waited:  # another writer made progress: start over
                since, pause = time.monotonic(), 0.0
                continue
            # Nothing to wait for and nothing claimed (a claim being broken or released right
            # now): back off instead of spinning, up to a limit.
            if time.monotonic() - since > CLAIM_RETRY_LIMIT_S:
                break
            pause = min(CLAIM_BACKOFF_MAX_S, max(0.01, 2 * pause))
            time.sleep(pause)
        what = "the data sets to save"
        if refusal:
            holder = refusal[0].holder
            what = f"data set {refusal[0].key}" + (
                f" (held by {holder.describe()}, claim {holder.location})"
                if holder is not None
                else ""
            )
        raise StorageError(
            f"could not claim {what} after {time.monotonic() - since:.0f} s of attempts; "
            "if its holder is gone, its claim and break lock become stale and are broken "
            "within seconds: try again, or remove them"
        )

    def _completed_meanwhile(self, plan: Plan, distrust: Collection[DataKey]) -> bool:
        """Did a data set ``plan`` saves become loadable since it was resolved?"""
        for data_type in plan.to_save:
            key = plan.steps[data_type].key
            if key in distrust:
                continue  # being replaced: its damage is known
            for store in self.stores:
                info = store.find(key)
                if info is not None and rejection(self.registry, store, info, distrust) is None:
                    return True
        for data_type in plan.to_resume:  # resumed by another writer before we claimed it?
            step = plan.steps[data_type]
            point = next(s for s in self.stores if not s.readonly).resume_point(step.key)
            if point is None or point.path != step.resume.path:  # type: ignore[union-attr]
                return True
        return False

    def _execute(self, plan: Plan, graph: Graph, request: Request) -> Iterator[Chunk]:
        """Run ``graph`` on the chosen executor, with the progress bar if wanted."""
        stats = self.last_stats = RunStats()
        bar = progress_bar(plan, request.progress)
        hooks: list[Hook] = [stats] if bar is None else [stats, bar]
        return execute(
            graph,
            request.processor or self.processor,
            hooks=hooks,
            max_workers=self.max_workers,
            max_messages=self.max_messages,
            timeout=self.timeout,
            submit=request.submit,
            keep_finished=self.keep_finished,
            run_id=plan.run_id,
        )


def release_claims(claims: Iterable[Claim]) -> None:
    """Release every claim (errors are logged: releasing runs while others propagate). An
    interrupt meanwhile does not leave claims behind: it is re-raised after the last one."""
    interrupt: BaseException | None = None
    for claim in claims:
        for _ in range(3):  # a repeated Ctrl-C may interrupt the release itself
            try:
                claim.release()
                break
            except (KeyboardInterrupt, SystemExit) as e:
                interrupt = interrupt or e
            except Exception:
                log.exception("could not release %r", claim)
                break
    if interrupt is not None:
        raise interrupt


@dataclass(frozen=True)
class Refusal:
    """Why ``acquire`` took no claims: the data set refused, its holder, whether it waited."""

    key: DataKey
    holder: ClaimInfo | None
    waited: bool


def acquire(
    plan: Plan,
    stores: Sequence[Store],
    on_conflict: OnConflict,
    refusal: list[Refusal] | None = None,
    timeout: float | None = None,
) -> list[Claim] | None:
    """Claim every data set ``plan`` saves; None after waiting for another writer (or when
    a claim was refused with nobody to wait for; ``refusal`` then receives why). The wait
    is bounded by ``timeout`` (``claiming.wait_for_writer``: ClaimTimeout naming the holder)."""
    writable = [s for s in stores if not s.readonly]
    keys = sorted({plan.steps[d].key for d in plan.to_save})
    held: list[Claim] = []
    try:
        for store in writable:  # stores in order, keys sorted: one order for every process
            keep = [s.resume.path for s in plan.steps.values() if s.resume is not None]
            claims, refused = store.claim_all(keys, folder=plan.folders.get(store.url), keep=keep)
            held += claims
            if refused is None:
                continue
            holder = store.claim_holder(refused)
            release_claims(held)
            held = []
            if holder is None:
                if refusal is not None:
                    refusal.append(Refusal(refused, None, waited=False))
                return None  # released meanwhile: plan again
            if on_conflict == "fail":
                raise ClaimHeld(
                    f"data set {refused} is being written by {holder.describe()} "
                    f"(claim {holder.location}); not computing it a second time because "
                    "on_conflict='fail'. Wait for it, or use on_conflict='wait'",
                    refused,
                    holder,
                )
            log.info("waiting for data set %s, being written by %s", refused, holder.describe())
            waited = True
            try:
                wait_for_writer(store, refused, holder, timeout)
            except WriterGone as e:
                log.info("%s", e)
                waited = False  # nobody to wait for (e.g. a dead holder not broken yet)
            if refusal is not None:
                refusal.append(Refusal(refused, holder, waited))
            return None
    except BaseException:
        release_claims(held)
        raise
    return held


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
