"""The scale bench runs end to end on a tiny W1 (every way, a real 2-worker LocalCluster).

Only that it works and that every way stores identical events: speed belongs to the bench
itself, never to a unit test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("distributed")

BENCH = Path(__file__).resolve().parents[2] / "bench" / "scale_bench.py"


def test_scale_bench_prints_every_figure_and_checks_the_stores() -> None:
    argv = ["--runs", "3", "--chunks", "2", "--rows", "2000", "--repeat", "2"]
    proc = subprocess.run(
        [sys.executable, str(BENCH), *argv, "--storage-threads", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    figures = [f["figure"] for f in lines]
    assert figures[:5] == ["setup", "serial", "serial_threaded", "plain_processes", "cluster"]
    assert all(f["storage_threads"] == 0 for f in lines)
    check = lines[figures.index("check")]
    assert check["identical_events"] is True and check["stores"] == 4 and check["events"] > 0
    (judged,) = [f for f in lines if f["figure"] == "speedup" and f.get("vs") == "serial"]
    assert judged["target"] == ">=1.6" and len(judged["per_round"]) == 2
    assert all(len(f["all_seconds"]) == 2 for f in lines[1:5])
