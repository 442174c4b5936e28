"""``ctx.verify``: stored data recomputed from its stored inputs and compared, and the same
check for plugin authors (``strax_decl.testing.check_chunking_independence``).

Real stores in ``tmp_path``, the threaded executor writing them, no mocks.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import test_kinds_properties as kp  # the plugin kinds, from the property tests beside this
from hypothesis import HealthCheck, given, settings

import strax_decl as sd
from strax_decl import testing
from strax_decl.cli import load_plugins
from strax_decl.testing import (
    CHUNK_DEPENDENT_PLUGINS,
    TOY_PLUGINS,
    check_chunking_independence,
    chunkings,
)
from strax_decl.verify import VerifyReport, pick_chunks
from strax_storage import DataNotFound

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / "examples" / "demo_plugins.py")
DEMO_CONFIG = {"run_duration": 100_000_000, "chunk_duration": 20_000_000}
TOY_TYPES = ["records", "peaks", "peak_basics", "big_peaks", "peak_extras"]
RUN = "run_1"


def toy_store(path: Path, plugins: list[type[sd.Plugin]] = CHUNK_DEPENDENT_PLUGINS) -> sd.Context:
    ctx = sd.Context(str(path), plugins=plugins)
    targets = ["peak_basics", "big_peaks", "peak_extras"]
    if testing.ChunkPeaks in plugins:
        targets.append("chunk_peaks")
    ctx.make(RUN, targets)
    return ctx


def stored_files(ctx: sd.Context, data_type: str) -> list[Path]:
    root = Path(ctx.stores[0].url.removeprefix("file://")) / ctx.key_for(RUN, data_type).path
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != "zarr.json")


# --------------------------------------------------------------------------- it passes


def test_verify_passes_on_the_toy_pipeline(tmp_path: Path) -> None:
    """Overlap window (peaks), multi-output with a same-kind output (peak_basics, big_peaks),
    two input kinds (peak_extras) and the source: all recompute to what is stored."""
    ctx = toy_store(tmp_path / "data", TOY_PLUGINS)
    for data_type in TOY_TYPES:
        report = ctx.verify(RUN, data_type)
        assert report.ok, str(report)
        assert isinstance(report, VerifyReport)
        assert report.checked == list(range(report.n_chunks)) and report.n_chunks > 0
        assert "OK" in str(report) and data_type in str(report)
    report = ctx.verify(RUN, "peaks")
    assert len(report.chunkings) == 2 and "random times (seed 0)" in report.chunkings[1]
    assert report.stored_code_hash == report.code_hash == testing.Peaks.code_hash
    source = ctx.verify(RUN, "records")
    assert source.ok and any("source" in n for n in source.notes)


def test_verify_passes_on_the_demo_pipeline(tmp_path: Path) -> None:
    """Parallel, overlap-window, loop and cut plugins of the demo (examples/demo_plugins.py)."""
    ctx = sd.Context(str(tmp_path / "data"), plugins=load_plugins(DEMO), config=DEMO_CONFIG)
    stored = ["records", "peaks", "peak_basics", "events", "event_basics", "cut_s1", "cut_drift"]
    ctx.make("demo_000", ["event_basics", "cut_s1", "cut_drift", "peak_basics"])
    for data_type in stored:
        report = ctx.verify("demo_000", data_type, sample=3, seed=7)
        assert report.ok, str(report)
        assert len(report.checked) == min(3, report.n_chunks)
        assert report.checked[0] == 0 and report.checked[-1] == report.n_chunks - 1


def test_verify_saves_nothing_and_computes_missing_inputs_in_memory(tmp_path: Path) -> None:
    ctx = toy_store(tmp_path / "data", TOY_PLUGINS)
    ctx.stores[0].remove(ctx.key_for(RUN, "peaks"))
    before = sorted(str(i.key) for i in ctx.stores[0].list(RUN))
    report = ctx.verify(RUN, "peak_basics")
    assert report.ok, str(report)
    assert "not stored, computed in memory: peaks" in report.notes
    assert sorted(str(i.key) for i in ctx.stores[0].list(RUN)) == before


def test_sampling_is_first_last_and_seeded_others() -> None:
    assert pick_chunks(10, None, 0) == list(range(10))
    assert pick_chunks(3, 5, 0) == [0, 1, 2]
    assert pick_chunks(10, 1, 0) == [0]
    four = pick_chunks(10, 4, 3)
    assert len(four) == 4 and four[0] == 0 and four[-1] == 9
    assert pick_chunks(10, 4, 3) == four  # deterministic from the seed
    assert {tuple(pick_chunks(50, 5, s)) for s in range(5)} != {tuple(four)}


def test_verify_refuses_what_is_not_stored_and_bad_arguments(tmp_path: Path) -> None:
    ctx = sd.Context(str(tmp_path / "data"), plugins=TOY_PLUGINS)
    with pytest.raises(DataNotFound, match=r"cannot verify 'peaks' of run 'run_1'.*not stored"):
        ctx.verify(RUN, "peaks")
    with pytest.raises(KeyError, match="unknown data type 'nope'"):
        ctx.verify(RUN, "nope")
    with pytest.raises(ValueError, match="sample must be a positive integer"):
        ctx.verify(RUN, "peaks", sample=0)


def kinds_config() -> dict[str, object]:
    """Clumped, overlapping hits and disjoint windows, chunked where no row is cut."""
    rng = np.random.default_rng(5)
    times = np.sort(np.concatenate([c + rng.integers(-4000, 4000, 15) for c in (9e3, 4e4, 8e4)]))
    hits = tuple((int(t), int(n)) for t, n in zip(times, rng.integers(1, 1200, 45), strict=True))
    windows = tuple((a, a + 3000) for a in range(2000, 110_000, 9000))

    def bounds(intervals: list[tuple[int, int]]) -> tuple[int, ...]:
        cuts = range(7001, kp.RUN_END, 13_000)
        return tuple(b for b in cuts if not any(t < b < e for t, e in intervals))

    return {
        "hit_rows": hits,
        "window_rows": windows,
        "hit_bounds": bounds([(t, t + n) for t, n in hits]),
        "window_bounds": bounds(list(windows)),
        "crowd_ns": 1500,
    }


def test_verify_passes_on_every_plugin_kind(tmp_path: Path) -> None:
    """Overlap windows, loop, two kinds time-synced, cut and down-chunking
    (tests/core/test_kinds_properties.py's plugins), stored by the threaded executor."""
    ctx = sd.Context(str(tmp_path / "data"), plugins=kp.PLUGINS, config=kinds_config())
    stored = [t for t in kp.ALL_TARGETS if t != "hit_info"]  # merge-only: not stored
    for target in stored:
        ctx.make(RUN, target)
    for target in stored:
        report = ctx.verify(RUN, target, seed=2)
        assert report.ok, str(report)
        assert len(report.chunkings) == 2
        check_chunking_independence(kp.PLUGINS, target, config=kinds_config())
    with pytest.raises(DataNotFound):
        ctx.verify(RUN, "hit_info")


# --------------------------------------------------------------------------- it finds


def test_verify_finds_the_chunk_dependent_plugin(tmp_path: Path) -> None:
    ctx = toy_store(tmp_path / "data")
    report = ctx.verify(RUN, "chunk_peaks", seed=1)
    assert not report.ok and report.kinds() == {"chunk_dependent"}
    first = report.problems[0]
    assert (first.plugin, first.run_id, first.data_type) == ("ChunkPeaks", RUN, "chunk_peaks")
    assert first.interval is not None and first.field in ("time", "endtime", "area", "n_records")
    text = str(first)
    assert text.startswith("chunk-dependent: plugin ChunkPeaks, run 'run_1', chunk_peaks, chunk")
    assert f"[{first.interval[0]}, {first.interval[1]})" in text and repr(first.field) in text
    assert "chunk-dependent" in report.summary()
    # With the stored chunking it recomputes exactly what is stored.
    assert ctx.verify(RUN, "chunk_peaks", rechunk=False).ok
    # The fixed toy plugins downstream of the same records are not chunk-dependent.
    assert ctx.verify(RUN, "peaks", seed=1).ok


def _changed_peak_properties() -> type[sd.Plugin]:
    """``PeakProperties`` edited without a version bump: same name and version, other rows."""

    class PeakProperties(testing.PeakProperties):
        version = testing.PeakProperties.version

        def compute(self, peaks: np.ndarray) -> dict[str, np.ndarray]:
            out = super().compute(peaks)
            out["peak_basics"]["width"] += 1
            return out

    return PeakProperties


def test_verify_finds_an_unversioned_code_change(tmp_path: Path) -> None:
    ctx = toy_store(tmp_path / "data", TOY_PLUGINS)
    changed = ctx.new_context(plugins=[_changed_peak_properties()])
    key = changed.key_for(RUN, "peak_basics")
    assert key == ctx.key_for(RUN, "peak_basics")  # an explicit version: same lineage
    with pytest.warns(sd.StaleVersionWarning):  # what loading it says
        changed.plan(RUN, "peak_basics")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # verify reports it instead of warning
        report = changed.verify(RUN, "peak_basics")
    assert report.kinds() == {"code_changed"}
    assert report.stored_code_hash == testing.PeakProperties.code_hash != report.code_hash
    assert all(p.field == "width" and p.plugin == "PeakProperties" for p in report.problems)
    nonempty = [i for i, c in enumerate(ctx.stores[0].load(key)) if len(c)]
    assert sorted(p.chunk for p in report.problems) == nonempty  # every chunk with rows
    assert "unversioned code change: plugin PeakProperties" in str(report)
    assert any("bump the version" in n for n in report.notes)
    # with a changed code hash a sample is not enough: every chunk is compared
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sampled = changed.verify(RUN, "peak_basics", sample=1, seed=0)
    assert not sampled.ok and sorted(p.chunk for p in sampled.problems) == nonempty
    # big_peaks, its other output, did not change: verified fine, with a note on the hash.
    other = changed.verify(RUN, "big_peaks")
    assert other.ok and any("the rows of every stored chunk agree" in n for n in other.notes)


OFFSET = {"value": 0.0}


class Scaled(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    scaled: sd.f64 = sd.field("area plus a module-level offset")


class ScaledPeaks(sd.Plugin):
    """Reads a module-level value the code hash cannot see."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        peaks: testing.Peak

    class Outputs(sd.Outputs):
        scaled_peaks: Scaled = sd.output(kind="peaks")

    def compute(self, peaks: np.ndarray) -> np.ndarray:
        out = Scaled.zeros(len(peaks))
        out["time"], out["endtime"] = peaks["time"], peaks["endtime"]
        out["scaled"] = peaks["area"] + OFFSET["value"]
        return out


def test_verify_finds_rows_that_differ_with_the_same_code(tmp_path: Path) -> None:
    ctx = sd.Context(str(tmp_path / "data"), plugins=[*TOY_PLUGINS, ScaledPeaks])
    ctx.make(RUN, "scaled_peaks")
    assert ctx.verify(RUN, "scaled_peaks").ok
    OFFSET["value"] = 0.5
    try:
        report = ctx.verify(RUN, "scaled_peaks", sample=3)
    finally:
        OFFSET["value"] = 0.0
    assert report.kinds() == {"mismatch"} and len(report.checked) == 3
    stored = list(ctx.stores[0].load(ctx.key_for(RUN, "scaled_peaks")))
    assert [p.chunk for p in report.problems] == [i for i in report.checked if len(stored[i])]
    assert report.problems[0].field == "scaled"
    assert "differs from the stored rows: plugin ScaledPeaks" in str(report)


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_verify_finds_corruption_of_the_data_set_naming_the_file(tmp_path: Path) -> None:
    ctx = toy_store(tmp_path / "data", TOY_PLUGINS)
    damaged = next(p for p in stored_files(ctx, "peaks") if p.parent.parent.name == "area")
    _flip_a_byte(damaged)
    report = ctx.verify(RUN, "peaks")
    assert "corrupted" in report.kinds()
    problem = next(p for p in report.problems if p.kind == "corrupted")
    assert (problem.plugin, problem.data_type) == ("Peaks", "peaks")
    assert problem.where is not None and str(damaged).endswith(problem.where.split("://")[-1])
    assert "area" in str(problem) and problem.chunk is not None
    # The same damage found while loading the input of a downstream data type.
    downstream = ctx.verify(RUN, "peak_basics")
    assert downstream.kinds() == {"corrupted"}
    assert downstream.problems[0].plugin == "Peaks"
    assert downstream.problems[0].data_type == "peaks"


# --------------------------------------------------------------------------- for authors


def test_check_chunking_independence_passes_on_the_toy_plugins() -> None:
    for target in ("peaks", "peak_basics", "big_peaks", "peak_extras"):
        rows = check_chunking_independence(TOY_PLUGINS, target)
        assert target in rows and len(rows[target]) > 0
    rows = check_chunking_independence(TOY_PLUGINS, "peaks", chunkings=[[0.5], [0.1, 0.11]])
    assert len(rows["peaks"]) == 80


def test_check_chunking_independence_names_plugin_chunk_and_field() -> None:
    with pytest.raises(AssertionError) as caught:
        check_chunking_independence(CHUNK_DEPENDENT_PLUGINS, "chunk_peaks", chunkings=[[0.5]])
    text = str(caught.value)
    assert text.startswith("plugin ChunkPeaks, run 'run_1', output 'chunk_peaks': ")
    assert "chunk [0, " in text and "field '" in text and "single chunk" in text
    with pytest.raises(ValueError, match="source"):
        check_chunking_independence(TOY_PLUGINS, "records")


def test_check_chunking_independence_on_the_demo_kinds() -> None:
    """Loop (event_basics), overlap window (events), cut and parallel plugins."""
    plugins = load_plugins(DEMO)
    for target in ("peaks", "events", "event_basics", "cut_s1"):
        check_chunking_independence(plugins, target, config=DEMO_CONFIG, run_id="demo_000")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=chunkings(max_cuts=6))
def test_hypothesis_chunkings_of_an_overlap_window_plugin(cuts: tuple[float, ...]) -> None:
    assert list(cuts) == sorted(cuts) and all(0 < c < 1 for c in cuts)
    check_chunking_independence(TOY_PLUGINS, "peak_extras", chunkings=[cuts])


def test_testing_imports_without_hypothesis(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "hypothesis.py").write_text("raise ImportError('no hypothesis here')\n")
    code = (
        "import strax_decl.testing as t\n"
        "t.check_chunking_independence(t.TOY_PLUGINS, 'peaks')\n"
        "try:\n    t.chunkings()\nexcept ImportError as e:\n    print('lazy', e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "lazy no hypothesis here" in done.stdout
