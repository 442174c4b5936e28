"""Corrupted or lying stored data through the Context: DataCorrupted naming the file, or
(``on_corrupted="recompute"``) the data set is marked failed and computed again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.testing import TOY_PLUGINS
from strax_storage import DataCorrupted, open_store

RUN = "run_1"
CONFIG = {"n_chunks": 6, "rows_per_chunk": 200}


def context(path: Path, **settings: object) -> sd.Context:
    store = open_store(path, rows_per_chunk=100)  # 12 Zarr chunks of records
    return sd.Context(storage=store, plugins=TOY_PLUGINS, config=CONFIG, **settings)  # type: ignore[arg-type]


@pytest.fixture
def stored(tmp_path: Path) -> tuple[sd.Context, dict[str, np.ndarray]]:
    ctx = context(tmp_path / "store")
    ctx.make(RUN, ["records", "peak_basics"])
    expected = {t: ctx.get_array(RUN, t) for t in ("records", "peaks", "peak_basics")}
    return ctx, expected


def flip(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    path.write_bytes(bytes(raw))


def group(ctx: sd.Context, data_type: str) -> Path:
    return Path(ctx.stores[0].url) / ctx.key_for(RUN, data_type).path


def test_a_flipped_byte_raises_data_corrupted_naming_the_file(
    stored: tuple[sd.Context, dict[str, np.ndarray]],
) -> None:
    ctx, _ = stored
    target = group(ctx, "records") / "area" / "c" / "3"
    flip(target)
    with pytest.raises(DataCorrupted, match=rf"CRC32C mismatch .*{target}"):
        ctx.get_array(RUN, "records")
    with pytest.raises(DataCorrupted, match=str(target)):
        ctx.get_array(RUN, "records", processor="serial")
    with pytest.raises(DataCorrupted, match=str(target)):
        ctx.make(RUN, "peak_extras")  # reads the stored records
    assert ctx.is_stored(RUN, "records")  # nothing was changed without being asked


@pytest.mark.parametrize("processor", ["threaded", "serial"])
def test_recompute_replaces_a_corrupted_data_set(
    stored: tuple[sd.Context, dict[str, np.ndarray]], processor: str
) -> None:
    ctx, expected = stored
    flip(group(ctx, "peaks") / "area" / "c" / "0")
    fixing = ctx.new_context(on_corrupted="recompute", processor=processor)
    np.testing.assert_array_equal(fixing.get_array(RUN, "peaks"), expected["peaks"])
    assert fixing.last_plan is not None
    assert fixing.last_plan.steps["peaks"].reason.endswith("is corrupted")
    assert fixing.last_plan.steps["peaks"].save
    # the corrupted data set was replaced by a good one
    np.testing.assert_array_equal(ctx.get_array(RUN, "peaks"), expected["peaks"])
    assert ctx.last_plan is not None and ctx.last_plan.to_compute == []


def test_make_with_recompute_repairs_inputs_too(
    stored: tuple[sd.Context, dict[str, np.ndarray]],
) -> None:
    ctx, expected = stored
    flip(group(ctx, "records") / "time" / "c" / "5")
    fixing = ctx.new_context(on_corrupted="recompute")
    fixing.make(RUN, "peak_extras")  # reads records: corrupted, so recomputed and saved
    np.testing.assert_array_equal(ctx.get_array(RUN, "records"), expected["records"])


def test_a_stream_that_already_yielded_raises_then_recomputes_next_time(
    tmp_path: Path,
) -> None:
    ctx = context(tmp_path / "store")  # records are stored in their source's chunks
    expected = {"records": ctx.get_array(RUN, "records")}
    assert len(list(ctx.iter_chunks(RUN, "records"))) == CONFIG["n_chunks"]
    flip(group(ctx, "records") / "time" / "c" / "10")  # in the last strax chunk
    fixing = ctx.new_context(on_corrupted="recompute", processor="serial")
    got = []
    with pytest.raises(DataCorrupted, match="marked failed and will be recomputed"):
        for chunk in fixing.iter_chunks(RUN, "records"):
            got.append(chunk)
    assert got  # rows before the damage were delivered, and they are right
    np.testing.assert_array_equal(
        np.concatenate([c.data for c in got]), expected["records"][: sum(len(c) for c in got)]
    )
    assert ctx.stores[0].status(ctx.key_for(RUN, "records")) == "failed"
    np.testing.assert_array_equal(fixing.get_array(RUN, "records"), expected["records"])
    assert ctx.is_stored(RUN, "records")


def test_get_array_recovers_from_damage_past_the_first_chunk_in_one_call(
    tmp_path: Path,
) -> None:
    """``get_array`` hands out no rows before it has them all: it recomputes at once."""
    ctx = context(tmp_path / "store")
    expected = ctx.get_array(RUN, "records")
    flip(group(ctx, "records") / "time" / "c" / "10")  # in the last strax chunk
    for processor in ("serial", "threaded"):
        fixing = ctx.new_context(on_corrupted="recompute", processor=processor)
        np.testing.assert_array_equal(fixing.get_array(RUN, "records"), expected)
        assert ctx.is_stored(RUN, "records")
        flip(group(ctx, "records") / "time" / "c" / "10")  # damage the new copy too
    with pytest.raises(DataCorrupted):
        ctx.get_array(RUN, "records")  # without recompute: raises


def test_recompute_from_a_read_only_store_computes_without_saving(
    stored: tuple[sd.Context, dict[str, np.ndarray]],
) -> None:
    ctx, expected = stored
    target = group(ctx, "peaks") / "endtime" / "c" / "0"
    flip(target)
    before = target.read_bytes()
    ro = sd.Context(
        storage=open_store(ctx.stores[0].url, readonly=True),
        plugins=TOY_PLUGINS,
        config=CONFIG,
        on_corrupted="recompute",
    )
    np.testing.assert_array_equal(ro.get_array(RUN, "peak_basics"), expected["peak_basics"])
    np.testing.assert_array_equal(ro.get_array(RUN, "peaks"), expected["peaks"])
    assert ro.last_plan is not None
    assert ro.last_plan.steps["peaks"].save_reason == "no writable store"
    assert target.read_bytes() == before


def test_a_dtype_edited_consistently_by_hand_is_not_trusted(
    stored: tuple[sd.Context, dict[str, np.ndarray]],
) -> None:
    """attrs and array metadata agree with each other, but not with the plugin's schema."""
    ctx, expected = stored
    g = group(ctx, "peaks")
    text = (g / "zarr.json").read_text().replace('"<f4"', '"<i4"')
    (g / "zarr.json").write_text(text)
    arr = json.loads((g / "area" / "zarr.json").read_text())
    arr["data_type"] = "int32"
    (g / "area" / "zarr.json").write_text(json.dumps(arr))
    info = ctx.stores[0].info(ctx.key_for(RUN, "peaks"))
    assert info.dtype is not None and info.dtype["area"] == np.dtype("<i4")
    plan = ctx.plan(RUN, "peaks")
    assert plan.steps["peaks"].action == "compute"
    assert "declares" in plan.steps["peaks"].reason
    np.testing.assert_array_equal(ctx.get_array(RUN, "peaks"), expected["peaks"])
    assert ctx.plan(RUN, "peaks").steps["peaks"].action == "load"  # replaced


def test_a_data_set_moved_to_another_lineage_is_not_trusted(
    stored: tuple[sd.Context, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    ctx, expected = stored
    other = ctx.new_context(config={"group": 4})
    src, dst = group(ctx, "peaks"), group(other, "peaks")
    shutil.copytree(src, dst)  # "reuse" peaks made with group=5 as if group=4
    store = ctx.stores[0]
    info = store.info(other.key_for(RUN, "peaks"))
    assert info.status == "failed" and "not trusted" in (info.exception or "")
    plan = other.plan(RUN, "peaks")
    assert plan.steps["peaks"].action == "compute"
    bins = np.unique(expected["records"]["time"] // 400)  # Peaks: one peak per 4 * 100 ns bin
    assert len(other.get_array(RUN, "peaks")) == len(bins)


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_damaged_zarr_json_of_a_published_data_set_is_corruption_not_a_failed_write(
    stored: tuple[sd.Context, dict[str, np.ndarray]], damage: str
) -> None:
    """It raises naming the file (never silently recomputed and overwritten); recomputed
    only with ``on_corrupted="recompute"``."""
    ctx, expected = stored
    doc = group(ctx, "peaks") / "zarr.json"
    if damage == "missing":
        doc.unlink()
    else:
        doc.write_bytes(doc.read_bytes()[:100])
    before = sorted(p.name for p in doc.parent.iterdir())
    with pytest.raises(DataCorrupted, match=str(doc)):
        ctx.get_array(RUN, "peaks")
    with pytest.raises(DataCorrupted, match=str(doc)):
        ctx.make(RUN, "peak_basics", processor="serial")  # peak_basics is stored: no error
        ctx.get_array(RUN, "peak_extras")  # needs peaks
    assert sorted(p.name for p in doc.parent.iterdir()) == before  # nothing was rewritten
    fixing = ctx.new_context(on_corrupted="recompute")
    np.testing.assert_array_equal(fixing.get_array(RUN, "peaks"), expected["peaks"])
    np.testing.assert_array_equal(ctx.get_array(RUN, "peaks"), expected["peaks"])
    assert ctx.last_plan is not None and ctx.last_plan.to_compute == []
