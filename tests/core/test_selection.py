"""Row selections and column projections: strings parsed safely, callables, keep/drop columns."""

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.selection import make_mask, project
from strax_decl.testing import TOY_PLUGINS

ROWS = np.zeros(6, dtype=[("time", "i8"), ("area", "f4"), ("flags", "i4"), ("data", "i2", (3,))])
ROWS["time"] = np.arange(6) * 10
ROWS["area"] = [5, 50, 150, 250, 15, np.nan]
ROWS["flags"] = [0, 1, 2, 3, 4, 5]


def kept(selection):
    return ROWS["time"][make_mask(selection, ROWS.dtype, "rows")(ROWS)].tolist()


@pytest.mark.parametrize(
    ("selection", "times"),
    [
        ("area > 100", [20, 30]),
        ("(area > 10) & (area < 200)", [10, 20, 40]),
        ("area > 10 and area < 200", [10, 20, 40]),
        ("10 < area < 200", [10, 20, 40]),
        ("(area < 10) | (flags >= 4)", [0, 40, 50]),
        ("not (area > 10)", [0, 50]),
        ("~(area > 10)", [0, 50]),
        ("(flags & 1) == 1", [10, 30, 50]),
        ("~isfinite(area)", [50]),
        ("log10(area) >= 2", [20, 30]),
        ("abs(area - 100) < 60", [10, 20]),
        ("time % 20 == 0", [0, 20, 40]),
        (["area > 10", "flags != 2"], [10, 30, 40]),
        ([], [0, 10, 20, 30, 40, 50]),
        (lambda rows: rows["flags"] % 2 == 0, [0, 20, 40]),
        ("flags & 1 == 1", [10, 30, 50]),  # a bit test: (flags & 1) == 1, as Python reads it
        ("(area > 100 and\n (flags ^ 1) == 2)", [30]),
        ("(flags >\n (1 & flags) < 8)", [20, 30, 40, 50]),  # parenthesised on another line
        ("1 > 0", [0, 10, 20, 30, 40, 50]),
        ("(flags > 3) == False", [0, 10, 20, 30]),
        ("time ** 2 > 1e3", [40, 50]),
    ],
)
def test_selections_keep_the_rows_numpy_would(selection, times):
    assert kept(selection) == times


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        ("area > 1 & flags < 3", r"bind tighter than comparisons.*\(a > 1\) & \(b < 2\)"),
        ("area > 1 ^ flags < 3", r"'&', '\|' and '\^' bind tighter"),
        ("éé > abs(flags) & flags <(2)", r"bind tighter"),  # columns count characters
        ("time < 9**9**9", r"the exponent in '9 \*\* 9 \*\* 9' must be a number from -64"),
        ("-" * 5000 + "area", r"nested too deeply"),
        ("~area > 0", r"TypeError: ufunc 'invert' not supported"),
        ("time + 99999999999999999999 > 0", r"OverflowError: Python int too large"),
        ("arae > 1", r"no field 'arae'; the fields are \['area', 'data', 'flags', 'time'\]"),
        ("__import__('os').system('true')", r"only these functions are allowed"),
        ("area.real > 1", r"is not allowed \(Attribute\)"),
        ("area.max() > 1", r"only these functions are allowed: \['abs', "),
        ("area > 'x'", r"'x' is text, but the value compared with it is float32"),
        ("area > 'x' * 9", r"only numbers are allowed as constants \(and strings compared"),
        ("area in (1, 2)", r"comparison In is not allowed"),
        ("area >", r"is not an expression"),
        ("data > 1", r"gave bool values of shape \(6, 3\), not one True/False per row"),
        ("area + 1", r"gave float32 values"),
    ],
)
def test_bad_selections_say_what_is_wrong(selection, message):
    with pytest.raises(ValueError, match=message):
        kept(selection)
    with pytest.raises(TypeError, match="a string, a list of strings or a callable"):
        kept(5)


def test_projections_keep_field_order_and_name_unknown_fields():
    assert project(ROWS.dtype, None, None, "rows") is None
    assert project(ROWS.dtype, ["area", "time"], None, "rows") == ["time", "area"]
    assert project(ROWS.dtype, None, "data", "rows") == ["time", "area", "flags"]
    with pytest.raises(KeyError, match=r"rows has no field\(s\) \['width'\]"):
        project(ROWS.dtype, ["width"], None, "rows")
    with pytest.raises(ValueError, match="not both"):
        project(ROWS.dtype, ["area"], ["time"], "rows")


@pytest.fixture
def ctx(tmp_path):
    return sd.Context(storage=str(tmp_path / "store"), plugins=TOY_PLUGINS)


def test_a_selection_filters_what_comes_back_and_stores_the_whole_data_type(ctx):
    chosen = ctx.get_array("run_1", "peaks", selection="area > 2100", keep_columns=["area", "time"])
    assert chosen.dtype.names == ("time", "area") and chosen.flags.c_contiguous
    assert ctx.plan("run_1", "peaks").steps["peaks"].action == "load"  # stored whole
    full = ctx.get_array("run_1", "peaks")
    expected = full[full["area"] > 2100]
    assert 0 < len(chosen) < len(full)
    np.testing.assert_array_equal(chosen["time"], expected["time"])
    np.testing.assert_array_equal(chosen["area"], expected["area"])
    bounds = [(c.start, c.end) for c in ctx.iter_chunks("run_1", "peaks", selection="area < 0")]
    assert bounds == [(c.start, c.end) for c in ctx.iter_chunks("run_1", "peaks")]
    none = ctx.get_array("run_1", "peaks", selection="area < 0", drop_columns=["n_records"])
    assert len(none) == 0 and none.dtype.names == ("time", "endtime", "area")


def test_selections_apply_per_run_and_fail_before_anything_runs(ctx):
    both = ctx.get_array(["run_1", "run_2"], "peaks", selection="area > 2100", keep_columns="area")
    assert both.dtype.names == ("area", "run_id") and (both["area"] > 1000).all()
    assert set(both["run_id"]) == {"run_1", "run_2"}
    with pytest.raises(ValueError, match=r"selection 'width > 1' on peaks of run 'run_3'"):
        ctx.get_array("run_3", "peaks", selection="width > 1")
    assert not ctx.is_stored("run_3", "records")  # refused before computing anything
    df = ctx.get_df("run_1", "peaks", selection="area > 2100", drop_columns=["endtime"])
    assert list(df.columns) == ["time", "area", "n_records"] and (df["area"] > 1000).all()


def test_run_id_can_be_kept_or_dropped_like_any_field(ctx):
    runs = ["run_1", "run_2"]
    assert ctx.get_array(runs, "peaks", keep_columns=["run_id", "area"]).dtype.names == (
        "area",
        "run_id",
    )
    only = ctx.get_array(runs, "peaks", keep_columns="run_id")
    assert only.dtype.names == ("run_id",) and len(only) == 160
    dropped = ctx.get_array(runs, "peaks", drop_columns=["run_id", "endtime"])
    assert dropped.dtype.names == ("time", "area", "n_records")
    with pytest.raises(TypeError, match="a set has no order"):
        ctx.get_array({"run_1", "run_2"}, "peaks")
    with pytest.raises(ValueError, match="keep_columns is empty"):
        ctx.get_array("run_1", "peaks", keep_columns=[])
