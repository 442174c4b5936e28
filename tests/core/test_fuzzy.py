"""fuzzy_for: loading data whose lineage differs only in named plugins' versions/options, loud
in the plan, and never saving anything computed from it; on a real store in tmp_path."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

import strax_decl as sd
from strax_decl import testing
from strax_decl.fuzzy import FuzzyLoadWarning, check_fuzzy_for, fuzzy_differences
from strax_decl.testing import TOY_PLUGINS


class Peaks(testing.Peaks):  # the same plugin, a newer version
    version = "0.3.0"


@pytest.fixture
def made(tmp_path) -> sd.Context:
    """A store holding records, peaks and peak_basics of run r1 made with group=1."""
    ctx = sd.Context(str(tmp_path / "data"), plugins=TOY_PLUGINS, config={"group": 1})
    ctx.make("r1", "peak_basics")
    return ctx


def test_an_option_change_upstream_is_loaded_fuzzily_and_loudly(made: sd.Context) -> None:
    other = made.new_context(config={"group": 2})
    exact = other.plan("r1", "peak_basics")
    assert exact.to_compute == ["peaks", "peak_basics", "big_peaks"] and not exact.fuzzy_loaded
    with pytest.warns(FuzzyLoadWarning, match=r"Peaks\.options\.group 1 -> 2"):
        plan = other.plan("r1", "peak_basics", fuzzy_for=["Peaks"])
    step = plan.steps["peak_basics"]
    assert step.action == "load" and plan.fuzzy_loaded == ["peak_basics"]
    assert step.key == made.key_for("r1", "peak_basics") != other.key_for("r1", "peak_basics")
    assert step.fuzzy == ("Peaks.options.group 1 -> 2",)
    assert "load (FUZZY: stored in" in str(plan)
    assert "differs in Peaks.options.group 1 -> 2" in str(plan)
    with pytest.warns(FuzzyLoadWarning):
        got = other.get_array("r1", "peak_basics", fuzzy_for=["peaks"])  # a data type works too
    np.testing.assert_array_equal(got, made.get_array("r1", "peak_basics"))
    assert not other.is_stored("r1", "peak_basics")  # never saved under the exact key


def test_nothing_computed_from_fuzzy_data_is_saved(made: sd.Context) -> None:
    store = made.stores[0]
    store.remove(made.key_for("r1", "peak_basics"))
    store.remove(made.key_for("r1", "big_peaks"))
    newer = made.new_context(plugins=[Peaks])
    with pytest.warns(FuzzyLoadWarning, match=r"Peaks\.version '0\.2\.0' -> '0\.3\.0'"):
        plan = newer.plan("r1", "peak_basics", fuzzy_for=["Peaks"])
    assert plan.steps["peaks"].action == "load" and plan.steps["peaks"].fuzzy
    basics = plan.steps["peak_basics"]
    assert basics.action == "compute" and not basics.save
    assert basics.save_reason == "computed from fuzzy-loaded 'peaks' (fuzzy_for): never saved"
    assert plan.to_save == []
    assert "do not save (computed from fuzzy-loaded 'peaks'" in str(plan)
    before = {i.key for i in store.list("r1")}
    with pytest.warns(FuzzyLoadWarning):
        got = newer.get_array("r1", "peak_basics", fuzzy_for=["Peaks"], save=["peak_basics"])
    assert len(got) == len(made.get_array("r1", "peaks"))
    assert {i.key for i in store.list("r1")} == before  # nothing new stored, exact or not
    assert newer.last_plan is not None and newer.last_plan.to_save == []


def test_other_differences_are_not_fuzzy(made: sd.Context) -> None:
    other = made.new_context(config={"group": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("error", FuzzyLoadWarning)
        plan = other.plan("r1", "peak_basics", fuzzy_for=["ToyRecords", "PeakProperties"])
    assert plan.fuzzy_loaded == [] and "peak_basics" in plan.to_compute
    assert "stored only with a different lineage" in plan.steps["peak_basics"].reason


def test_the_context_setting_travels_and_unknown_names_are_refused(made: sd.Context) -> None:
    fuzzy = made.new_context(config={"group": 2}, fuzzy_for=["peaks"])
    assert fuzzy.fuzzy_for == ("Peaks",)
    again = pickle.loads(pickle.dumps(fuzzy))  # the spec carries it (to Dask workers)
    assert again.fuzzy_for == ("Peaks",)
    with pytest.warns(FuzzyLoadWarning):
        assert again.plan("r1", "peak_basics").fuzzy_loaded == ["peak_basics"]
    with pytest.raises(KeyError, match="did you mean 'Peaks'"):
        made.new_context(fuzzy_for=["Peeks"])
    with pytest.raises(KeyError, match="'nope' is neither a registered plugin nor a data type"):
        made.get_array("r1", "peaks", fuzzy_for=["nope"])
    with pytest.raises(TypeError, match="fuzzy_for takes a list"):
        check_fuzzy_for(made.registry, 3)


def test_fuzzy_differences_compares_the_whole_tree() -> None:
    ctx = sd.Context(None, plugins=TOY_PLUGINS)
    wanted = ctx.lineage("peak_basics")
    stored = pickle.loads(pickle.dumps(wanted))
    assert fuzzy_differences(stored, wanted, {"Peaks"}) == []
    stored["inputs"]["peaks"]["inputs"]["records"]["options"]["seed"] = 99
    assert fuzzy_differences(stored, wanted, {"Peaks"}) is None  # ToyRecords is not named
    found = fuzzy_differences(stored, wanted, {"ToyRecords"})
    assert found is not None and len(found) == 1 and found[0].startswith("ToyRecords.options.seed")
    stored["inputs"]["peaks"]["plugin"] = "OtherPeaks"  # another plugin: never fuzzy
    assert fuzzy_differences(stored, wanted, {"ToyRecords", "Peaks", "OtherPeaks"}) is None
    assert fuzzy_differences("not a lineage", wanted, {"Peaks"}) is None


def test_a_superrun_plan_and_get_are_fuzzy_per_subrun(made: sd.Context) -> None:
    made.make("r2", "peak_basics")
    other = made.new_context(config={"group": 2})
    other.define_run("_sr1", ["r1", "r2"])
    with pytest.warns(FuzzyLoadWarning, match=r"Peaks\.options\.group 1 -> 2"):
        plan = other.plan("_sr1", "peak_basics", fuzzy_for=["Peaks"])
    for sub in ("r1", "r2"):
        assert plan.subruns[sub].fuzzy_loaded == ["peak_basics"]
    assert "FUZZY" in str(plan)
    with pytest.warns(FuzzyLoadWarning):
        got = other.get_array("_sr1", "peak_basics", fuzzy_for=["Peaks"])
    parts = [made.get_array(r, "peak_basics") for r in ("r1", "r2")]
    np.testing.assert_array_equal(got["time"], np.concatenate([p["time"] for p in parts]))
    assert not other.is_stored("r1", "peak_basics")
