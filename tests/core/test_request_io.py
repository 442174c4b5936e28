"""How often one request touches storage: counted on a real local backend, no mocks.

A request resolves once, from one listing of the run folder per store; the plan records where
each loaded data set is (its store and info), so the loaders never read its metadata again.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.testing import TOY_PLUGINS
from strax_storage import Store
from strax_storage.backend import Bytes, LocalBackend

RUN = "run_1"
TARGETS = ["peak_basics", "big_peaks", "peak_extras"]


class CountingBackend(LocalBackend):
    """A real local backend that counts what is asked of it."""

    def __init__(self, root: Path, *, readonly: bool = False) -> None:
        super().__init__(root, readonly=readonly)
        self._lock = threading.Lock()
        self.reads: Counter[str] = Counter()
        self.listings: Counter[str] = Counter()
        self.writes = 0

    def reset(self) -> None:
        with self._lock:
            self.reads.clear()
            self.listings.clear()
            self.writes = 0

    def read(self, key: str, limit: int | None = None) -> bytes | None:
        with self._lock:
            self.reads[key] += 1
        return super().read(key, limit)

    def children(self, prefix: str) -> list[str]:
        with self._lock:
            self.listings[prefix] += 1
        return super().children(prefix)

    def write(self, key: str, parts: Sequence[Bytes], *, within: str | None = None) -> None:
        with self._lock:
            self.writes += 1
        super().write(key, parts, within=within)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        with self._lock:
            self.writes += 1
        return super().create_exclusive(key, data)

    def group_reads(self) -> Counter[str]:
        """Reads of data sets' group metadata (``<run>/<data set>/zarr.json``)."""
        return Counter(
            {k: n for k, n in self.reads.items() if k.endswith("/zarr.json") and k.count("/") == 2}
        )


@pytest.fixture(params=["serial", "threaded"])
def processor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def counting_context(
    tmp_path: Path, processor: str
) -> tuple[sd.Context, CountingBackend, CountingBackend]:
    """A context over two counted stores: a read-only one first, then the writable one."""
    (tmp_path / "shared").mkdir()
    shared = CountingBackend(tmp_path / "shared", readonly=True)
    local = CountingBackend(tmp_path / "local")
    ctx = sd.Context(
        storage=[Store(shared), Store(local)],
        plugins=TOY_PLUGINS,
        processor=processor,  # type: ignore[arg-type]
    )
    return ctx, shared, local


def test_a_hot_get_array_reads_each_metadata_once_and_lists_nothing(
    tmp_path: Path, processor: str
) -> None:
    ctx, shared, local = counting_context(tmp_path, processor)
    ctx.make(RUN, TARGETS)
    for target in TARGETS:
        shared.reset()
        local.reset()
        rows = ctx.get_array(RUN, target, progress=True)  # the bar reads the plan only
        assert len(rows) > 0
        reads = local.group_reads()
        loaded = ctx.key_for(RUN, target).path + "/zarr.json"
        assert reads[loaded] == 1, reads
        assert max(reads.values()) == 1, reads  # each data set's metadata once, no more
        # found by their own metadata: no run folder is listed (and it is resolved once)
        assert local.listings[RUN] == 0 and shared.listings[RUN] == 0
        assert local.writes == 0 and shared.writes == 0


def test_a_cold_request_lists_the_run_folder_once_per_store(tmp_path: Path, processor: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    backends = [CountingBackend(tmp_path / d, readonly=True) for d in "ab"]
    ctx = sd.Context(
        storage=[Store(b) for b in backends],
        plugins=TOY_PLUGINS,
        processor=processor,  # type: ignore[arg-type]
    )
    rows = ctx.get_array(RUN, "peak_extras")
    assert len(rows) > 0
    assert ctx.last_plan is not None and ctx.last_plan.to_save == []  # so nothing is claimed
    # nothing stored: every data type is decided from one listing of each store
    assert [b.listings[RUN] for b in backends] == [1, 1]


def test_a_cold_request_that_saves_lists_the_run_folder_at_most_once_per_store(
    tmp_path: Path, processor: str
) -> None:
    ctx, shared, local = counting_context(tmp_path, processor)
    ctx.get_array(RUN, "peak_extras")
    assert ctx.last_plan is not None and "records" in ctx.last_plan.to_compute
    assert shared.listings[RUN] <= 1, shared.listings
    assert local.listings[RUN] <= 1, local.listings
    assert ctx.is_stored(RUN, "peak_extras")


def test_resolving_only_reads(tmp_path: Path, processor: str) -> None:
    ctx, shared, local = counting_context(tmp_path, processor)
    ctx.make(RUN, "peaks")
    local.reset()
    shared.reset()
    plan = ctx.plan(RUN, TARGETS)
    assert "peaks" in plan.to_load and plan.to_save
    assert local.writes == 0 and shared.writes == 0
    assert local.listings[RUN] == 1 and shared.listings[RUN] == 1


def test_the_plan_records_the_store_and_info_of_every_load(tmp_path: Path, processor: str) -> None:
    ctx, _, _ = counting_context(tmp_path, processor)
    first = ctx.get_array(RUN, "peak_basics")
    plan = ctx.last_plan
    assert plan is not None and plan.to_load == []
    assert all(step.store is None and step.info is None for step in plan.steps.values())

    again = ctx.get_array(RUN, "peak_basics")
    np.testing.assert_array_equal(again, first)
    plan = ctx.last_plan
    assert plan is not None and plan.to_load == ["peak_basics"]
    step = plan.steps["peak_basics"]
    local_store = ctx.stores[1]
    assert step.store is local_store
    assert step.info is not None and step.info.key == step.key and step.info.complete
    assert step.reason == f"stored in {local_store.url}"
    assert f"load (stored in {local_store.url})" in str(plan)
    # store and info are where the data is, not what the plan decides: not compared
    assert step == type(step)(**{**step.__dict__, "store": None, "info": None})


def test_a_plan_that_went_stale_before_its_claims_is_made_again(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    ctx = sd.Context(storage=store, plugins=TOY_PLUGINS)
    chunks = ctx.iter_chunks(RUN, "peaks")  # resolved here: records and peaks to compute
    other = sd.Context(storage=store, plugins=TOY_PLUGINS)
    other.make(RUN, "peaks")  # ...but another writer stores them before the run starts
    rows = np.concatenate([c.data for c in chunks])
    plan = ctx.last_plan
    assert plan is not None and plan.to_compute == [] and plan.to_load == ["peaks"]
    np.testing.assert_array_equal(rows, other.get_array(RUN, "peaks"))
