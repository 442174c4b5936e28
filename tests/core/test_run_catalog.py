"""The run catalog of a Context: run documents, tags, ``runs()``, ``select_runs`` (strax's
wildcards and names), availability by lineage, and source plugins giving run documents."""

from __future__ import annotations

import datetime
from pathlib import Path

import pandas as pd
import pytest

import strax_decl as sd
from strax_decl.run_meta import RunDoc, to_ns
from strax_decl.testing import PLUGINS, ToyRecords
from strax_storage import DataExistsError, DataNotFound, open_store

SMALL = {"n_chunks": 2, "rows_per_chunk": 20}
HOUR = 3600 * 10**9
T0 = to_ns("2024-03-01T00:00:00")


def context(path: Path | list[Path], **config) -> sd.Context:
    storage = [str(p) for p in path] if isinstance(path, list) else str(path)
    return sd.Context(storage, plugins=PLUGINS, config={**SMALL, **config})


@pytest.fixture
def ctx(tmp_path: Path) -> sd.Context:
    ctx = context(tmp_path / "data")
    runs = [
        ("r001", "tpc_kr83m", ["calib", "_blinded"]),
        ("r002", "tpc_bkg", ["science", "_blinded"]),
        ("r003", "tpc_bkg", ["science", "bad"]),
        ("r004", "nv_led", []),
    ]
    for i, (name, mode, tags) in enumerate(runs):
        ctx.define_run(name, start=T0 + i * HOUR, end=T0 + (i + 1) * HOUR, mode=mode, tags=tags)
    ctx.make("r001", "peaks")
    ctx.make("r002", "peak_basics")
    return ctx


def names(frame: pd.DataFrame) -> list[str]:
    return list(frame["name"])


def test_runs_table(ctx: sd.Context) -> None:
    frame = ctx.runs(available=["records", "peaks", "peak_basics"])
    assert names(frame) == ["r001", "r002", "r003", "r004"]
    assert list(frame.columns[:7]) == [
        "name", "start", "end", "mode", "tags", "livetime", "superrun",
    ]  # fmt: skip
    first = frame.iloc[0]
    assert first["start"] == pd.Timestamp("2024-03-01T00:00:00", tz="UTC")
    assert first["livetime"] == pd.Timedelta(hours=1)
    assert first["tags"] == "calib,_blinded" and first["mode"] == "tpc_kr83m"
    assert list(frame["records_available"]) == [True, True, False, False]
    assert list(frame["peaks_available"]) == [True, True, False, False]
    assert list(frame["peak_basics_available"]) == [False, True, False, False]


def test_availability_follows_the_contexts_lineage(ctx: sd.Context) -> None:
    other = ctx.new_context(config={"group": 7})  # another lineage of peaks, same records
    frame = other.runs(available=["records", "peaks"])
    assert list(frame["records_available"]) == [True, True, False, False]
    assert list(frame["peaks_available"]) == [False, False, False, False]
    assert other.list_available("peaks") == [] and ctx.list_available("peaks") == ["r001", "r002"]
    assert ctx.list_available("peaks", runs=["r002", "r003"]) == ["r002"]
    with pytest.raises(KeyError):
        ctx.runs(available=["no_such_type"])


def test_select_runs_like_strax(ctx: sd.Context) -> None:
    assert names(ctx.select_runs(mode="tpc_*")) == ["r001", "r002", "r003"]
    assert names(ctx.select_runs(run_mode=["nv_*", "tpc_kr*"])) == ["r001", "r004"]
    # a leading underscore of a tag is ignored unless the pattern has one
    assert names(ctx.select_runs(tags="blinded")) == ["r001", "r002"]
    assert names(ctx.select_runs(tags="blinded", ignore_underscore=False)) == []
    assert names(ctx.select_runs(include_tags="_blind*")) == ["r001", "r002"]
    assert names(ctx.select_runs(tags=["calib", "bad"])) == ["r001", "r003"]  # any may match
    assert names(ctx.select_runs(tags="science", exclude_tags="ba?")) == ["r002"]
    assert names(ctx.select_runs(exclude_tags="*")) == ["r004"]  # exclusion beats inclusion
    assert names(ctx.select_runs(pattern="r00[12]")) == ["r001", "r002"]
    assert names(ctx.select_runs(run_id="r.*3", pattern_type="re")) == ["r003"]
    assert names(ctx.select_runs(since=T0 + HOUR, until="2024-03-01T03:00:00")) == ["r002", "r003"]
    since = datetime.datetime(2024, 3, 1, 3, tzinfo=datetime.UTC)
    assert names(ctx.select_runs(since=since)) == ["r004"]
    sel = ctx.select_runs(mode="tpc_*", tags="_blinded", available=["peaks", "peak_basics"])
    assert names(sel) == ["r002"] and sel["peak_basics_available"].all()
    with pytest.raises(ValueError, match="pattern_type"):
        ctx.select_runs(mode="x", pattern_type="glob")  # type: ignore[arg-type]


def test_tags_later_and_metadata(ctx: sd.Context) -> None:
    assert ctx.add_tag("r004", "messy") is True
    assert ctx.add_tag("r004", "messy") is False
    assert names(ctx.select_runs(tags="mess*")) == ["r004"]
    assert ctx.remove_tag("r003", "bad") is True  # a tag of the document
    assert names(ctx.select_runs(tags="bad")) == []
    doc = ctx.run_metadata("r003")
    assert doc["tags"] == ["science"] and doc["mode"] == "tpc_bkg"
    assert ctx.run_metadata("r003", projection=["mode", "nothing"]) == {"mode": "tpc_bkg"}
    with pytest.raises(DataNotFound, match="no run document for run 'r999'"):
        ctx.run_metadata("r999")
    with pytest.raises(ValueError, match="invalid tag"):
        ctx.add_tag("r001", "no/slashes")


def test_define_run_checks_and_keeps_free_fields(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    doc = ctx.define_run(
        "r1",
        start=datetime.datetime(2024, 1, 1),
        end="2024-01-01T00:10:00",
        mode=["b", "a"],
        comments="first light",
        tags=[{"name": "strax_style"}],
        source="kr83m",
        trigger={"threshold": 3},
    )
    assert doc.livetime == 600.0 and doc.mode == "a,b" and doc.comments == ["first light"]
    assert doc.tags == ["strax_style"]
    stored = ctx.run_metadata("r1")
    assert stored["source"] == "kr83m" and stored["trigger"] == {"threshold": 3}
    assert ctx.define_run("r1", **{k: v for k, v in stored.items() if k != "name"})  # same: ok
    with pytest.raises(DataExistsError):
        ctx.define_run("r1", start=0, end=1)
    with pytest.raises(ValueError, match="before start"):
        ctx.define_run("r2", start=10, end=5)
    with pytest.raises(ValueError, match="superruns"):
        ctx.define_run("_r3", start=0, end=1)
    assert ctx.runs(fields=["source"])["source"].tolist() == ["kr83m"]
    assert RunDoc(name="x", start=pd.Timestamp("1970-01-01T00:00:01", tz="UTC")).start == 10**9


class MetaRecords(ToyRecords):
    """Records whose source knows its run's document."""

    def run_metadata(self, run_id: str) -> dict:
        return {"start": 5, "end": 5 + HOUR, "mode": f"toy_{self.options.n_chunks}"}


def test_a_source_plugin_gives_the_run_document(tmp_path: Path) -> None:
    ctx = sd.Context(str(tmp_path), plugins=[MetaRecords, *PLUGINS[1:]], config=SMALL)
    ctx.get_array("r1", "peaks")
    assert ctx.run_metadata("r1")["mode"] == "toy_2"
    ctx.add_tag("r1", "seen")
    ctx.make("r1", "peak_basics")  # a document is there: not written again
    assert ctx.select_runs(mode="toy_*", tags="seen", available="peak_basics").name.tolist() == [
        "r1"
    ]


def test_several_stores(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    context(b).make("r1", "peaks")  # data only in b
    open_store(b).define_run("r1", {"name": "r1", "mode": "from_b"})
    open_store(a).define_run("r2", {"name": "r2", "mode": "from_a"})
    ctx = context([a, b])
    frame = ctx.runs(available="peaks")
    assert names(frame) == ["r1", "r2"]
    assert list(frame["mode"]) == ["from_b", "from_a"]
    assert list(frame["peaks_available"]) == [True, False]
    # definitions and tags go to the first writable store
    ctx.define_run("r3", mode="new")
    assert open_store(a).run_doc("r3") is not None and open_store(b).run_doc("r3") is None
    ctx.add_tag("r1", "t")  # where r1's document is
    assert open_store(b).run_doc("r1")["tags"] == ["t"]


def test_the_catalog_does_not_open_data_sets(ctx: sd.Context, tmp_path: Path) -> None:
    """A data set with its completion record is not opened at all (its zarr.json damaged by
    hand goes unseen: loading checks it). Without a record (the earlier layout), only the
    zarr.json of a requested data type's directory is read: a damaged data set of another
    data type (or lineage) does not matter; a damaged requested one is absent."""
    root = tmp_path / "data"
    peaks = ctx.key_for("r001", "peaks")
    for array in (root / peaks.path).iterdir():
        if array.is_dir():
            for f in array.rglob("*"):
                if f.is_file() and f.name != "zarr.json":
                    f.write_bytes(b"garbage")  # chunks damaged: the catalog never looks
    assert ctx.list_available("peaks") == ["r001", "r002"]
    records = ctx.key_for("r001", "records")
    (root / records.path / "zarr.json").write_text("{")
    frame = ctx.runs(available=["peaks", "records"])
    assert list(frame["records_available"]) == [True, True, False, False]  # not opened
    for record in (root / ".complete").iterdir():
        record.unlink()  # as a store of the earlier layout: every data set is asked
    frame = ctx.runs(available=["peaks", "records"])
    assert list(frame["records_available"]) == [False, True, False, False]
    assert list(frame["peaks_available"]) == [True, True, False, False]


def test_available_for_run(ctx: sd.Context) -> None:
    frame = ctx.available_for_run("r002")
    assert dict(zip(frame["target"], frame["is_stored"], strict=True)) == {
        "records": True,
        "peaks": True,
        "peak_basics": True,
        "big_peaks": True,
        "peak_extras": False,
    }
    frame = ctx.available_for_run("r001", include_targets="peak*", exclude_targets="*extras")
    assert list(frame["target"]) == ["peaks", "peak_basics"]
    assert list(frame["is_stored"]) == [True, False]


class FailingRecords(ToyRecords):
    """Records that fail for the run named ``bad``."""

    def source(self, run_id: str):
        if run_id == "bad":
            raise RuntimeError("no records for this run")
        yield from super().source(run_id)


def test_ignore_errors_leaves_failing_runs_out(tmp_path: Path) -> None:
    ctx = sd.Context(  # one after another (in worker processes: tests/core/test_run_pool.py)
        str(tmp_path), plugins=[FailingRecords, *PLUGINS[1:]], config=SMALL, max_workers=1
    )
    with pytest.raises(RuntimeError, match="no records") as info:
        ctx.get_array(["r1", "bad", "r2"], "peaks")
    assert any("'bad'" in note for note in info.value.__notes__)
    assert not ctx.is_stored("r2", "peaks")  # the runs after the failing one were not started
    with pytest.warns(UserWarning, match="left out 1 of 3 runs.*bad: RuntimeError"):
        rows = ctx.get_array(["r1", "bad", "r2"], "peaks", ignore_errors=True, drop_columns="area")
    assert list(dict.fromkeys(rows["run_id"])) == ["r1", "r2"] and "area" not in rows.dtype.names
    with pytest.raises(RuntimeError, match="no records") as info, pytest.warns(UserWarning):
        ctx.get_array(["bad"], "peaks", ignore_errors=True)
    assert any("every run failed" in note for note in info.value.__notes__)


def test_availability_follows_mark_failed_remove_and_remake(ctx: sd.Context) -> None:
    """The completion records keep the catalog true: a data set marked failed or removed is
    not available at once, in the same process; made again, it is."""
    store = ctx.stores[0]
    assert ctx.list_available("peaks") == ["r001", "r002"]
    assert store.mark_failed(ctx.key_for("r002", "peaks"), "on purpose") is True
    assert ctx.list_available("peaks") == ["r001"]
    store.remove(ctx.key_for("r001", "peaks"))
    assert ctx.list_available("peaks") == []
    ctx.make("r001", "peaks")
    assert ctx.list_available("peaks") == ["r001"]
    assert list(ctx.select_runs(available="peaks")["name"]) == ["r001"]
