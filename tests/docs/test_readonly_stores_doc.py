"""What docs/storage.md, "Several stores, read-only stores", says about several stores."""

from __future__ import annotations

from pathlib import Path

import pytest

import strax_decl as sd
from strax_decl.testing import PeakProperties, Peaks, ToyRecords
from strax_storage import StorageError, open_store

PLUGINS = [ToyRecords, Peaks, PeakProperties]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    path = tmp_path / "shared"
    sd.Context(str(path), plugins=PLUGINS).make("run_1", "peak_basics")
    return path


def test_loads_from_the_first_store_and_never_writes_a_readonly_one(shared, tmp_path):
    before = tree(shared)
    ro = open_store(shared, readonly=True)
    ctx = sd.Context([ro, tmp_path / "mine"], plugins=PLUGINS, config={"big_area": 10.0})
    plan = ctx.plan("run_1", "peak_basics")
    assert plan.steps["peaks"].action == "load" and plan.steps["peaks"].store is ro
    assert plan.steps["peak_basics"].action == "compute" and plan.steps["peak_basics"].save
    ctx.get_array("run_1", "peak_basics")
    key = ctx.key_for("run_1", "peak_basics")
    assert ro.status(key) == "absent" and ctx.stores[1].status(key) == "complete"
    assert ctx.define_run("run_new").name == "run_new"  # goes to the writable store
    assert ctx.stores[1].run_doc("run_new") is not None and ro.run_doc("run_new") is None
    assert tree(shared) == before
    with pytest.raises(StorageError, match="read-only"):
        ro.define_run("run_x", {"start": 0, "end": 1})


def test_computed_data_goes_to_every_writable_store(tmp_path):
    ctx = sd.Context([tmp_path / "a", tmp_path / "b"], plugins=PLUGINS)
    ctx.get_array("run_1", "peaks")
    key = ctx.key_for("run_1", "peaks")
    assert [s.status(key) for s in ctx.stores] == ["complete", "complete"]


def test_no_writable_store_computes_and_saves_nothing(shared):
    before = tree(shared)
    ctx = sd.Context(open_store(shared, readonly=True), plugins=PLUGINS, config={"big_area": 1.0})
    plan = ctx.plan("run_1", "peak_basics")
    assert not plan.steps["peak_basics"].save and "no writable store" in str(plan)
    assert len(ctx.get_array("run_1", "peak_basics")) > 0
    assert tree(shared) == before
