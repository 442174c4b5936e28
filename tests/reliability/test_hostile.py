"""Hostile input: bad names, symbolic links out of the store, metadata that lies, plugins that
return wrong rows. Each gets a clear error, and nothing outside the store root is touched."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from rel_helpers import snapshot

import strax_decl as sd
from strax_decl.testing import TOY_PLUGINS, Peak, Peaks, Record
from strax_storage import (
    ChunkLawViolation,
    DataCorrupted,
    DataKey,
    DataNotFound,
    StorageError,
    UnsafePath,
)

RUN = "run_1"
CONFIG = {"n_chunks": 3, "rows_per_chunk": 50}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A store root and, next to it, precious data that must never change (tests that move
    data out of the store on purpose use ``scratch``, which is not watched)."""
    root = tmp_path / "store"
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("do not touch")
    (tmp_path / "scratch").mkdir()
    before = snapshot(tmp_path, root, tmp_path / "scratch")
    yield root, outside
    after = snapshot(tmp_path, root, tmp_path / "scratch")
    assert after == before, "something outside the store root changed"
    assert (outside / "keep.txt").read_text() == "do not touch"


def context(root: Path, plugins: list[type[sd.Plugin]] | None = None) -> sd.Context:
    return sd.Context(storage=str(root), plugins=plugins or TOY_PLUGINS, config=CONFIG)


# ---------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "run_id",
    [
        "../escape",
        "a/b",
        "/abs",
        "..",
        ".",
        "x\x00y",
        "é",
        "r" * 65,
        "",
        "run 1",
        "run-1",
        "C:\\x",
        "zarr.json",
        "__x",
    ],
)
def test_hostile_run_ids_are_rejected(world: tuple[Path, Path], run_id: str) -> None:
    root, _ = world
    ctx = context(root)
    for call in (
        lambda: ctx.get_array(run_id, "records"),
        lambda: ctx.make(run_id, "records"),
        lambda: ctx.plan(run_id, "records"),
        lambda: ctx.iter_chunks(run_id, "records"),
    ):
        with pytest.raises(ValueError, match="invalid run_id"):
            call()
    assert not root.exists()


@pytest.mark.parametrize("name", ["../x", "a/b", "x\x00", "é", "d" * 65, "1abc", "a-b", ""])
def test_hostile_data_type_and_hash_names_never_become_paths(name: str) -> None:
    with pytest.raises(ValueError, match="invalid data_type"):
        DataKey(RUN, name, "abc")
    with pytest.raises(ValueError, match="invalid lineage_hash"):
        DataKey(RUN, "records", name)
    with pytest.raises(TypeError):
        DataKey(RUN, 3, "abc")  # type: ignore[arg-type]


def test_a_plugin_with_a_non_ascii_output_name_is_rejected(world: tuple[Path, Path]) -> None:
    root, _ = world

    class Weird(sd.Plugin):
        version = "0.1.0"

        class Inputs(sd.Inputs):
            records: Record

        class Outputs(sd.Outputs):
            pé: Peak

        def compute(self, records: np.ndarray) -> np.ndarray:
            return Peak.zeros(0)

    with pytest.raises(ValueError, match="invalid data_type 'pé'"):
        context(root, [*TOY_PLUGINS, Weird]).make(RUN, "pé")


# ---------------------------------------------------------------------------- symbolic links


def stored_records(root: Path) -> tuple[sd.Context, DataKey]:
    ctx = context(root)
    ctx.make(RUN, "records")
    return ctx, ctx.key_for(RUN, "records")


def test_a_data_set_that_is_a_link_out_of_the_store_is_refused(
    world: tuple[Path, Path],
) -> None:
    root, _outside = world
    ctx, key = stored_records(root)
    expected = ctx.get_array(RUN, "records")
    # move the real data set outside and leave a link in its place
    target = root.parent / "scratch" / "moved"
    os.rename(root / key.path, target)
    os.symlink(target, root / key.path)
    before = snapshot(target.parent)
    store = ctx.stores[0]
    assert store.status(key) == "failed"
    [info] = store.list()
    assert "refusing to follow the symbolic link" in (info.exception or "")
    with pytest.raises(DataNotFound):
        store.load_array(key)
    with pytest.raises(StorageError):
        store.zarr_group(key)
    # the next run recomputes and replaces the link (not what it points to)
    np.testing.assert_array_equal(ctx.get_array(RUN, "records"), expected)
    assert not (root / key.path).is_symlink() and ctx.is_stored(RUN, "records")
    assert snapshot(target.parent) == before


def test_remove_unlinks_a_link_and_never_deletes_its_target(world: tuple[Path, Path]) -> None:
    root, outside = world
    ctx, key = stored_records(root)
    store = ctx.stores[0]
    store.remove(key)
    os.symlink(outside, root / key.path)
    store.remove(key)
    assert not (root / key.path).exists() and (outside / "keep.txt").exists()
    # also as a leftover name of a writer or of an interrupted removal
    for name in (f".tmp-{key.dirname}-0123456789ab", f".trash-{key.dirname}-0123456789ab"):
        os.symlink(outside, root / RUN / name)
    store.remove(key) if store.status(key) != "absent" else None
    ctx.make(RUN, "records")  # claiming the key cleans leftovers: unlinks, never follows
    assert (outside / "keep.txt").exists()


def test_a_run_directory_that_is_a_link_is_never_followed(world: tuple[Path, Path]) -> None:
    root, _outside = world
    ctx, key = stored_records(root)
    real = root.parent / "scratch" / "run_copy"
    os.rename(root / RUN, real)
    os.symlink(real, root / RUN)
    before = snapshot(real.parent)
    store = ctx.stores[0]
    assert store.list() == []  # skipped (with a warning)
    assert store.status(key) == "failed"
    with pytest.raises(DataNotFound):
        store.load_array(key)
    with pytest.raises(UnsafePath, match="refusing to follow the symbolic link"):
        store.remove(key)
    with pytest.raises(UnsafePath, match=str(root / RUN)):
        ctx.make(RUN, "records")  # refuses to write through the link
    assert snapshot(real.parent) == before


def test_a_chunk_file_that_is_a_link_is_corruption(world: tuple[Path, Path]) -> None:
    root, _outside = world
    ctx, key = stored_records(root)
    chunk = root / key.path / "time" / "c" / "0"
    copy = root.parent / "scratch" / "chunk"
    copy.write_bytes(chunk.read_bytes())
    chunk.unlink()
    os.symlink(copy, chunk)
    with pytest.raises(DataCorrupted, match="refusing to follow the symbolic link"):
        ctx.stores[0].load_array(key)
    with pytest.raises(UnsafePath):
        ctx.stores[0].zarr_group(key)
    ctx.stores[0].remove(key)
    assert copy.exists()


# ---------------------------------------------------------------------------- lying metadata


def edit_attrs(group: Path, **changes: object) -> None:
    doc = json.loads((group / "zarr.json").read_text())
    doc["attributes"]["strax_decl"].update(changes)
    (group / "zarr.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_rows": 151}, "disagrees with the group attributes"),
        ({"n_rows": -1}, "attribute 'n_rows' is -1"),
        ({"n_chunks": 2}, "array disagrees|chunk index"),
        ({"rows_per_chunk": 0}, "attribute 'rows_per_chunk' is 0"),
        ({"start": 5}, "spans"),
        ({"dtype": {"bogus": True}}, "dtype attribute is unreadable"),
        ({"dtype_descr": "nothing", "dtype": None}, "dtype attribute is unreadable"),
    ],
)
def test_hand_edited_attributes_that_lie_are_caught(
    world: tuple[Path, Path], changes: dict[str, object], message: str
) -> None:
    root, _ = world
    ctx, key = stored_records(root)
    edit_attrs(root / key.path, **changes)
    with pytest.raises(DataCorrupted, match=message):
        ctx.stores[0].load_array(key)


def test_lying_dtype_attribute_is_caught(world: tuple[Path, Path]) -> None:
    root, _ = world
    ctx, key = stored_records(root)
    text = (root / key.path / "zarr.json").read_text()
    (root / key.path / "zarr.json").write_text(text.replace('"<i4"', '"<i8"', 1))
    with pytest.raises(DataCorrupted, match="disagrees"):
        ctx.stores[0].load_array(key)


def test_lying_row_counts_everywhere_still_give_no_wrong_rows(world: tuple[Path, Path]) -> None:
    """Attributes, array shapes and chunk index all edited to claim two extra rows."""
    import zarr

    root, _ = world
    ctx, key = stored_records(root)
    group = root / key.path
    n = ctx.stores[0].info(key).n_rows
    edit_attrs(group, n_rows=n + 2)
    for field in ("time", "length", "dt", "channel", "area", "data"):
        doc = json.loads((group / field / "zarr.json").read_text())
        doc["shape"][0] = n + 2
        (group / field / "zarr.json").write_text(json.dumps(doc))
    counts = zarr.open_array(group / "_index" / "n_rows", mode="r+")
    counts[-1] = counts[-1] + 2
    with pytest.raises(DataCorrupted):
        ctx.stores[0].load_array(key)


# ---------------------------------------------------------------------------- plugins


class _BadRows(sd.Plugin):
    version = "0.1.0"

    class Inputs(sd.Inputs):
        records: Record

    class Outputs(sd.Outputs):
        peaks: Peak

    mode = ""

    def compute(self, records: np.ndarray) -> np.ndarray:
        peaks = Peak.zeros(len(records))
        peaks["time"] = records["time"]
        peaks["endtime"] = records["time"] + 10
        if self.mode == "negative":
            peaks["endtime"][1] = peaks["time"][1] - 5
        elif self.mode == "unsorted":
            peaks = peaks[::-1].copy()
        elif self.mode == "dtype":
            return np.zeros(len(records), dtype=[("time", "<f8"), ("endtime", "<f8")])
        return peaks


def bad(mode: str) -> type[sd.Plugin]:
    return type(f"Bad_{mode}", (_BadRows,), {"mode": mode})


@pytest.mark.parametrize(
    ("mode", "error", "message"),
    [
        ("negative", ChunkLawViolation, "negative duration"),
        ("unsorted", ChunkLawViolation, "not sorted by time"),
        ("dtype", TypeError, "rows have dtype"),
    ],
)
def test_plugins_returning_bad_rows_get_a_clear_error_and_save_nothing(
    world: tuple[Path, Path], mode: str, error: type[Exception], message: str
) -> None:
    root, _ = world
    plugins = [
        p
        for p in TOY_PLUGINS
        if p is not Peaks and p.__name__ != "PeakProperties" and p.__name__ != "PeakRecordCount"
    ] + [bad(mode)]
    ctx = context(root, plugins)
    with pytest.raises(error, match=message):
        ctx.make(RUN, "peaks")
    assert not ctx.is_stored(RUN, "peaks")
    assert ctx.stores[0].find(ctx.key_for(RUN, "peaks")) is None


def test_a_float_time_field_is_rejected_when_the_schema_is_declared() -> None:
    with pytest.raises(TypeError, match="'time' field of type float64, expected a scalar integer"):

        class NanTimes(sd.Schema):
            time: sd.f64
            endtime: sd.f64

        NanTimes.dtype  # noqa: B018
