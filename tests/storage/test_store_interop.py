"""A stored data set is plain Zarr v3: zarr, xarray and dask read it without this package."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr
import zarr
from conftest import KEY, RECORDS, ROWS_PER_CHUNK, concat, make_chunks, save

from strax_storage import open_store


def test_plain_zarr_reads_every_field_and_the_index(tmp_path: Path) -> None:
    store = open_store(tmp_path, rows_per_chunk=ROWS_PER_CHUNK)
    chunks = make_chunks(RECORDS, [5, 0, 12, 3])
    save(store, chunks)
    expected = concat(chunks, RECORDS)

    group = zarr.open_group(tmp_path / KEY.path, mode="r")
    for name in RECORDS.names or ():
        arr = group[name]
        np.testing.assert_array_equal(arr[:], expected[name])
        assert arr.chunks[0] == ROWS_PER_CHUNK
        assert arr.metadata.dimension_names[0] == "row"
    assert group["data"].shape == (20, 5)
    assert group["data"].metadata.dimension_names == ("row", "data_sample")
    index = group["_index"]
    np.testing.assert_array_equal(index["n_rows"][:], [5, 0, 12, 3])
    np.testing.assert_array_equal(index["first_row"][:], [0, 5, 5, 17])
    np.testing.assert_array_equal(index["start"][:], [c.start for c in chunks])
    np.testing.assert_array_equal(index["end"][:], [c.end for c in chunks])
    assert group.attrs["strax_decl"]["complete"] is True
    # the whole tree is browsable from the root
    root = zarr.open_group(tmp_path, mode="r")
    assert KEY.dirname in root["run_1"]


def test_codecs_include_a_checksum_and_every_chunk_file_exists(tmp_path: Path) -> None:
    store = open_store(tmp_path, rows_per_chunk=ROWS_PER_CHUNK)
    chunks = [c for c in make_chunks(RECORDS, [8, 6])]
    # an all-zero Zarr chunk must still be written (missing chunks would read as zeros)
    for c in chunks:
        c.data["area"] = 0
    save(store, chunks)
    meta = json.loads((tmp_path / KEY.path / "area" / "zarr.json").read_text())
    assert [c["name"] for c in meta["codecs"]] == ["bytes", "zstd", "crc32c"]
    assert sorted(p.name for p in (tmp_path / KEY.path / "area" / "c").iterdir()) == ["0", "1"]
    assert (tmp_path / KEY.path / "data" / "c" / "1" / "0").is_file()


def test_xarray_opens_the_group_and_values_match(tmp_path: Path) -> None:
    store = open_store(tmp_path, rows_per_chunk=ROWS_PER_CHUNK)
    chunks = make_chunks(RECORDS, [5, 0, 12, 3])
    save(store, chunks)
    expected = concat(chunks, RECORDS)

    ds = xr.open_zarr(tmp_path / KEY.path, consolidated=False)
    assert set(ds.data_vars) == set(RECORDS.names or ())
    assert ds.sizes["row"] == 20 and ds.sizes["data_sample"] == 5
    for name in RECORDS.names or ():
        np.testing.assert_array_equal(ds[name].values, expected[name])
    assert ds.attrs["strax_decl"]["n_rows"] == 20


def test_xarray_opens_a_memory_store_too() -> None:
    store = open_store("memory://", rows_per_chunk=ROWS_PER_CHUNK)
    chunks = make_chunks(RECORDS, [9, 4])
    save(store, chunks)
    ds = xr.open_zarr(store.zarr_store, group=KEY.path, consolidated=False)
    np.testing.assert_array_equal(ds["data"].values, concat(chunks, RECORDS)["data"])


def test_dask_reads_the_arrays(tmp_path: Path) -> None:
    import dask.array as da

    store = open_store(tmp_path, rows_per_chunk=ROWS_PER_CHUNK)
    chunks = make_chunks(RECORDS, [20, 3])
    save(store, chunks)
    arr = da.from_zarr(str(tmp_path / KEY.path / "area"))
    assert float(arr.sum().compute()) == float(concat(chunks, RECORDS)["area"].sum())
