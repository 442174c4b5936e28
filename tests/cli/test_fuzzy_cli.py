"""``strax-decl plan --fuzzy-for``: the plan shows a fuzzy load (and the warning), through
the entry point in a subprocess; an unknown name is a usage error (exit 2)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ENTRY = shutil.which("strax-decl", path=str(Path(sys.executable).parent))
CMD = [ENTRY] if ENTRY else [sys.executable, "-m", "strax_decl"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CMD, *args], capture_output=True, text=True, timeout=120)


def test_plan_fuzzy_for(tmp_path: Path) -> None:
    toy = ["-p", "strax_decl.testing", "-s", str(tmp_path / "data")]
    made = cli("run", *toy, "r1", "peak_basics", "-c", "group=1", "-q")
    assert made.returncode == 0, made.stderr
    exact = cli("plan", *toy, "r1", "peak_basics", "-c", "group=2")
    assert exact.returncode == 0 and "FUZZY" not in exact.stdout
    assert "peak_basics [PeakProperties" in exact.stdout and "compute" in exact.stdout
    fuzzy = cli("plan", *toy, "r1", "peak_basics", "-c", "group=2", "--fuzzy-for", "Peaks")
    assert fuzzy.returncode == 0, fuzzy.stderr
    assert "load (FUZZY: stored in" in fuzzy.stdout
    assert "differs in Peaks.options.group 1 -> 2" in fuzzy.stdout
    assert "FuzzyLoadWarning" in fuzzy.stderr
    wrong = cli("plan", *toy, "r1", "peak_basics", "--fuzzy-for", "Peeks")
    assert wrong.returncode == 2 and "did you mean 'Peaks'?" in wrong.stderr, wrong.stderr
