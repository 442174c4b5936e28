"""The README's main job, as a user runs it: the demo, then the CLI, in a fresh directory."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEMO_PLUGINS = str(REPO / "examples" / "demo_plugins.py")
STORED = ["records", "peaks", "peak_basics", "events", "event_basics", "cut_s1", "cut_drift"]


def readme_main_job() -> str:
    readme = (REPO / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)\n```", readme, re.S)[0].strip()


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out


def metadata_files(store: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in sorted(store.rglob("zarr.json"))}


def test_readme_main_job_then_the_cli_computes_nothing(tmp_path):
    job = readme_main_job()
    assert job == "python3 -m pip install -e . && python3 examples/demo.py"
    demo = job.split("&& ")[1].split()[1]  # the package is installed already (we run in it)

    first = run([sys.executable, str(REPO / demo)], cwd=tmp_path)
    assert "compute (not stored)" in first.stdout
    assert "Computed 7 data types" in first.stdout and "PeakFinder" in first.stdout
    store = tmp_path / "strax_data"
    assert store.is_dir()
    before = metadata_files(store)

    # Second run, through the command line: everything is stored, nothing is computed.
    second = run(
        [
            sys.executable,
            "-m",
            "strax_decl",
            "run",
            "--plugins",
            DEMO_PLUGINS,
            "demo_000",
            "--timing",
        ],
        cwd=tmp_path,
    )
    assert second.stdout.startswith("demo_000: nothing to compute; already stored: records, ")
    summary = second.stdout.split("component", 1)[1]
    for plugin in ("SimRecords", "PeakFinder", "EventFinder", "save "):
        assert plugin not in summary
    plan = run(
        [sys.executable, "-m", "strax_decl", "plan", "--plugins", DEMO_PLUGINS, "demo_000"],
        cwd=tmp_path,
    )
    assert plan.stdout.count(": load (stored in") == len(STORED)
    assert "compute" not in plan.stdout

    third = run([sys.executable, str(REPO / demo)], cwd=tmp_path)
    assert "Nothing computed: all 7 data types were loaded from the cache." in third.stdout
    assert "compute" not in third.stdout.split("Run demo_000")[0]  # the plan: all loads
    assert metadata_files(store) == before  # nothing was rewritten


def test_demo_physics_is_sane(demo):
    ctx = demo
    o = ctx.options["SimRecords"]
    peaks = ctx.get_array("demo_000", ["peaks", "peak_basics"])
    events = ctx.get_array("demo_000", "event_info")
    assert set(events.dtype.names) >= {"s1_area", "s2_area", "drift_time", "cut_s1", "cut_drift"}
    expected = o.event_rate * o.run_duration / 1e9
    assert 0.6 * expected < len(events) < 1.3 * expected
    # One S2 per interaction, close to the simulated mean number of photons.
    s2 = peaks[peaks["peak_type"] == 2]
    assert abs(np.median(s2["area"]) - o.s2_photons) < 0.1 * o.s2_photons
    assert (s2["width"] > ctx.options["PeakBasics"].s1_max_width).all()
    s1 = peaks[peaks["peak_type"] == 1]
    assert abs(np.median(s1["area"]) - o.s1_photons) < 0.25 * o.s1_photons
    good = events[events["cut_s1"] & events["cut_drift"]]
    assert len(good) > 0.7 * len(events)
    assert ((good["drift_time"] >= 5_000) & (good["drift_time"] <= 95_000)).all()
    # Dark counts: single-photon peaks on one channel, not S1s.
    lone = peaks[peaks["n_channels"] == 1]
    assert len(lone) > len(s1) and (lone["peak_type"] != 1).all()


def test_demo_is_deterministic_across_processors_and_runs(demo, tmp_path):
    ctx = demo
    serial = ctx.new_context(storage=str(tmp_path), processor="serial")
    for data_type in STORED:
        np.testing.assert_array_equal(
            serial.get_array("demo_000", data_type), ctx.get_array("demo_000", data_type)
        )
    other = serial.get_array("demo_001", "records")
    assert len(other) and not np.array_equal(other[:10], ctx.get_array("demo_000", "records")[:10])


def test_demo_store_metadata_documents_every_field(demo):
    ctx = demo
    for data_type in STORED:
        store = ctx.stores[0]
        info = store.info(ctx.key_for("demo_000", data_type))
        fields = info.metadata["fields"]
        assert set(fields) == set(ctx.registry.dtype(data_type).names)
        for name, doc in fields.items():
            assert doc["description"], (data_type, name)
        assert json.dumps(info.metadata["lineage"])  # plain JSON
