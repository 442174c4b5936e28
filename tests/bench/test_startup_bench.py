"""The start-up bench runs end to end (one round, one run in the store) and prints one JSON
line per command; speed is the bench's business, so only the shape and the imports are
checked here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "startup_bench.py"


def test_startup_bench_prints_one_line_per_command() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--repeat", "1", "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [f["figure"] for f in lines] == ["startup_help", "startup_version", "startup_ls"]
    for figure in lines:
        assert figure["median_s"] > 0 and figure["python_s"] > 0 and figure["repeat"] == 1
        assert figure["heavy"] == [], figure  # no zarr, numba, pandas, dask, pydantic
    assert lines[2]["command"] == "strax-decl ls --storage $TMP/strax_data"
