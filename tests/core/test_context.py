"""End to end through the Context: compute, store, reload in a new process, recompute on change."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.testing import TOY_PLUGINS

TARGETS = ["records", "peaks", "peak_basics", "big_peaks", "peak_extras"]


@pytest.fixture(params=["serial", "threaded"])
def ctx(request, tmp_path):
    return sd.Context(storage=str(tmp_path / "store"), plugins=TOY_PLUGINS, processor=request.param)


def test_compute_then_load_in_a_new_process(ctx, tmp_path):
    first = {t: ctx.get_array("run_1", t) for t in ["peak_extras", "big_peaks", "peak_basics"]}
    assert len(first["peak_extras"]) == 4 * 100 // 5
    assert (first["peak_extras"]["records_inside"] == 5).all()
    for t in TARGETS:
        assert ctx.is_stored("run_1", t), t

    script = textwrap.dedent(f"""
        import numpy as np, strax_decl as sd
        from strax_decl import testing
        def boom(*a, **k):
            raise AssertionError("compute ran although everything is stored")
        for cls in testing.TOY_PLUGINS:
            cls.compute = boom
            cls.source = boom
        ctx = sd.Context(storage={str(tmp_path / "store")!r}, plugins=testing.TOY_PLUGINS)
        plan = ctx.plan("run_1", ["peak_extras", "big_peaks", "peak_basics"])
        print(plan)
        assert plan.to_compute == [], plan
        for t in ["peak_extras", "big_peaks", "peak_basics"]:
            np.save({str(tmp_path)!r} + "/" + t + ".npy", ctx.get_array("run_1", t))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "load (stored in" in out.stdout
    for t, arr in first.items():
        np.testing.assert_array_equal(np.load(tmp_path / f"{t}.npy"), arr)


def test_changing_one_option_recomputes_exactly_its_descendants(ctx):
    ctx.make("run_1", ["peak_extras", "big_peaks"])
    plan = ctx.new_context(config={"group": 4}).plan("run_1", ["peak_extras", "big_peaks"])
    assert plan.steps["records"].action == "load"
    assert set(plan.to_compute) == {"peaks", "peak_extras", "big_peaks", "peak_basics"}
    assert "stored only with a different lineage" in plan.steps["peaks"].reason
    assert "group: 5 -> 4" in plan.steps["peaks"].reason

    plan = ctx.new_context(config={"big_area": 100.0}).plan("run_1", ["peak_extras", "big_peaks"])
    assert sorted(plan.to_compute) == ["big_peaks", "peak_basics"]
    assert sorted(plan.to_load) == ["peak_extras", "peaks"]


def test_plan_says_why_and_runs_nothing(ctx, tmp_path):
    plan = ctx.plan("run_1", "peak_extras")
    assert plan.steps["peak_extras"].reason == "not stored"
    assert plan.steps["peak_extras"].save
    text = str(plan)
    assert "peak_extras [PeakRecordCount" in text and "records [ToyRecords" in text
    assert not (tmp_path / "store" / "run_1").exists()


def test_multi_output_saves_both_outputs(ctx):
    basics = ctx.get_array("run_1", "peak_basics")
    assert ctx.is_stored("run_1", "big_peaks")
    peaks = ctx.get_array("run_1", "peaks")
    np.testing.assert_array_equal(basics["width"], peaks["endtime"] - peaks["time"])


def test_same_kind_targets_are_merged(ctx):
    merged = ctx.get_array("run_1", ["peaks", "peak_basics", "peak_extras"])
    assert set(merged.dtype.names) >= {"area", "width", "records_inside"}
    with pytest.raises(ValueError, match=r"different kinds"):
        ctx.get_array("run_1", ["peaks", "records"])


def test_time_range_equals_numpy_selection(ctx):
    full = ctx.get_array("run_1", "records")
    t0, t1 = int(full["time"][37]), int(full["time"][250])
    part = ctx.get_array("run_1", "records", time_range=(t0, t1))
    ends = full["time"] + full["length"] * full["dt"]
    np.testing.assert_array_equal(part, full[(full["time"] >= t0) & (ends <= t1)])
    computed = ctx.new_context(config={"group": 2}).get_array("run_2", "peaks", time_range=(t0, t1))
    assert len(computed) and computed["time"].min() >= t0 and computed["endtime"].max() <= t1


def test_get_df(ctx):
    df = ctx.get_df("run_1", "peaks")
    assert list(df.columns) == ["time", "endtime", "area", "n_records"]
    assert len(df) == 80


def test_unknown_target_and_bad_run_id(ctx):
    with pytest.raises(KeyError, match=r"unknown data type 'pekas'"):
        ctx.get_array("run_1", "pekas")
    with pytest.raises(ValueError, match=r"run_id"):
        ctx.get_array("../etc", "peaks")


def test_memory_storage_and_no_storage():
    mem = sd.Context(storage="memory://", plugins=TOY_PLUGINS)
    a = mem.get_array("r", "peaks")
    assert mem.is_stored("r", "peaks")
    none = sd.Context(storage=None, plugins=TOY_PLUGINS)
    np.testing.assert_array_equal(none.get_array("r", "peaks"), a)
    assert not none.is_stored("r", "peaks")


def test_unread_by_product_of_multi_output_plugin_does_not_block(ctx):
    """big_peaks is neither saved nor read here: the pipeline must not wait for a reader."""
    unsaved = ctx.new_context(storage=[])
    basics = unsaved.get_array("run_1", "peak_basics")
    assert len(basics) == 80


def test_several_runs_come_back_tagged_with_their_run_id(ctx):
    runs = ["run_b", "run_a"]
    both = ctx.get_array(runs, ["peaks", "peak_basics"])
    assert both.dtype.names[-1] == "run_id"
    assert list(dict.fromkeys(both["run_id"])) == runs  # in the order asked, not sorted
    for run in runs:
        alone = ctx.get_array(run, ["peaks", "peak_basics"])
        mine = both[both["run_id"] == run]
        for name in alone.dtype.names:
            np.testing.assert_array_equal(mine[name], alone[name])
    records = ctx.get_array(("run_a", "run_a"), "records")  # duplicates are dropped
    assert records["data"].shape == (400, 8) and set(records["run_id"]) == {"run_a"}
    df = ctx.get_df(runs, "peaks")
    assert list(df.columns) == ["time", "endtime", "area", "n_records", "run_id"]
    assert df.groupby("run_id").size().to_dict() == {"run_a": 80, "run_b": 80}


def test_several_runs_name_the_run_that_failed(ctx):
    ctx.make("run_ok", "peaks")
    crashing = ctx.new_context(config={"crash_at_chunk": 1})  # untracked: run_ok still loads
    with pytest.raises(RuntimeError, match="crashed on purpose") as failure:
        crashing.get_array(["run_ok", "run_bad"], "peaks")
    assert "of run 'run_bad'" in "".join(failure.value.__notes__)
    with pytest.raises(ValueError, match="no run ids"):
        ctx.get_array([], "peaks")
    with pytest.raises(ValueError, match="run_id"):
        ctx.get_array(["run_ok", "../x"], "peaks")


def test_the_default_store_is_the_command_lines_and_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("STRAX_DECL_STORAGE", "~/shared_store")
    ctx = sd.Context(plugins=TOY_PLUGINS)
    assert ctx.stores[0].url == str(tmp_path / "shared_store")
    ctx.make("run_1", "records")
    assert (tmp_path / "shared_store" / "run_1").is_dir()
    monkeypatch.delenv("STRAX_DECL_STORAGE")
    monkeypatch.chdir(tmp_path)
    assert sd.Context(plugins=TOY_PLUGINS).stores[0].url == str(tmp_path / "strax_data")
    assert not (tmp_path / "strax_data").exists()  # reading creates nothing


def test_a_path_object_is_a_store_location(tmp_path):
    ctx = sd.Context(tmp_path / "data", plugins=TOY_PLUGINS)
    assert [s.url for s in ctx.stores] == [str(tmp_path / "data")]
    two = sd.Context([tmp_path / "a", str(tmp_path / "b")], plugins=TOY_PLUGINS)
    assert len(two.stores) == 2


def test_modules_register_every_plugin_in_them_and_new_context_can_remove():
    import strax_decl.testing as toy_module

    ctx = sd.Context(storage=None, plugins=toy_module)  # strax's register_all
    assert set(ctx.registry.plugins) == {p.name for p in TOY_PLUGINS}
    both = sd.Context(storage=None, plugins=[toy_module, *TOY_PLUGINS])  # no duplicates
    assert len(both.plugins) == len(TOY_PLUGINS)
    fewer = ctx.new_context(remove=["PeakRecordCount", "big_peaks"])  # by name or data type
    assert set(fewer.registry.plugins) == {"ToyRecords", "Peaks"}
    with pytest.raises(KeyError, match=r"remove: no registered plugin is named 'Nope'"):
        ctx.new_context(remove=["Nope"])
    with pytest.raises(TypeError, match=r"plugins must be Plugin classes or modules"):
        sd.Context(storage=None, plugins=["ToyRecords"])  # type: ignore[list-item]
