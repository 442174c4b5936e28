"""Merge-only plugins with a compute of their own: merge same-kind inputs, derive fields."""

import numpy as np
import pytest

import strax_decl as sd


class Event(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    s1: sd.f32 = sd.field("S1 area", unit="PE")


class EventS2(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    s2: sd.f32 = sd.field("S2 area", unit="PE")


class Events(sd.Plugin):
    version = "0.1.0"

    class Outputs(sd.Outputs):
        events: Event

    def source(self, run_id):
        rows = Event.zeros(4)
        rows["time"] = np.arange(4) * 100
        rows["endtime"] = rows["time"] + 50
        rows["s1"] = [1, 2, 4, 8]
        yield sd.Chunk(0, 200, rows[:2])
        yield sd.Chunk(200, 400, rows[2:])


class S2s(sd.Plugin):
    version = "0.1.0"

    class Inputs(sd.Inputs):
        events: Event

    class Outputs(sd.Outputs):
        event_s2: EventS2 = sd.output(kind="events")

    def compute(self, events):
        out = EventS2.zeros(len(events))
        out["time"], out["endtime"] = events["time"], events["endtime"]
        out["s2"] = 10 * events["s1"]
        return out


class Ratio(sd.Schema):
    abstract = True
    s2_over_s1: sd.f32 = sd.field("S2 / S1")


class EventInfo(sd.MergeOnlyPlugin):
    version = "0.1.0"
    provides = "event_info"
    kind = "events"
    extra_fields = Ratio

    class Inputs(sd.Inputs):
        events: Event
        event_s2: EventS2

    def compute(self, events):
        events["s2_over_s1"] = events["s2"] / events["s1"]
        return events


def test_a_merge_only_plugin_with_compute_merges_then_derives(tmp_path):
    assert EventInfo.outputs["event_info"].dtype.names == (
        "time", "endtime", "s1", "s2", "s2_over_s1"
    )  # fmt: skip
    assert EventInfo.outputs["event_info"].save == sd.SaveWhen.ALWAYS  # it holds new fields
    ctx = sd.Context(str(tmp_path / "data"), plugins=[Events, S2s, EventInfo])
    rows = ctx.get_array("r", "event_info")
    assert list(rows["s2"]) == [10, 20, 40, 80] and (rows["s2_over_s1"] == 10).all()
    assert ctx.is_stored("r", "event_info")


def test_merge_only_compute_misuse_names_the_plugin():
    with pytest.raises(
        sd.PluginDeclarationError,
        match=r"NoFields: a MergeOnlyPlugin with a compute of its own derives fields: declare",
    ):

        class NoFields(sd.MergeOnlyPlugin):
            class Inputs(sd.Inputs):
                events: Event

            def compute(self, events):
                return events

    with pytest.raises(sd.PluginDeclarationError, match=r"NoCompute: extra_fields are declared, "
                       r"but no compute fills them in"):  # fmt: skip

        class NoCompute(sd.MergeOnlyPlugin):
            extra_fields = Ratio

            class Inputs(sd.Inputs):
                events: Event

    class Clash(sd.Schema):
        abstract = True
        s1: sd.f64

    with pytest.raises(sd.PluginDeclarationError, match=r"Clashing: extra_fields: .*field 's1'"):

        class Clashing(sd.MergeOnlyPlugin):
            extra_fields = Clash

            class Inputs(sd.Inputs):
                events: Event

            def compute(self, events):
                return events

    class WrongArgs(sd.MergeOnlyPlugin):
        extra_fields = Ratio
        kind = "events"

        class Inputs(sd.Inputs):
            events: Event

        def compute(self, peaks):
            return peaks

    ctx = sd.Context(None, plugins=[Events, WrongArgs])
    with pytest.raises(sd.PluginDeclarationError, match=r"WrongArgs: compute takes \['peaks'\]"):
        ctx.get_array("r", "wrong_args")
