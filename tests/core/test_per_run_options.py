"""Per-run options: values that change from run to run (calibrations, "corrections").

An option declared ``sd.option(..., per_run=True)`` takes, in the config, a constant,
``sd.by_run({...})`` or ``sd.correction(name)`` (from the context's corrections table, the
version pinned by its ``global_version``). Each run's value enters that run's lineage, so
runs with other values get other hashes, and a corrections update recomputes exactly what
it changes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.testing import Record, ToyRecords


class Calibrated(sd.Schema):
    time: sd.i64
    length: sd.i32
    dt: sd.i16
    area_pe: sd.f64 = sd.field("area in photoelectrons", unit="PE")


class Calibrate(sd.Plugin):
    """Records' areas divided by a per-run gain."""

    version = "1"

    class Inputs(sd.Inputs):
        records: Record

    class Outputs(sd.Outputs):
        calibrated: Calibrated

    class Options(sd.Options):
        gain: float = sd.option(1.0, gt=0, per_run=True, description="ADC per PE")

    def compute(self, records: np.ndarray) -> np.ndarray:
        out = Calibrated.zeros(len(records))
        for f in ("time", "length", "dt"):
            out[f] = records[f]
        out["area_pe"] = records["area"] / self.options.gain
        return out


class Summary(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    total_pe: sd.f64


class Summarise(sd.Plugin):
    """Downstream of the per-run plugin, with no per-run option of its own."""

    version = "1"

    class Inputs(sd.Inputs):
        calibrated: Calibrated

    class Outputs(sd.Outputs):
        summary: Summary

    def compute(self, calibrated: np.ndarray, start: int, end: int) -> np.ndarray:
        row = Summary.zeros(1)
        row["time"], row["endtime"], row["total_pe"] = start, end, calibrated["area_pe"].sum()
        return row


PLUGINS = [ToyRecords, Calibrate, Summarise]


@pytest.fixture
def table(tmp_path: Path) -> sd.CorrectionsTable:
    table = sd.CorrectionsTable(tmp_path / "corrections.sqlite")
    table.add("gain", "v1", 2.0, runs=["r1"])
    table.add("gain", "v1", 4.0, runs=["r2"])
    table.tag("global_v1", {"gain": "v1"})
    return table


def context(tmp_path: Path, table: sd.CorrectionsTable, gv: str = "global_v1") -> sd.Context:
    return sd.Context(
        storage=str(tmp_path / "data"),
        plugins=PLUGINS,
        config={"gain": sd.correction("gain")},
        corrections=table,
        global_version=gv,
    )


def test_runs_with_different_corrections_get_different_hashes_for_affected_types_only(
    tmp_path, table
):
    ctx = context(tmp_path, table)

    def hashes(data_type: str) -> set[str]:
        return {ctx.key_for(run, data_type).lineage_hash for run in ("r1", "r2")}

    assert len(hashes("records")) == 1  # not affected by the gain
    assert len(hashes("calibrated")) == len(hashes("summary")) == 2
    r1, r2 = ctx.get_array("r1", "calibrated"), ctx.get_array("r2", "calibrated")
    np.testing.assert_allclose(r1["area_pe"], 2 * r2["area_pe"])
    assert ctx.lineage("calibrated", run_id="r1")["option_sources"] == {
        "gain": {"correction": "gain"}
    }
    # the version is provenance, in the data set's metadata (and the plan)
    ctx.make("r1", "calibrated")
    meta = ctx.stores[0].info(ctx.key_for("r1", "calibrated")).metadata
    assert meta["per_run_options"]["gain"] == {
        "value": 2.0,
        "source": "correction",
        "correction": "gain",
        "version": "v1",
    }


def test_the_plan_shows_each_resolved_value_and_its_source(tmp_path, table):
    text = str(context(tmp_path, table).plan("r1", "summary"))
    assert "per-run options of run 'r1'" in text
    assert "Calibrate.gain = 2.0 (correction gain v1)" in text


def test_a_new_global_version_recomputes_only_what_changed_and_the_old_one_still_loads(
    tmp_path, table
):
    old = context(tmp_path, table)
    old.make("r1", "summary")
    old.make("r2", "summary")
    table.add("gain", "v2", 2.5, runs=["r1"])
    table.add("gain", "v2", 4.0, runs=["r2"])  # r2's value unchanged
    table.tag("global_v2", {"gain": "v2"})
    new = context(tmp_path, table, "global_v2")
    plan = new.plan("r1", "summary")
    assert plan.to_load == ["records"] and set(plan.to_compute) == {"calibrated", "summary"}
    new.make("r1", "summary")
    assert context(tmp_path, table).plan("r1", "summary").to_load == ["summary"]  # old data
    assert new.plan("r1", "summary").to_load == ["summary"]
    # r2's value did not change: its data stays valid under the new version
    assert new.plan("r2", "summary").to_load == ["summary"]
    want = context(tmp_path, table).get_array("r1", "calibrated")["area_pe"] * 2.0 / 2.5
    np.testing.assert_allclose(new.get_array("r1", "calibrated")["area_pe"], want)


def test_an_unresolvable_value_fails_before_anything_runs_naming_option_run_and_source(
    tmp_path, table
):
    ctx = context(tmp_path, table)
    with pytest.raises(
        sd.InvalidOption,
        match=r"option 'gain' of plugin Calibrate for run 'r9'.*"
        r"correction 'gain' v1 .*corrections.sqlite has no value for run 'r9'",
    ):
        ctx.plan("r9", "summary")
    with pytest.raises(sd.InvalidOption, match=r"global version 'nope' pins no version"):
        context(tmp_path, table, "nope").get_array("r1", "summary")
    assert not (tmp_path / "data" / "r9").exists()


def test_a_resolved_value_is_validated_by_the_option_type(tmp_path, table):
    table.add("gain", "bad", -1.0, runs=["r1"])
    ctx = sd.Context(
        storage=None,
        plugins=PLUGINS,
        config={"gain": sd.correction("gain", version="bad")},
        corrections=table,
    )
    with pytest.raises(sd.InvalidOption, match=r"option 'gain' of plugin Calibrate for run 'r1'"):
        ctx.get_array("r1", "calibrated")


def test_values_by_run_are_checked_when_the_context_is_built():
    with pytest.raises(sd.InvalidOption, match=r"option 'gain' of plugin Calibrate for run 'r2'"):
        sd.Context(storage=None, plugins=PLUGINS, config={"gain": sd.by_run({"r1": 2, "r2": 0})})
    ctx = sd.Context(
        storage=None, plugins=PLUGINS, config={"gain": sd.by_run({"r1": 2.0}, default=1.0)}
    )
    r1, other = ctx.get_array("r1", "calibrated"), ctx.get_array("r7", "calibrated")
    np.testing.assert_allclose(r1["area_pe"] * 2, other["area_pe"])
    strict = sd.Context(storage=None, plugins=PLUGINS, config={"gain": sd.by_run({"r1": 2.0})})
    with pytest.raises(sd.InvalidOption, match=r"for run 'r7': by_run\(1 runs\) has no value"):
        strict.plan("r7", "calibrated")


def test_per_run_values_only_for_options_declared_per_run_and_with_corrections():
    with pytest.raises(sd.InvalidOption, match=r"option 'group' of plugin .* not declared"):
        sd.Context(
            storage=None,
            plugins=[ToyRecords, *sd_testing_peaks()],
            config={"group": sd.by_run({"r1": 3})},
        )
    with pytest.raises(sd.InvalidOption, match=r"the context has no corrections"):
        sd.Context(storage=None, plugins=PLUGINS, config={"gain": sd.correction("gain")})


def sd_testing_peaks() -> list[type[sd.Plugin]]:
    from strax_decl.testing import Peaks

    return [Peaks]


def test_a_run_independent_lineage_of_a_per_run_type_is_refused(tmp_path, table):
    ctx = context(tmp_path, table)
    assert ctx.lineage("records")  # does not depend on the run
    with pytest.raises(sd.PerRunLineage, match=r"'summary' depends on the run.*'gain'"):
        ctx.lineage("summary")
    table_rows = {row["option"]: row["current"] for row in ctx.show_config()}
    assert table_rows["gain"] == "correction gain (global version)"


def test_corrections_by_time_interval_and_append_only_versions(tmp_path):
    table = sd.CorrectionsTable(tmp_path / "c.sqlite")
    table.add("elife", "v1", 7.0, runs=["special"])  # a run's own value: before intervals
    table.add("elife", "v1", 500.0, start=0, end=1000)
    table.add("elife", "v1", 600.0, start=1000)
    assert table.value("elife", "v1", "r1", run_start=999) == 500.0
    assert table.value("elife", "v1", "r1", run_start=1000) == 600.0
    with pytest.raises(ValueError, match=r"overlaps \[500, 700\).*append-only"):
        table.add("elife", "v1", 1.0, start=500, end=700)
    assert table.value("elife", "v1", "special", run_start=5) == 7.0  # by run id first
    # a run value added once the version has intervals could change a run's value: refused
    with pytest.raises(sd.CorrectionConflict, match=r"already holds values by time interval"):
        table.add("elife", "v1", 8.0, runs=["r1"])
    assert table.value("elife", "v1", "r1", run_start=999) == 500.0
    with pytest.raises(TypeError, match=r"runs must be a list of run ids.*runs=\['r12'\]"):
        table.add("elife", "v2", 1.0, runs="r12")
    with pytest.raises(sd.CorrectionNotFound, match=r"its start time is unknown"):
        table.value("elife", "v1", "r2", run_start=None)
    table.tag("gv1", {"elife": "v1"})
    with pytest.raises(ValueError, match=r"already pins elife to v1"):
        table.tag("gv1", {"elife": "v2"})
    with pytest.raises(sd.CorrectionNotFound, match=r"no version v3"):
        table.tag("gv2", {"elife": "v3"})
    assert table.global_versions() == {"gv1": {"elife": "v1"}}
    assert [e.value for e in table.entries("elife")] == [7.0, 500.0, 600.0]  # by run, by time


def test_a_correction_by_time_interval_uses_the_start_of_the_run_document(tmp_path):
    table = sd.CorrectionsTable(tmp_path / "c.sqlite")
    table.add("gain", "v1", 2.0, start=0, end=1_000)
    table.add("gain", "v1", 4.0, start=1_000)
    ctx = sd.Context(
        storage=str(tmp_path / "data"),
        plugins=PLUGINS,
        config={"gain": sd.correction("gain", version="v1")},
        corrections=table,
    )
    with pytest.raises(sd.InvalidOption, match=r"run 'early'.*its start time is unknown"):
        ctx.plan("early", "calibrated")
    ctx = ctx.new_context()  # per-run values are resolved once per run and context
    ctx.define_run("early", start=500, end=900)
    ctx.define_run("late", start=1_500, end=1_900)
    early, late = ctx.get_array("early", "calibrated"), ctx.get_array("late", "calibrated")
    np.testing.assert_allclose(early["area_pe"], 2 * late["area_pe"])
    assert "Calibrate.gain = 4.0 (correction gain v1)" in str(ctx.plan("late", "calibrated"))


def test_a_run_without_a_correction_yet_is_unavailable_not_an_error_in_the_catalog(tmp_path, table):
    ctx = context(tmp_path, table)
    for run in ("r1", "r2", "r3"):
        ctx.define_run(run, start=0, end=10)
    ctx.make("r1", "calibrated")
    runs = ctx.runs(available=["calibrated", "records"])
    available = dict(zip(runs["name"], runs["calibrated_available"], strict=True))
    assert available == {"r1": True, "r2": False, "r3": False}  # r3 has no gain yet
    assert list(ctx.select_runs(available="calibrated")["name"]) == ["r1"]
    with pytest.raises(sd.InvalidOption, match=r"for run 'r3'"):
        ctx.plan("r3", "calibrated")  # asking for it still says why
