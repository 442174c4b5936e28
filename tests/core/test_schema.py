"""Row schemas become numpy dtypes; missing time fields fail at class definition."""

import numpy as np
import pytest

import strax_decl as sd


def test_schema_becomes_structured_dtype_with_subarray():
    class Rec(sd.Schema):
        time: sd.i64 = sd.field("start time", unit="ns")
        length: sd.i32
        dt: sd.i16
        data: sd.array(sd.i16, 110)

    assert Rec.dtype == np.dtype(
        [("time", "<i8"), ("length", "<i4"), ("dt", "<i2"), ("data", "<i2", (110,))]
    )
    assert Rec.field_docs()["time"] == {"description": "start time", "unit": "ns"}
    assert Rec.field_docs()["length"] == {"description": "", "unit": None}
    assert len(Rec.zeros(3)) == 3


def test_endtime_schema_and_inheritance():
    class Interval(sd.Schema):
        abstract = True
        time: sd.i64
        endtime: sd.i64

    class Peak(Interval):
        area: sd.f32

    assert Peak.dtype.names == ("time", "endtime", "area")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"endtime": "sd.i64"}, "has no 'time' field"),
        ({"time": "sd.i64", "length": "sd.i32"}, "neither an 'endtime'"),
        ({"time": "sd.f64", "endtime": "sd.i64"}, "expected a scalar integer"),
    ],
)
def test_missing_time_fields_name_the_schema(fields, message):
    body = "\n".join(f"    {k}: {v}" for k, v in fields.items())
    source = f"class BadRows(sd.Schema):\n{body}\n"
    with pytest.raises(sd.SchemaError, match=rf"BadRows.*{message}"):
        exec(source, {"sd": sd})


def test_field_without_numpy_type_is_rejected():
    with pytest.raises(sd.SchemaError, match=r"Untyped.*'area'"):

        class Untyped(sd.Schema):
            time: sd.i64
            endtime: sd.i64
            area: float


def test_bad_array_dimensions():
    with pytest.raises(sd.SchemaError, match=r"positive integer"):
        sd.array(sd.i16, 0)
