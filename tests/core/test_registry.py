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


def test_option_declared_with_different_defaults():
    Consumer = make_consumer("Regroup", {"peaks": Peak}, {"thing": Peak}, {"group": (int, 7)})
    with pytest.raises(
        sd.RegistrationError, match=r"option 'group'.*different defaults \(5 vs 7\)"
    ):
        sd.Context(storage=None, plugins=[ToyRecords, Peaks, Consumer])


def test_same_option_same_declaration_is_shared():
    Consumer = make_consumer("Regroup", {"peaks": Peak}, {"thing": Peak}, {"group": (int, 5)})
    ctx = sd.Context(storage=None, plugins=[ToyRecords, Peaks, Consumer], config={"group": 3})
    assert ctx.options["Regroup"].group == ctx.options["Peaks"].group == 3


def test_field_from_two_inputs_of_one_kind():
    class AreaAgain(sd.Plugin):
        class Inputs(sd.Inputs):
            peaks: Peak

        class Outputs(sd.Outputs):
            peak_area2: Peak = sd.output(kind="peaks")  # same kind, so merged with peaks

        def compute(self, peaks):
            return peaks

    Merger = make_consumer("Merger", {"peaks": Peak, "peak_area2": Peak}, {"merged": Peak})
    with pytest.raises(
        sd.RegistrationError,
        match=r"Merger: field 'area' comes from both 'peaks' \(Peaks\) and 'peak_area2' "
        r"\(AreaAgain\)",
    ):
        sd.Context(storage=None, plugins=[ToyRecords, Peaks, AreaAgain, Merger])


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
