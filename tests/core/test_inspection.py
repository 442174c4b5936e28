"""Lookup and inspection from Python, on real stores in tmp_path: data_info, search_field,
show_config().to_df(), compare_lineage, get_source, forbid_creation_of, seconds_range,
time_within, accumulate, to_xarray, copy; and the getters' argument checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.testing import PLUGINS
from strax_storage import DataExistsError, DataNotFound, open_store


@pytest.fixture
def ctx(tmp_path):
    return sd.Context(str(tmp_path / "a"), plugins=PLUGINS)


def test_data_info_and_search_field(ctx):
    info = ctx.data_info("peaks")  # registered, not stored
    assert list(info.columns) == ["field", "dtype", "unit", "description"]
    row = info.set_index("field").loc["area"]
    assert row["dtype"] == "float32" and row["unit"] == "ADC" and row["description"] == "integral"
    records = ctx.data_info("records").set_index("field")
    assert records.loc["data", "dtype"].startswith("int16[")  # a sub-array shows its shape
    found = ctx.search_field("*AREA*")  # fnmatch, case-insensitive by default
    assert set(found["field"]) == {"area", "mean_area"}
    assert ("area", "peaks", "Peaks") in set(
        zip(found.field, found.data_type, found.plugin, strict=True)
    )
    assert ctx.search_field("nothing_like_this*").empty
    with pytest.raises(KeyError, match="did you mean 'peaks'"):
        ctx.data_info("peeks")


def test_show_config_to_df(ctx):
    df = ctx.show_config().to_df()
    assert list(df.columns) == ["option", "plugins", "type", "default", "current", "description"]
    assert df.set_index("option").loc["group", "current"] == "5"
    assert "group" in str(ctx.show_config())  # the printed table is kept


def test_compare_lineage_contexts_and_stored(ctx):
    other = ctx.new_context(config={"group": 6, "seed": 3})
    cmp = ctx.compare_lineage(other, "peak_basics")
    assert cmp and not cmp.same
    assert "inputs.peaks.options.group: 5 -> 6" in cmp.options
    assert "inputs.peaks.inputs.records.options.seed: 0 -> 3" in cmp.options
    assert "options:" in str(cmp) and cmp.left_hash != cmp.right_hash
    assert ctx.compare_lineage(ctx, "peaks").same
    other.make("r1", "peaks")  # stored under the other lineage, in the same store
    stored = other.key_for("r1", "peaks")
    by_key = ctx.compare_lineage(stored, "peaks")
    by_prefix = ctx.compare_lineage(stored.lineage_hash[:6], "peaks", "r1")
    assert (
        by_key.differences
        == by_prefix.differences
        == cmp.differences[:0] + [d.replace("inputs.peaks.", "", 1) for d in cmp.differences]
    )
    with pytest.raises(DataNotFound):
        ctx.compare_lineage("zzzzzz", "peaks")


def test_get_source_and_forbid_creation_of(ctx):
    assert ctx.get_source("r1", "peak_basics") == {}
    with pytest.raises(sd.CreationForbidden, match="records") as e:
        ctx.get_array("r1", "peaks", forbid_creation_of=["records"])
    assert e.value.data_types == ["records"]
    assert not ctx.is_stored("r1", "records")  # refused before anything ran
    with pytest.raises(sd.CreationForbidden):
        ctx.make("r1", "peaks", forbid_creation_of="records")
    ctx.make("r1", "records")
    source = ctx.get_source("r1", "peak_basics")
    assert list(source) == ["records"] and source["records"].n_rows == 400
    # records are stored: nothing forbidden is computed
    assert len(ctx.get_array("r1", "peaks", forbid_creation_of=["records"])) == 80
    with pytest.raises(KeyError, match="did you mean 'records'"):
        ctx.get_array("r1", "peaks", forbid_creation_of=["recrds"])


def test_seconds_range_and_time_within(ctx):
    with pytest.raises(ValueError, match="seconds_range needs the run's start"):
        ctx.get_array("r1", "peaks", seconds_range=(0, 1))  # nothing stored, no document
    peaks = ctx.get_array("r1", "peaks")
    # without a run document: relative to the start of the stored data loaded
    part = ctx.get_array("r1", "peaks", seconds_range=(0, 20e-6))
    assert len(part) and (part["endtime"] <= 20_000).all() and len(part) < len(peaks)
    # with a run document: relative to its start
    ctx.define_run("r2", start=1_000_000_000, end=2_000_000_000)
    ctx.make("r2", "peaks")
    r2 = ctx.get_array("r2", "peaks")
    t0 = int(r2["time"][10])
    s0 = (t0 - 1_000_000_000) / 1e9
    inside = ctx.get_array("r2", "peaks", seconds_range=(s0, s0 + 1e-5))
    assert inside["time"].min() >= t0 and len(inside) > 0
    row = peaks[5]
    within = ctx.get_array("r1", "peaks", time_within=row)
    assert len(within) == 1 and within["time"][0] == row["time"]
    assert len(ctx.get_array("r1", "peaks", time_within=ctx.get_df("r1", "peaks").iloc[5])) == 1
    assert len(ctx.get_array("r1", "records", time_within=row)) > 0  # another data type
    with pytest.raises(ValueError, match="at most one"):
        ctx.get_array("r1", "peaks", time_range=(0, 10), seconds_range=(0, 1))


@pytest.mark.parametrize(
    ("time_range", "error", "match"),
    [
        ((5.0, 10), TypeError, "time_range bounds must be integers"),
        ((10, 5), ValueError, "time_range is reversed"),
        ((True, 5), TypeError, "time_range"),
        ([1, 2, 3], TypeError, "time_range must be a"),
    ],
)
def test_time_range_checked(ctx, time_range, error, match):
    with pytest.raises(error, match=match):
        ctx.get_array("r1", "peaks", time_range=time_range)


def test_run_ids_are_strings_and_processor_checked(ctx):
    with pytest.raises(TypeError, match=r"run ids are strings.*.024399."):
        ctx.get_array(24399, "peaks")
    with pytest.raises(TypeError, match="run ids are strings"):
        ctx.get_array((24399,), "peaks")
    with pytest.raises(ValueError, match=r"processor must be one of.*did you mean .serial."):
        ctx.get_array("r1", "peaks", processor="serail")
    with pytest.raises(ValueError, match="processor must be one of"):
        ctx.make("r1", "peaks", processor="serail")
    with pytest.raises(KeyError, match="peeks"):
        ctx.get_array("r1", "peeks")
    assert not ctx.is_stored("r1", "records")  # every refusal came before running


def test_accumulate_streams(ctx):
    peaks = ctx.get_array("r1", "peaks")
    acc = ctx.accumulate("r1", "peaks", ["area", "n_records"])
    assert acc["area"] == pytest.approx(peaks["area"].sum())
    assert acc["n_records"] == peaks["n_records"].sum()
    assert acc["n_rows"] == len(peaks) and acc["n_chunks"] >= 1 and acc["start"] == 0
    big = ctx.accumulate("r1", "peaks", "area", selection="area > 1000")
    assert big["n_rows"] == (peaks["area"] > 1000).sum()
    seen: list[int] = []

    def per_chunk(rows: np.ndarray) -> dict[str, np.ndarray]:
        seen.append(len(rows))
        return {"double": 2 * rows["area"], "count": np.ones(len(rows))}

    out = ctx.accumulate("r1", "peaks", function=per_chunk)
    assert out["double"] == pytest.approx(2 * peaks["area"].sum()) and out["count"] == len(peaks)
    assert len(seen) == out["n_chunks"] > 1  # one call per chunk: never the whole data type
    everything = ctx.accumulate("r1", "records")  # default: every numeric field
    assert everything["data"].shape == ctx.get_array("r1", "records")["data"].shape[1:]


@pytest.mark.parametrize("where", ["local", "file", "memory"])
def test_to_xarray(tmp_path, where):
    location = {
        "local": str(tmp_path / "x"),
        "file": f"file://{tmp_path / 'x'}",
        "memory": f"memory://xr-{tmp_path.name}",
    }[where]
    ctx = sd.Context(location, plugins=PLUGINS)
    with pytest.raises(DataNotFound, match="make it first"):
        ctx.to_xarray("r1", "records")
    arr = ctx.get_array("r1", "records")
    ds = ctx.to_xarray("r1", "records")
    assert "time" in ds.coords and ds["time"].dims == ("row",)
    assert ds["data"].dims[0] == "row" and len(ds["data"].dims) == 2
    assert ds["area"].attrs["unit"] == ds["area"].attrs["units"] == "ADC"
    assert ds["area"].attrs["description"] == "integral"
    assert ds.attrs["data_type"] == "records" and ds.attrs["plugin"] == "ToyRecords"
    assert json.loads(ds.attrs["lineage"])["plugin"] == "ToyRecords"
    np.testing.assert_array_equal(ds["time"].values, arr["time"])
    np.testing.assert_array_equal(ds["data"].values, arr["data"])
    assert list(ctx.to_xarray("r1", "records", fields=["area"]).data_vars) == ["area"]


def test_copy_keeps_lineage_and_checks(tmp_path, ctx):
    with pytest.raises(DataNotFound, match="nothing to copy"):
        ctx.copy("r1", "peaks", to=str(tmp_path / "b"))
    ctx.define_run("r1", start=0, end=100_000, mode="toy")
    peaks = ctx.get_array("r1", "peaks")
    info = ctx.copy("r1", "peaks", to=str(tmp_path / "b"))
    src = ctx.stores[0].find(ctx.key_for("r1", "peaks"))
    assert info.key == src.key and info.n_chunks == src.n_chunks and info.status == "complete"
    assert info.metadata["lineage"] == src.metadata["lineage"]
    other = sd.Context(str(tmp_path / "b"), plugins=PLUGINS)
    assert other.plan("r1", "peaks").to_load == ["peaks"]  # the same lineage: loaded
    np.testing.assert_array_equal(other.get_array("r1", "peaks"), peaks)
    assert other.run_metadata("r1")["mode"] == "toy"  # the run document went along
    with pytest.raises(DataExistsError):
        ctx.copy("r1", "peaks", to=str(tmp_path / "b"))
    again = ctx.copy(
        "r1",
        "peaks",
        to=open_store(str(tmp_path / "b")),
        overwrite=True,
        rechunk_mb=10,
        recompress="zstd:9",
    )
    assert again.n_chunks == 1 and again.n_rows == len(peaks)  # combined toward 10 MB
    np.testing.assert_array_equal(other.get_array("r1", "peaks"), peaks)
