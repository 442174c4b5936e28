"""strax idioms: titled dtypes, dicts of columns, point-like rows, text fields."""

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.chunk import Chunk, check_chunk, split

# a strax-style dtype: (("comment", "name"), type)
STRAX_PEAK = np.dtype(
    [
        (("Start time since unix epoch [ns]", "time"), "<i8"),
        (("Exclusive end time since unix epoch [ns]", "endtime"), "<i8"),
        (("Peak integral [PE]", "area"), "<f4"),
        ("n_hits", "<i4"),  # untitled
        (("Waveform [PE/sample]", "data"), "<f4", (5,)),
        (("Veto that fired", "veto_type"), "<U12"),
    ]
)


def test_a_titled_strax_dtype_round_trips_through_a_schema():
    Peak = sd.Schema.from_dtype(STRAX_PEAK, "StraxPeak")
    assert Peak.dtype.names == STRAX_PEAK.names
    assert Peak.dtype == np.dtype(
        [("time", "<i8"), ("endtime", "<i8"), ("area", "<f4"), ("n_hits", "<i4"),
         ("data", "<f4", (5,)), ("veto_type", "<U12")]
    )  # fmt: skip
    docs = Peak.field_docs()
    assert docs["area"]["description"] == "Peak integral [PE]"
    assert docs["n_hits"]["description"] == ""
    assert Peak.titled_dtype() == STRAX_PEAK
    with pytest.raises(sd.SchemaError, match=r"field 'when' of Bad has unsupported type"):
        sd.Schema.from_dtype([("time", "<i8"), ("endtime", "<i8"), ("when", "M8[ns]")], "Bad")


def test_derive_keeps_replaces_and_adds_fields():
    Peak = sd.Schema.from_dtype(STRAX_PEAK, "StraxPeak")
    Short = Peak.derive("Short", exclude=["data", "veto_type"], add={"data": sd.array(sd.i16, 2)})
    assert Short.dtype.names == ("time", "endtime", "area", "n_hits", "data")
    assert Short.dtype["data"].shape == (2,)
    with pytest.raises(sd.SchemaError, match=r"field 'area' is float32 here but float64"):

        class Wide(sd.Schema):
            abstract = True
            area: sd.f64

        Peak.derive(add=Wide)
    with pytest.raises(sd.SchemaError, match=r"Sub .*has no 'time' field"):
        Peak.derive("Sub", fields=["area"])


class Source(sd.Plugin):
    """Allocates its rows with the strax dtype (titles), as strax kernels do."""

    version = "0.1.0"

    class Outputs(sd.Outputs):
        peaks: sd.Schema.from_dtype(STRAX_PEAK, "StraxPeak")

    class Options(sd.Options):
        mode: str = sd.option("titled", description="what source returns (tests)")

    def source(self, run_id):
        rows = np.zeros(3, STRAX_PEAK)
        rows["time"] = [0, 10, 20]
        rows["endtime"] = rows["time"] + 5
        rows["area"] = [1, 2, 3]
        rows["veto_type"] = ["none", "he_veto", "none"]
        if self.options.mode == "other":
            rows = np.zeros(3, [("time", "<i8"), ("endtime", "<i8"), ("area", "<f8")])
            rows["time"], rows["endtime"] = [0, 10, 20], [5, 15, 25]
        yield Chunk(0, 30, rows)


def test_rows_with_a_titled_dtype_of_the_same_layout_are_accepted():
    ctx = sd.Context(None, plugins=[Source])
    rows = ctx.get_array("r", "peaks")
    assert rows.dtype == ctx.registry.dtype("peaks") and list(rows["area"]) == [1, 2, 3]


def test_a_dtype_mismatch_says_field_by_field_what_differs():
    ctx = sd.Context(None, plugins=[Source], config={"mode": "other"})
    with pytest.raises(
        sd.PluginGaveWrongOutput,
        match=r"plugin Source, output 'peaks': rows have dtype other than the declared one: "
        r"missing field\(s\) 'n_hits', 'data', 'veto_type'; field 'area' is float64, "
        r"expected float32",
    ):
        ctx.get_array("r", "peaks")


class Ticks(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    n: sd.i32


class Counted(sd.Plugin):
    """A single-output plugin returning a dict of columns (a strax idiom)."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        peaks: sd.Schema

    class Outputs(sd.Outputs):
        counted: Ticks = sd.output(kind="peaks")

    class Options(sd.Options):
        columns: str = sd.option("all", description="which columns compute returns (tests)")

    def compute(self, peaks):
        cols = {"time": peaks["time"], "endtime": peaks["endtime"], "n": 7}  # scalars broadcast
        if self.options.columns == "missing":
            del cols["n"]
        elif self.options.columns == "uneven":
            cols["n"] = [1]
        elif self.options.columns == "unknown":
            cols["area2"] = peaks["area"]
        return cols


def test_a_dict_of_columns_from_a_single_output_plugin_is_its_rows():
    ctx = sd.Context(None, plugins=[Source, Counted])
    rows = ctx.get_array("r", "counted")
    assert rows.dtype == Ticks.dtype and list(rows["n"]) == [7, 7, 7]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ("missing", r"compute returned a dict that lacks field\(s\) 'n'; return the rows, or "
         r"a dict of columns with exactly the fields time, endtime, n"),
        ("uneven", r"the columns returned have different lengths \(time: 3, endtime: 3, n: 1\)"),
        ("unknown", r"plugin Counted returned outputs \['area2', 'endtime', 'n', 'time'\], "
         r"declared \['counted'\] \(or return a dict \{field: column\} of the fields "
         r"time, endtime, n\)"),
    ],
)  # fmt: skip
def test_a_wrong_dict_of_columns_says_what_was_expected(columns, message):
    ctx = sd.Context(None, plugins=[Source, Counted], config={"columns": columns})
    with pytest.raises(sd.PluginGaveWrongOutput, match=message):
        ctx.get_array("r", "counted")


# ---------------------------------------------------------------- point-like rows


def _points(times, ends=None):
    rows = Ticks.zeros(len(times))
    rows["time"] = times
    rows["endtime"] = times if ends is None else ends
    return rows


def test_point_like_rows_are_allowed_and_belong_to_the_chunk_holding_their_time():
    check_chunk(Chunk(0, 10, _points([0, 3, 3, 9])), where="points")
    with pytest.raises(sd.ChunkLawViolation, match=r"row 1 \(time 10, endtime 10\) is at the "
                       r"chunk end 10; a zero-duration row at a boundary belongs to the chunk "
                       r"starting there"):  # fmt: skip
        check_chunk(Chunk(0, 10, _points([5, 10])), where="points")
    check_chunk(Chunk(10, 20, _points([10])), where="points")  # ... the next chunk's
    with pytest.raises(sd.ChunkLawViolation, match="row 0 has negative duration"):
        check_chunk(Chunk(0, 10, _points([5], [4])), where="points")
    with pytest.raises(sd.ChunkLawViolation, match="is at the chunk end"):
        check_chunk(Chunk(5, 5, _points([5])), where="empty chunk")  # [t, t) holds no row
    left, right = split(Chunk(0, 20, _points([3, 10, 10, 15])), 10)
    assert list(left.data["time"]) == [3] and list(right.data["time"]) == [10, 10, 15]


class Points(sd.Plugin):
    version = "0.1.0"

    class Outputs(sd.Outputs):
        points: Ticks

    def source(self, run_id):
        yield Chunk(0, 10, _points([0, 5, 9]))
        yield Chunk(10, 20, _points([10, 10, 19]))  # two points at the boundary: this chunk's


class PointCount(sd.Plugin):
    version = "0.1.0"

    class Inputs(sd.Inputs):
        points: Ticks

    class Outputs(sd.Outputs):
        counted: Ticks = sd.output(kind="points")

    def compute(self, points):
        return {"time": points["time"], "endtime": points["endtime"], "n": 1}


def test_point_like_rows_through_a_pipeline_and_the_store(tmp_path):
    ctx = sd.Context(str(tmp_path / "data"), plugins=[Points, PointCount])
    counted = ctx.get_array("r", "counted")
    assert list(counted["time"]) == [0, 5, 9, 10, 10, 19]
    assert (counted["endtime"] == counted["time"]).all()
    assert ctx.is_stored("r", "points")
    chunks = list(ctx.iter_chunks("r", "points"))
    assert [(c.start, c.end, len(c)) for c in chunks] == [(0, 10, 3), (10, 20, 3)]
    # a time range selects rows whose time lies in [t0, t1): a point row at t1 is outside,
    # computed (a fresh context, storing nothing) or loaded alike
    live = sd.Context(None, plugins=[Points, PointCount])
    for source in (ctx, live):
        rows = source.get_array("r", "points", time_range=(5, 10))
        assert list(rows["time"]) == [5, 9], source
        assert list(source.get_array("r", "points", time_range=(10, 10))["time"]) == []


# ---------------------------------------------------------------- text fields in selections


def test_selections_on_text_fields():
    ctx = sd.Context(None, plugins=[Source])
    rows = ctx.get_array("r", "peaks", selection='veto_type == "he_veto"')
    assert list(rows["time"]) == [10]
    rows = ctx.get_array("r", "peaks", selection="(veto_type != 'he_veto') & (area > 2)")
    assert list(rows["time"]) == [20]
    with pytest.raises(ValueError, match=r"'x' is text, but the value compared with it is"):
        ctx.get_array("r", "peaks", selection="area == 'x'")
    df = ctx.get_df("r", "peaks")
    assert list(df["veto_type"]) == ["none", "he_veto", "none"]
