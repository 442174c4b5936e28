"""docs/scaling.md's LocalCluster example runs as users run it: copied into a script file and
started with ``python3 scale_demo.py`` in a subprocess (its ``__main__`` guard is what lets
the spawned worker processes import the script again)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("distributed")

REPO = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def script_block() -> str:
    blocks = FENCE.findall((REPO / "docs" / "scaling.md").read_text())
    scripts = [b for b in blocks if 'if __name__ == "__main__":' in b]
    assert len(scripts) == 1, "scaling.md shows one script with a __main__ guard"
    return scripts[0]


def test_the_scaling_example_runs_as_a_script(tmp_path: Path) -> None:
    script = tmp_path / "scale_demo.py"
    script.write_text(script_block())
    (tmp_path / "examples").symlink_to(REPO / "examples")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 runs: 3 succeeded, 0 failed" in done.stdout, done.stdout
    from strax_storage import open_store

    stored = open_store(str(tmp_path / "scaled_data")).list(data_type="event_basics")
    assert sorted(i.key.run_id for i in stored if i.complete) == ["run_a", "run_b", "run_c"]
