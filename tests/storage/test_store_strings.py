"""Text fields and strax's titled dtypes through the store, zarr and xarray."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr

from strax_storage import Chunk, DataKey, open_store

KEY = DataKey("run_1", "vetoes", "abcdefgh23")
TITLED = np.dtype(
    [
        (("Start time since unix epoch [ns]", "time"), "<i8"),
        (("Exclusive end time [ns]", "endtime"), "<i8"),
        (("Which veto", "veto_type"), "<U30"),
        ("area", "<f4"),
    ]
)


def _rows() -> np.ndarray:
    rows = np.zeros(5, TITLED)
    rows["time"] = np.arange(5) * 10
    rows["endtime"] = rows["time"] + [5, 5, 0, 5, 5]  # row 2 is point-like
    rows["veto_type"] = ["he_veto", "muon_veto", "x" * 30, "", "é ☃"]
    rows["area"] = np.arange(5)
    return rows


def _save(tmp_path: Path) -> Path:
    store = open_store(tmp_path / "strax_data", rows_per_chunk=2)
    rows = _rows()
    meta = {"plugin": "T", "version": "1", "fields": {"area": {"description": "integral"}}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for the text field's Zarr data type
        store.saver(KEY, TITLED, meta).save_from([Chunk(0, 20, rows[:2]), Chunk(20, 50, rows[2:])])
    loaded = list(store.load(KEY))
    assert [(c.start, c.end, len(c)) for c in loaded] == [(0, 20, 2), (20, 50, 3)]
    got = np.concatenate([c.data for c in loaded])
    assert got.dtype == TITLED  # titles and all
    np.testing.assert_array_equal(got, rows)
    (path,) = (tmp_path / "strax_data" / "run_1").glob("vetoes-*")
    return path


def test_text_fields_and_titles_round_trip_through_the_store(tmp_path: Path) -> None:
    path = _save(tmp_path)
    group = zarr.open_group(path, mode="r")
    veto = group["veto_type"]
    assert veto.dtype == np.dtype("<U30") and list(veto[:]) == list(_rows()["veto_type"])
    doc = json.loads((path / "veto_type" / "zarr.json").read_text())
    assert doc["data_type"]["name"] == "fixed_length_utf32"
    assert doc["data_type"]["configuration"] == {"length_bytes": 120}
    # strax titles become the arrays' descriptions (explicit field docs win)
    assert group["time"].attrs["description"] == "Start time since unix epoch [ns]"
    assert group["veto_type"].attrs["description"] == "Which veto"
    assert group["area"].attrs["description"] == "integral"


def test_text_fields_open_in_xarray(tmp_path: Path) -> None:
    xr = pytest.importorskip("xarray")
    path = _save(tmp_path)
    ds = xr.open_zarr(path, consolidated=False)
    assert ds["veto_type"].dtype == np.dtype("<U30")
    assert list(ds["veto_type"].values) == list(_rows()["veto_type"])
    assert ds["veto_type"].attrs["description"] == "Which veto"
    assert list(ds["area"].values[(ds["veto_type"] == "he_veto").values]) == [0]


def test_unstorable_fields_are_still_refused(tmp_path: Path) -> None:
    store = open_store(tmp_path / "strax_data")
    with pytest.raises(TypeError, match=r"field 'label' has dtype object; only bool, integer, "
                       r"float, complex and fixed-length unicode"):  # fmt: skip
        store.saver(KEY, [("time", "<i8"), ("endtime", "<i8"), ("label", "O")], {})
