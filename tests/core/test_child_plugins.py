"""Child plugins and per-plugin option values.

A child plugin subclasses another to provide other data types, with its own defaults for the
options it shares with its parent (strax's ``child_plugin``/``child_option``, spelled as
plain Python: a subclass and its ``Options``). ``"Plugin.option"`` (or ``{"Plugin": {...}}``)
in the config sets a value for one plugin only.
"""

from __future__ import annotations

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.testing import Peak, Peaks, Record, ToyRecords


class PeaksHE(Peaks):
    """The high-energy variant: the same algorithm, coarser bins by default."""

    class Outputs(sd.Outputs):
        peaks_he: Peak

    class Options(Peaks.Options):
        group: int = sd.option(10, ge=1, description="records per high-energy peak")


class Counted(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    n: sd.i32


class CountHE(sd.Plugin):
    """A descendant of the child only."""

    version = "1"

    class Inputs(sd.Inputs):
        peaks_he: Peak

    class Outputs(sd.Outputs):
        peaks_he_count: Counted

    def compute(self, peaks_he: np.ndarray, start: int, end: int) -> np.ndarray:
        row = Counted.zeros(1)
        row["time"], row["endtime"], row["n"] = start, end, len(peaks_he)
        return row


PLUGINS = [ToyRecords, Peaks, PeaksHE, CountHE]
TARGETS = ["peaks", "peaks_he_count"]


def test_parent_and_child_run_side_by_side_with_their_own_values(tmp_path):
    ctx = sd.Context(storage=str(tmp_path), plugins=PLUGINS)
    assert (ctx.options["Peaks"].group, ctx.options["PeaksHE"].group) == (5, 10)
    assert ctx.key_for("r1", "peaks").lineage_hash != ctx.key_for("r1", "peaks_he").lineage_hash
    peaks, peaks_he = ctx.get_array("r1", "peaks"), ctx.get_array("r1", "peaks_he")
    assert len(peaks) == 2 * len(peaks_he) and peaks["area"].sum() == peaks_he["area"].sum()
    ctx.make("r1", TARGETS)
    assert set(ctx.plan("r1", [*TARGETS, "peaks_he"]).to_load) >= {"peaks", "peaks_he"}


def test_a_scoped_value_changes_only_the_child_and_its_descendants(tmp_path):
    ctx = sd.Context(storage=str(tmp_path), plugins=PLUGINS)
    ctx.make("r1", TARGETS)
    for config in ({"PeaksHE.group": 20}, {"PeaksHE": {"group": 20}}):
        changed = ctx.new_context(config=config)
        assert changed.options["PeaksHE"].group == 20 and changed.options["Peaks"].group == 5
        plan = changed.plan("r1", TARGETS)
        assert set(plan.to_compute) == {"peaks_he", "peaks_he_count"}
        assert set(plan.to_load) == {"peaks", "records"}
    # an unscoped value applies to both
    both = ctx.new_context(config={"group": 4})
    assert both.options["Peaks"].group == both.options["PeaksHE"].group == 4
    # the scoped value wins over the unscoped one
    mixed = ctx.new_context(config={"group": 4, "PeaksHE.group": 8})
    assert (mixed.options["Peaks"].group, mixed.options["PeaksHE"].group) == (4, 8)
    rows = [r for r in mixed.show_config() if r["option"] == "group"]
    assert {r["plugins"]: r["current"] for r in rows} == {"Peaks": "4", "PeaksHE": "8"}


def test_scoped_values_are_validated_and_misuse_names_plugin_and_option():
    with pytest.raises(sd.InvalidOption, match=r"option 'group' of plugin PeaksHE.*greater"):
        sd.Context(storage=None, plugins=PLUGINS, config={"PeaksHE.group": 0})
    with pytest.raises(sd.InvalidOption, match=r"plugin PeaksHE takes no option\(s\) 'gap'"):
        sd.Context(storage=None, plugins=PLUGINS, config={"PeaksHE.gap": 1})
    with pytest.raises(sd.InvalidOption, match=r"unknown option\(s\) 'Nope.group'"):
        sd.Context(storage=None, plugins=PLUGINS, config={"Nope.group": 1})


def test_a_shared_option_of_another_type_is_still_a_registration_error():
    class FloatGroups(Peaks):
        class Outputs(sd.Outputs):
            peaks_f: Peak

        class Options(sd.Options):
            group: float = sd.option(2.5, description="records per peak")

    with pytest.raises(sd.RegistrationError, match=r"'group'.*Peaks and FloatGroups.*types"):
        sd.Context(storage=None, plugins=[ToyRecords, Peaks, FloatGroups])


def test_the_child_reads_the_same_input_as_its_parent():
    assert PeaksHE.inputs == Peaks.inputs and set(PeaksHE.outputs) == {"peaks_he"}
    assert PeaksHE.inputs["records"].schema is Record


def test_derived_contexts_merge_scoped_values_option_by_option_whatever_the_spelling():
    class Widened(PeaksHE):
        class Options(PeaksHE.Options):
            spare: int = sd.option(0, description="an unrelated option")

    plugins = [ToyRecords, Peaks, Widened]
    a = sd.Context(storage=None, plugins=plugins, config={"Widened": {"group": 20}})
    b = a.new_context(config={"Widened": {"spare": 1}})  # the nested scope is merged
    assert (b.options["Widened"].group, b.options["Widened"].spare) == (20, 1)
    c = sd.Context(
        storage=None, plugins=plugins, config={"Widened.group": 20, "Widened": {"group": 30}}
    )
    assert c.options["Widened"].group == 30  # the later spelling wins
    assert c.new_context(config={"Widened.group": 40}).options["Widened"].group == 40
