"""Superruns: per-run data types made per subrun and joined in order; superrun-level data
types computed once on the joined stream and stored under the superrun; their lineage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.context.superruns import SuperrunPlan, superrun_key
from strax_decl.progress import format_count
from strax_decl.testing import Peak, PeakProperties, Peaks, ToyRecords
from strax_storage import DataCorrupted, DataNotFound, open_store

SMALL = {"n_chunks": 3, "rows_per_chunk": 20}
SECOND = 10**9


class RunRecords(ToyRecords):
    """ToyRecords shifted in time by the run's number (r1 starts at 1 s, r2 at 2 s)."""

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        off = int(run_id.lstrip("r")) * SECOND
        for c in super().source(run_id):
            rows = c.data.copy()
            rows["time"] += off
            yield sd.Chunk(c.start + off, c.end + off, rows)

    def run_metadata(self, run_id: str) -> dict:
        off = int(run_id.lstrip("r")) * SECOND
        return {"start": off, "end": off + SECOND // 10, "mode": "toy", "tags": [f"t{run_id}"]}


class PeakCount(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    n: sd.i64 = sd.field("peaks in the step")


SETUPS: list[str] = []


class PeakCounts(sd.Plugin):
    """Superrun-level: one instance over the whole superrun."""

    allow_superrun = True
    version = "0.1"

    class Inputs(sd.Inputs):
        peaks: Peak

    class Outputs(sd.Outputs):
        peak_counts: PeakCount

    def setup(self) -> None:
        SETUPS.append(self.run_id)

    def compute(self, peaks: np.ndarray, start: int, end: int) -> np.ndarray:
        out = PeakCount.zeros(1)
        out["time"], out["endtime"], out["n"] = start, end, len(peaks)
        return out


PLUGINS = [RunRecords, Peaks, PeakProperties, PeakCounts]


@pytest.fixture
def ctx(tmp_path: Path) -> sd.Context:
    SETUPS.clear()
    ctx = sd.Context(str(tmp_path / "data"), plugins=PLUGINS, config=SMALL)
    ctx.make(["r1", "r2", "r3"], "peaks").raise_if_failed()
    ctx.define_run("_sr1", ["r2", "r1"])  # put in time order
    return ctx


def test_per_run_data_is_the_subruns_in_order(ctx: sd.Context) -> None:
    joined = ctx.get_array("_sr1", "peaks")
    assert np.array_equal(joined, ctx.get_array(["r1", "r2"], "peaks"))
    assert list(np.unique(joined["run_id"])) == ["r1", "r2"]
    assert np.all(np.diff(joined["time"]) > 0)
    plain = ctx.get_array("_sr1", "peak_basics", drop_columns=["run_id"])
    parts = [ctx.get_array(r, "peak_basics") for r in ("r1", "r2")]
    assert np.array_equal(plain, np.concatenate(parts))
    chunks = list(ctx.iter_chunks("_sr1", "peaks"))
    assert np.array_equal(np.concatenate([c.data for c in chunks]), joined[list(Peak.dtype.names)])
    doc = ctx.run_metadata("_sr1")
    assert doc["sub_run_spec"] == {"r1": "all", "r2": "all"}
    assert doc["start"] == SECOND and doc["end"] == 2 * SECOND + SECOND // 10
    assert doc["tags"] == ["tr1", "tr2"] and doc["mode"] == "toy"


def test_a_superrun_level_plugin_runs_once_and_is_stored_only_if_asked(ctx: sd.Context) -> None:
    counts = ctx.get_array("_sr1", "peak_counts")
    assert SETUPS == ["_sr1"]  # one instance, on the superrun
    assert counts["n"].sum() == len(ctx.get_array("_sr1", "peaks"))
    assert np.all(counts["time"][1:] == counts["endtime"][:-1])  # gaps joined by empty steps
    key = superrun_key(ctx, "_sr1", "peak_counts")
    assert key.run_id == "_sr1" and not ctx.list_available("peak_counts")
    again = ctx.get_array("_sr1", "peak_counts", save=["peak_counts"])
    assert np.array_equal(again, counts) and SETUPS == ["_sr1", "_sr1"]
    assert open_store(ctx.stores[0].url).find(key) is not None
    assert ctx.list_available("peak_counts") == ["_sr1"]
    assert np.array_equal(ctx.get_array("_sr1", "peak_counts"), counts)
    assert SETUPS == ["_sr1", "_sr1"]  # loaded, not computed
    frame = ctx.runs(available=["peaks", "peak_counts"])
    row = frame.set_index("name").loc["_sr1"]
    assert row["superrun"] and row["peaks_available"] and row["peak_counts_available"]
    # on an ordinary run it is an ordinary plugin
    assert ctx.get_array("r1", "peak_counts")["n"].sum() == len(ctx.get_array("r1", "peaks"))


def test_make_stores_superrun_level_targets(ctx: sd.Context) -> None:
    ctx.make("_sr1", "peak_counts")
    assert ctx.list_available("peak_counts") == ["_sr1"]
    plan = ctx.plan("_sr1", "peak_counts")
    assert isinstance(plan, SuperrunPlan) and plan.to_load == ["peak_counts"]
    per_run = ctx.plan("_sr1", "peak_basics")
    assert list(per_run.subruns) == ["r1", "r2"] and "r1/peak_basics" in per_run.to_compute
    assert "subrun r2:" in str(per_run)


def test_pieces_of_runs_load_only_their_intervals(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "d"), rows_per_chunk=4)  # many Zarr chunks per field
    ctx = sd.Context(store, plugins=PLUGINS, config=SMALL)
    ctx.make(["r1", "r2"], "peaks").raise_if_failed()
    full = ctx.get_array("r1", "peaks")
    iv = (int(full["time"][0]), int(full["endtime"][3]))
    ctx.define_run("_sr2", {"r1": [iv], "r2": "all"})
    # damage the last Zarr chunk of every field of r1's peaks: outside the interval
    peaks_dir = tmp_path / "d" / ctx.key_for("r1", "peaks").path
    last = str((len(full) - 1) // 4)
    for field in Peak.dtype.names:
        (peaks_dir / field / "c" / last).write_bytes(b"damaged")
    with pytest.raises(DataCorrupted):
        ctx.get_array("r1", "peaks")
    got = ctx.get_array("_sr2", "peaks")
    assert list(got["run_id"][:4]) == ["r1"] * 4 and set(got["run_id"][4:]) == {"r2"}
    assert np.array_equal(got[:4][list(Peak.dtype.names)], full[:4])
    assert np.array_equal(got[4:][list(Peak.dtype.names)], ctx.get_array("r2", "peaks"))
    counts = ctx.get_array("_sr2", "peak_counts")
    assert counts["n"].sum() == len(got) and counts["time"][0] == iv[0]


def test_the_lineage_names_the_definition_and_the_subruns_inputs(ctx: sd.Context) -> None:
    ctx.define_run("_sr2", ["r1", "r2", "r3"])
    ctx.define_run("_sr3", {"r1": [(SECOND, SECOND + 5000)], "r2": "all"})
    keys = {sr: superrun_key(ctx, sr, "peak_counts") for sr in ("_sr1", "_sr2", "_sr3")}
    assert len({k.lineage_hash for k in keys.values()}) == 3
    assert superrun_key(ctx, "_sr1", "peak_counts") == keys["_sr1"]  # stable
    other = ctx.new_context(config={"group": 4})  # what the subruns' peaks are made of
    assert superrun_key(other, "_sr1", "peak_counts").lineage_hash != keys["_sr1"].lineage_hash
    lineage = ctx.stores[0]  # the stored lineage spells out subruns and intervals
    ctx.make("_sr3", "peak_counts")
    info = lineage.find(keys["_sr3"])
    assert info is not None
    joined = info.metadata["lineage"]["inputs"]["peaks"]
    spec = joined["options"]["joined_peaks"]
    assert spec[0][:2] == ["r1", [[SECOND, SECOND + 5000]]] and spec[1][:2] == ["r2", "all"]
    assert spec[0][2] == ctx.key_for("r1", "peaks").lineage_hash


def test_errors(ctx: sd.Context) -> None:
    with pytest.raises(DataNotFound, match="superrun '_nope' is not defined"):
        ctx.get_array("_nope", "peaks")
    with pytest.raises(ValueError, match="mix superrun-level and per-run"):
        ctx.get_array("_sr1", ["peaks", "peak_counts"])
    with pytest.raises(ValueError, match="superrun's name starts with '_'"):
        ctx.define_run("sr", ["r1"])
    with pytest.raises(ValueError, match="overlap"):
        ctx.define_run("_bad", {"r1": [(0, 10), (5, 20)]})
    with pytest.raises(ValueError, match="superruns of superruns"):
        ctx.define_run("_sr9", ["_sr1"])


def _bar_line(err: str) -> str:
    """The bar's final line; no subrun showed a bar of its own."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and not [line for line in lines if line.startswith(("r1 ", "r2 "))], lines
    return lines[-1]


def test_one_progress_bar_for_a_superrun_over_its_pieces(
    ctx: sd.Context, capsys: pytest.CaptureFixture[str]
) -> None:
    """Per-run data: one bar for the superrun (none per subrun), naming the subrun being read,
    its fraction the time covered inside the pieces; superrun-level data: the bar of the
    joined stream knows its end (the last piece's)."""
    data_end = 3 * (20 * 100 + 1000)  # the end of RunRecords' data in each run (SMALL)
    pieces = {"r1": [(SECOND, SECOND + data_end)], "r2": [(2 * SECOND, 2 * SECOND + data_end)]}
    ctx.define_run("_pieces", pieces)
    capsys.readouterr()
    rows = ctx.get_array("_pieces", "peak_basics", progress=True)
    line = _bar_line(capsys.readouterr().err)
    assert line.startswith("_pieces peak_basics [2/2 r2] 100% |")
    assert f"{format_count(len(rows))} rows" in line and "done in" in line
    chunks = list(ctx.iter_chunks("_pieces", "peaks", progress=True))
    line = _bar_line(capsys.readouterr().err)
    assert line.startswith("_pieces peaks [2/2 r2] 100% |") and f"{len(chunks)} chunks" in line
    ctx.make("_sr1", "peak_basics", progress=True)  # subruns from their documents
    assert _bar_line(capsys.readouterr().err).startswith("_sr1 peak_basics [2/2 r2] 100% |")
    ctx.get_array("_pieces", "peak_counts", progress=True)  # superrun-level
    assert _bar_line(capsys.readouterr().err).startswith("_pieces peak_counts 100% |")
