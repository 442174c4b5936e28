"""The inspection recipes of docs/storage.md, against a store the demo wrote."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from conftest import CONFIG

import strax_decl as sd
from strax_storage import open_store


def group_path(ctx: sd.Context, data_type: str) -> str:
    return f"{ctx.stores[0].url}/{ctx.key_for('demo_000', data_type).path}"


@pytest.mark.parametrize("data_type", ["records", "peaks", "events", "event_basics", "cut_s1"])
def test_zarr_open_group(demo, data_type):
    group = zarr.open_group(group_path(demo, data_type), mode="r")
    ours = group.attrs["strax_decl"]
    rows = demo.get_array("demo_000", data_type)
    assert ours["complete"] is True and ours["status"] == "complete"
    assert ours["n_rows"] == len(rows) > 0
    assert ours["metadata"]["lineage"] == demo.lineage(data_type)
    assert ours["lineage_hash"] == demo.key_for("demo_000", data_type).lineage_hash
    schema = demo.registry.output_spec(data_type).schema
    for name, doc in schema.field_docs().items():
        array = group[name]
        assert dict(array.attrs) == doc  # description and unit on every field array
        assert array.metadata.dimension_names[0] == "row"
        np.testing.assert_array_equal(array[:], rows[name])
    assert sorted(group.group_keys()) == ["_index"]


def test_units_are_visible(demo):
    group = zarr.open_group(group_path(demo, "records"), mode="r")
    assert group["data"].attrs["unit"] == "ADC"
    assert group["time"].attrs == {"description": "start time of the record", "unit": "ns"}


def test_xarray_open_zarr_names_dimensions(demo):
    ds = xr.open_zarr(group_path(demo, "peaks"), consolidated=False)
    peaks = demo.get_array("demo_000", "peaks")
    assert set(ds.data_vars) == set(peaks.dtype.names)  # _index is not a variable
    assert ds["area"].dims == ("row",)
    assert ds["data"].dims == ("row", "data_sample")
    assert ds.sizes["row"] == len(peaks)
    assert ds["area"].attrs == {"description": "total area of the hits", "unit": "PE"}
    np.testing.assert_array_equal(ds["data"].values, peaks["data"])
    records = xr.open_zarr(group_path(demo, "records"), consolidated=False)
    assert records["data"].dims == ("row", "data_sample") and records["data"].dtype == np.int16


def test_dask_from_zarr_on_a_field(demo):
    path = group_path(demo, "records")
    records = demo.get_array("demo_000", "records")
    waveforms = da.from_zarr(path, component="data")
    assert waveforms.shape == records["data"].shape
    total = waveforms.astype(np.int64).sum(axis=1).compute()
    np.testing.assert_array_equal(total, records["data"].astype(np.int64).sum(axis=1))
    channels = da.from_zarr(path, component="channel")
    assert int(channels.max().compute()) == 7


def test_chunk_index_maps_time_to_rows(demo):
    index = zarr.open_group(group_path(demo, "records"), mode="r")["_index"]
    starts, ends = index["start"][:], index["end"][:]
    first, counts = index["first_row"][:], index["n_rows"][:]
    assert starts[0] == 0 and ends[-1] == CONFIG["run_duration"]
    assert (starts[1:] == ends[:-1]).all() and (first[1:] == first[:-1] + counts[:-1]).all()
    records = demo.get_array("demo_000", "records")
    assert counts.sum() == len(records)


def test_store_api(demo):
    store = open_store(demo.stores[0].url)
    infos = store.list(run_id="demo_000")
    assert sorted(i.key.data_type for i in infos) == sorted(
        ["records", "peaks", "peak_basics", "events", "event_basics", "cut_s1", "cut_drift"]
    )
    key = demo.key_for("demo_000", "peaks")
    info = store.info(key)
    assert info.complete and info.stored_bytes and info.stored_bytes < info.nbytes
    group = store.zarr_group(key)
    assert group.attrs["strax_decl"]["n_rows"] == info.n_rows
