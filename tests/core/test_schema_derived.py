"""Output schemas resolved when the context is built: from options and from inputs' schemas."""

import pickle

import numpy as np
import pytest
import zarr

import strax_decl as sd


class RecordBase(sd.Schema):
    abstract = True
    time: sd.i64 = sd.field("start time", unit="ns")
    endtime: sd.i64 = sd.field("exclusive end time", unit="ns")
    channel: sd.i16 = sd.field("channel number")


class Records(sd.Plugin):
    """A source whose waveform length and channel count are options."""

    version = "0.1.0"

    class Outputs(sd.Outputs):
        records: RecordBase = sd.output()

    class Options(sd.Options):
        n_samples: int = sd.option(4, ge=1, description="samples per record")
        n_channels: int = sd.option(2, ge=1, description="channels")

    @classmethod
    def output_schemas(cls, options):
        return RecordBase.derive(
            "Record", add={"data": (sd.array(sd.i16, options.n_samples), sd.field("waveform"))}
        )

    def source(self, run_id):
        rows = self.outputs["records"].schema.zeros(6)
        rows["time"] = np.arange(6) * 10
        rows["endtime"] = rows["time"] + 5
        rows["channel"] = np.arange(6) % self.options.n_channels
        rows["data"] = 1
        yield sd.Chunk(0, 30, rows[:3])
        yield sd.Chunk(30, 60, rows[3:])


class Total(sd.Schema):
    abstract = True
    total: sd.f32 = sd.field("sum of the waveform", unit="ADC")


class Summed(sd.Plugin):
    """All fields of its input (whatever the provider declares), plus one."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        records: sd.Schema  # any fields

    class Outputs(sd.Outputs):
        summed: Total = sd.output(kind="records", fields_from="records")

    def compute(self, records):
        out = np.zeros(len(records), self.outputs["summed"].dtype)
        for f in records.dtype.names:
            out[f] = records[f]
        out["total"] = records["data"].sum(axis=1)
        return out


class Brief(sd.Plugin):
    """A subset of its input's fields plus a new one, from output_schemas(options, inputs)."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        summed: sd.Schema

    class Outputs(sd.Outputs):
        brief: sd.Schema = sd.output(kind="records")

    @classmethod
    def output_schemas(cls, options, inputs):
        return {
            "brief": inputs["summed"].derive(
                "Brief", fields=["time", "endtime", "total"], add={"doubled": sd.f64}
            )
        }

    def compute(self, records):
        return {
            "time": records["time"],
            "endtime": records["endtime"],
            "total": records["total"],
            "doubled": 2 * records["total"],
        }


PLUGINS = [Records, Summed, Brief]


def test_an_option_dependent_schema_is_resolved_when_the_context_is_built():
    ctx = sd.Context(None, plugins=PLUGINS, config={"n_samples": 3})
    assert ctx.registry.dtype("records")["data"].shape == (3,)
    assert ctx.registry.dtype("summed").names == ("time", "endtime", "channel", "data", "total")
    rows = ctx.get_array("r", "brief")
    assert rows.dtype.names == ("time", "endtime", "total", "doubled")
    assert (rows["total"] == 3).all() and (rows["doubled"] == 6).all()
    other = ctx.new_context(config={"n_samples": 5})
    assert other.registry.dtype("summed")["data"].shape == (5,)
    assert (other.get_array("r", "brief")["total"] == 5).all()


def test_the_resolved_dtype_enters_the_lineage():
    ctx = sd.Context(None, plugins=PLUGINS)
    lineage = ctx.lineage("summed")
    assert ["data", "<i2", [4]] in lineage["dtype"] and ["total", "<f4", []] in lineage["dtype"]
    other = ctx.new_context(config={"n_samples": 5})
    assert other.lineage("summed")["dtype"] != lineage["dtype"]
    assert other.key_for("r", "summed") != ctx.key_for("r", "summed")


def _upstream(extra_field: bool) -> type[sd.Plugin]:
    """The same plugin, version and options, with or without one more field."""

    class Wide(RecordBase):
        data: sd.array(sd.i16, 2)
        if extra_field:
            baseline: sd.f32 = sd.field("baseline", unit="ADC")

    class Records(sd.Plugin):
        version = "0.1.0"

        class Outputs(sd.Outputs):
            records: Wide

        def source(self, run_id):
            rows = Wide.zeros(2)
            rows["time"], rows["endtime"], rows["data"] = [0, 10], [5, 15], 1
            yield sd.Chunk(0, 20, rows)

    return Records


def test_a_derived_schema_follows_a_change_of_its_inputs_schema():
    before = sd.Context(None, plugins=[_upstream(False), Summed])
    after = sd.Context(None, plugins=[_upstream(True), Summed])
    assert "baseline" not in before.registry.dtype("summed").names
    assert after.registry.dtype("summed").names == (
        "time", "endtime", "channel", "data", "baseline", "total"
    )  # fmt: skip
    assert before.lineage("records") == after.lineage("records")  # a declared schema: as before
    assert before.key_for("r", "summed") != after.key_for("r", "summed")
    assert "baseline" in after.get_array("r", "summed").dtype.names


def test_consumers_are_checked_against_resolved_schemas():
    class Wants(sd.Schema):
        time: sd.i64
        endtime: sd.i64
        data: sd.array(sd.i16, 4)

    class Reader(sd.Plugin):
        version = "0.1.0"

        class Inputs(sd.Inputs):
            records: Wants

        class Outputs(sd.Outputs):
            read: Wants = sd.output(kind="records")

        def compute(self, records):
            return records

    sd.Context(None, plugins=[Records, Reader])  # n_samples = 4 (default): fits
    with pytest.raises(
        sd.RegistrationError,
        match=r"plugin Reader expects field 'data' of input 'records' as \('<i2', \(4,\)\), "
        r"but its provider Records declares \('<i2', \(3,\)\)",
    ):
        sd.Context(None, plugins=[Records, Reader], config={"n_samples": 3})


def test_misused_schema_hooks_name_plugin_and_output():
    def plugin(hook, base=sd.Schema):
        class Bad(sd.Plugin):
            version = "0.1.0"

            class Inputs(sd.Inputs):
                records: sd.Schema

            class Outputs(sd.Outputs):
                bad: base = sd.output(kind="records")

            output_schemas = classmethod(hook)

            def compute(self, records):
                return records

        return [Records, Bad]

    cases = [
        (lambda cls, o, i: {"other": i["records"]}, r"Bad: output_schemas\(\) returned schemas "
         r"for \['other'\], which are not outputs"),
        (lambda cls, o, i: {}, r"Bad: output_schemas\(\) gave no schema for output 'bad'"),
        (lambda cls, o, i: 3, r"Bad: output_schemas\(\) must return \{output: sd.Schema"),
        (lambda cls, o, i: i["nope"], r"Bad: output_schemas\(\) failed: KeyError: 'nope'"),
        (lambda cls, o, i: i["records"].derive(fields=["area"]), r"no field\(s\) 'area'"),
    ]  # fmt: skip
    for hook, message in cases:
        with pytest.raises(sd.RegistrationError, match=message):
            sd.Context(None, plugins=plugin(hook))
    with pytest.raises(
        sd.RegistrationError,
        match=r"Bad: the schema resolved for output 'bad' \(DerivedRecord\) lacks field "
        r"'total' of its declared schema Total",
    ):
        sd.Context(None, plugins=plugin(lambda cls, o, i: i["records"].derive(), Total))


def test_declaration_errors_of_resolved_schemas_name_the_plugin():
    with pytest.raises(sd.PluginDeclarationError, match=r"Loose: output 'loose' uses abstract"):

        class Loose(sd.Plugin):
            class Inputs(sd.Inputs):
                records: sd.Schema

            class Outputs(sd.Outputs):
                loose: Total

            def compute(self, records):
                return records

    with pytest.raises(
        sd.PluginDeclarationError,
        match=r"Elsewhere: output 'x' takes fields_from='peaks', which is not an input",
    ):

        class Elsewhere(sd.Plugin):
            class Inputs(sd.Inputs):
                records: sd.Schema

            class Outputs(sd.Outputs):
                x: Total = sd.output(fields_from="peaks")

            def compute(self, records):
                return records


def test_a_resolved_output_spec_pickles_for_process_pools():
    ctx = sd.Context(None, plugins=PLUGINS, config={"n_samples": 7})
    spec = ctx.registry.output_spec("summed")
    back = pickle.loads(pickle.dumps(spec))
    assert back.dtype == spec.dtype and back.schema.field_docs() == spec.schema.field_docs()
    assert (back.name, back.kind, back.resolved_at_build) == ("summed", "records", True)


class ParallelBrief(Brief):
    parallel = "process"


def test_resolved_schemas_in_a_process_pool_and_through_the_store(tmp_path):
    plugins = [Records, Summed, ParallelBrief]
    ctx = sd.Context(str(tmp_path / "data"), plugins=plugins, config={"n_samples": 3})
    rows = ctx.get_array("r", "brief")
    assert (rows["doubled"] == 6).all()
    assert ctx.is_stored("r", "summed") and ctx.is_stored("r", "brief")
    key = ctx.key_for("r", "summed")
    group = zarr.open_group(tmp_path / "data" / "r" / f"summed-{key.lineage_hash}", mode="r")
    assert group["total"].attrs["description"] == "sum of the waveform"
    assert group["data"].shape == (6, 3)
    again = sd.Context(str(tmp_path / "data"), plugins=plugins, config={"n_samples": 3})
    plan = again.plan("r", "brief")
    assert all(step.action == "load" for step in plan.steps.values() if step.needed)
    np.testing.assert_array_equal(again.get_array("r", "brief"), rows)
