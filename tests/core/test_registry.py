"""Registration checks: each error names the plugins involved."""

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.testing import TOY_PLUGINS, Peak, Peaks, Record, ToyRecords


def make_consumer(name, inputs, outputs, options=None, compute=None):
    """Build a plugin class from dicts, so each test states only what matters to it."""
    ns = {
        "version": "0.0.1",
        "Inputs": type("Inputs", (sd.Inputs,), {"__annotations__": inputs}),
        "Outputs": type("Outputs", (sd.Outputs,), {"__annotations__": outputs}),
        "compute": compute or (lambda self, **kw: None),
    }
    if options:
        ann = {k: t for k, (t, _) in options.items()}
        defaults = {k: sd.option(d, description=k) for k, (_, d) in options.items()}
        ns["Options"] = type("Options", (sd.Options,), {"__annotations__": ann, **defaults})
    return type(name, (sd.Plugin,), ns)


class Other(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    n_records: sd.f64  # same name as in Peak, other type


def test_unknown_input():
    Consumer = make_consumer("Consumer", {"hits": Record}, {"thing": Peak})
    with pytest.raises(sd.RegistrationError, match=r"plugin Consumer needs input 'hits'"):
        sd.Context(storage=None, plugins=[ToyRecords, Consumer])


def test_two_providers_of_one_data_type():
    Dup = make_consumer("DupPeaks", {"records": Record}, {"peaks": Peak})
    with pytest.raises(
        sd.RegistrationError, match=r"'peaks' is provided by two plugins: Peaks and DupPeaks"
    ):
        sd.Context(storage=None, plugins=[*TOY_PLUGINS, Dup])


def test_dependency_cycle():
    A = make_consumer("CycA", {"b_out": Peak}, {"a_out": Peak})
    B = make_consumer("CycB", {"a_out": Peak}, {"b_out": Peak})
    with pytest.raises(
        sd.RegistrationError, match=r"dependency cycle: Cyc[AB] -> Cyc[AB] -> Cyc[AB]"
    ):
        sd.Context(storage=None, plugins=[A, B])


def test_schema_mismatch_between_provider_and_consumer():
    Consumer = make_consumer("WantsOther", {"peaks": Other}, {"thing": Peak})
    with pytest.raises(
        sd.RegistrationError, match=r"WantsOther expects field 'n_records'.*provider Peaks"
    ):
        sd.Context(storage=None, plugins=[ToyRecords, Peaks, Consumer])


def test_missing_field_in_provider():
    class Needs(sd.Schema):
        time: sd.i64
        endtime: sd.i64
        colour: sd.i32

    Consumer = make_consumer("WantsColour", {"peaks": Needs}, {"thing": Peak})
    with pytest.raises(
        sd.RegistrationError, match=r"WantsColour expects field 'colour'.*Peaks declares no such"
    ):
        sd.Context(storage=None, plugins=[ToyRecords, Peaks, Consumer])


def test_option_declared_with_different_types():
    Consumer = make_consumer("Regroup", {"peaks": Peak}, {"thing": Peak}, {"group": (float, 5.0)})
    with pytest.raises(
        sd.RegistrationError, match=r"option 'group'.*Peaks and Regroup.*different types"
    ):
        sd.Context(storage=None, plugins=[ToyRecords, Peaks, Consumer])


def test_each_plugin_keeps_its_own_default_of_a_shared_option():
    Consumer = make_consumer("Regroup", {"peaks": Peak}, {"thing": Peak}, {"group": (int, 7)})
    ctx = sd.Context(storage=None, plugins=[ToyRecords, Peaks, Consumer])
    assert (ctx.options["Peaks"].group, ctx.options["Regroup"].group) == (5, 7)
    rows = [row for row in ctx.show_config() if row["option"] == "group"]
    table = {row["plugins"]: row["current"] for row in rows}
    assert table == {"Peaks": "5", "Regroup": "7"}
    # an unscoped value applies to every plugin taking the option; a scoped one to one plugin
    ctx = sd.Context(
        storage=None, plugins=[ToyRecords, Peaks, Consumer], config={"group": 3, "Regroup.group": 4}
    )
    assert (ctx.options["Peaks"].group, ctx.options["Regroup"].group) == (3, 4)


def test_same_option_same_declaration_is_shared():
    Consumer = make_consumer("Regroup", {"peaks": Peak}, {"thing": Peak}, {"group": (int, 5)})
    ctx = sd.Context(storage=None, plugins=[ToyRecords, Peaks, Consumer], config={"group": 3})
    assert ctx.options["Regroup"].group == ctx.options["Peaks"].group == 3


def test_field_from_two_inputs_of_one_kind_is_accepted_with_one_dtype():
    """As in strax: same-kind inputs may share fields; the later input's values win."""

    class AreaAgain(sd.Plugin):
        class Inputs(sd.Inputs):
            peaks: Peak

        class Outputs(sd.Outputs):
            peak_area2: Peak = sd.output(kind="peaks")  # same kind, so merged with peaks

        def compute(self, peaks):
            out = peaks.copy()
            out["area"] = -1.0
            return out

    seen = []

    class Merger(sd.Plugin):
        class Inputs(sd.Inputs):
            peaks: Peak
            peak_area2: Peak

        class Outputs(sd.Outputs):
            merged: Peak = sd.output(kind="peaks")

        def compute(self, peaks):
            seen.append(peaks["area"].copy())
            return peaks

    ctx = sd.Context(storage=None, plugins=[ToyRecords, Peaks, AreaAgain, Merger])
    merged = ctx.get_array("r", "merged")
    assert len(merged) and (merged["area"] == -1.0).all()  # peak_area2, declared later, wins
    assert all((a == -1.0).all() for a in seen)


def test_declaration_errors_name_the_plugin():
    with pytest.raises(
        sd.PluginDeclarationError, match=r"NoOutputs: Outputs declares no data type"
    ):

        class NoOutputs(sd.Plugin):
            class Inputs(sd.Inputs):
                records: Record

            def compute(self, records):
                return records

    with pytest.raises(sd.PluginDeclarationError, match=r"NotASource.*must define source"):

        class NotASource(sd.Plugin):
            class Outputs(sd.Outputs):
                records: Record

    with pytest.raises(
        sd.PluginDeclarationError, match=r"BadAnnotation: input 'records' must be annotated"
    ):
        make_consumer("BadAnnotation", {"records": np.ndarray}, {"x": Peak})


def test_wrong_output_dtype_at_run_time_names_plugin(tmp_path):
    def compute(self, records):
        return np.zeros(len(records), dtype=[("time", "<i8"), ("endtime", "<i8")])

    Wrong = make_consumer("WrongRows", {"records": Record}, {"thing": Peak}, compute=compute)
    ctx = sd.Context(storage=str(tmp_path), plugins=[ToyRecords, Wrong], processor="serial")
    with pytest.raises(
        sd.PluginGaveWrongOutput, match=r"plugin WrongRows, output 'thing': rows have dtype"
    ):
        ctx.get_array("r1", "thing")
    assert not ctx.is_stored("r1", "thing")


def test_a_dt_clash_between_same_kind_inputs_is_refused_naming_both():
    """Time fields may be shared too, but with one dtype: int16 vs int32 fails at build, not
    as a TypeError naming nothing in the middle of a run."""

    class Wide(sd.Schema):
        time: sd.i64
        length: sd.i32
        dt: sd.i32  # Record's dt is int16
        gain: sd.f32

    class Gains(sd.Plugin):
        class Inputs(sd.Inputs):
            records: Record

        class Outputs(sd.Outputs):
            gains: Wide = sd.output(kind="records")

        def compute(self, records):
            return Wide.zeros(len(records))

    Both = make_consumer("Both", {"records": Record, "gains": Wide}, {"both": Peak})
    with pytest.raises(
        sd.RegistrationError,
        match=r"plugin Both: field 'dt' is int16 in 'records' \(ToyRecords\) but int32 in "
        r"'gains' \(Gains\); both are of kind 'records'",
    ):
        sd.Context(storage=None, plugins=[ToyRecords, Gains, Both])


def test_shared_time_fields_must_agree_row_by_row():
    from strax_decl.chunk import Chunk, merge

    a = np.zeros(2, [("time", "<i8"), ("endtime", "<i8"), ("x", "<f4")])
    a["time"], a["endtime"], a["x"] = [0, 10], [5, 15], 1
    b = a.copy()
    b["x"] = 2
    merged = merge([Chunk(0, 20, a), Chunk(0, 20, b)], names=["a", "b"])
    assert (merged.data["x"] == 2).all()  # the later one wins
    b["endtime"][1] = 14
    with pytest.raises(sd.ChunkLawViolation, match=r"time field 'endtime' differs in row 1"):
        merge([Chunk(0, 20, a), Chunk(0, 20, b)], names=["a", "b"])
