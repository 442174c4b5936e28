"""``strax-decl verify``: the report, ``--json``, ``--sample``, exit codes and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strax_decl.cli import main

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / "examples" / "demo_plugins.py")
SMALL = ["-c", "run_duration=100000000", "-c", "chunk_duration=25000000"]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("verify") / "strax_data")
    assert main(["run", "-p", DEMO, "-s", path, *SMALL, "demo_000", "-q"]) == 0
    return path


@pytest.fixture
def toy_store(tmp_path: Path) -> tuple[str, str]:
    """A store of the toy pipeline with the chunk-dependent ChunkPeaks, and its plugin file."""
    plugins = tmp_path / "toy_plugins.py"
    plugins.write_text("from strax_decl.testing import CHUNK_DEPENDENT_PLUGINS as PLUGINS\n")
    path = str(tmp_path / "strax_data")
    argv = ["run", "-p", str(plugins), "-s", path, "run_1", "chunk_peaks", "peak_basics", "-q"]
    assert main(argv) == 0
    return path, str(plugins)


def test_verify_passes_on_the_demo(capsys: pytest.CaptureFixture[str], demo_store: str) -> None:
    for data_type in ("peaks", "events", "event_basics"):
        code, out, err = run_cli(
            capsys, "verify", "-p", DEMO, "-s", demo_store, *SMALL, "demo_000", data_type
        )
        assert code == 0, err
        assert err == ""
        assert out.startswith(f"verify {data_type} of run 'demo_000'") and "OK" in out


def test_verify_sample_and_json(capsys: pytest.CaptureFixture[str], demo_store: str) -> None:
    argv = ["verify", "-p", DEMO, "-s", demo_store, *SMALL, "demo_000", "peaks"]
    code, out, _ = run_cli(capsys, *argv, "--sample", "2", "--json", "--seed", "3")
    assert code == 0
    report = json.loads(out)
    assert report["ok"] is True and report["problems"] == []
    assert report["checked"] == [0, report["n_chunks"] - 1]
    assert report["plugin"] == "PeakFinder" and len(report["chunkings"]) == 2
    code, out, _ = run_cli(capsys, *argv, "--no-rechunk", "--json")
    assert code == 0 and len(json.loads(out)["chunkings"]) == 1


def test_verify_finds_the_chunk_dependent_plugin(
    capsys: pytest.CaptureFixture[str], toy_store: tuple[str, str]
) -> None:
    path, plugins = toy_store
    code, out, err = run_cli(capsys, "verify", "-p", plugins, "-s", path, "run_1", "chunk_peaks")
    assert code == 1
    assert "chunk-dependent: plugin ChunkPeaks, run 'run_1', chunk_peaks, chunk 0 [" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("strax-decl: error: verify found ")
    assert "chunk-dependent: plugin ChunkPeaks" in lines[0] and "field '" in lines[0]
    code, out, _ = run_cli(
        capsys, "verify", "-p", plugins, "-s", path, "run_1", "chunk_peaks", "--json"
    )
    assert code == 1
    problems = json.loads(out)["problems"]
    assert {p["kind"] for p in problems} == {"chunk_dependent"}
    assert all(p["plugin"] == "ChunkPeaks" and len(p["interval"]) == 2 for p in problems)
    code, _, _ = run_cli(capsys, "verify", "-p", plugins, "-s", path, "run_1", "peak_basics")
    assert code == 0


def test_verify_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], toy_store: tuple[str, str]
) -> None:
    path, plugins = toy_store
    code, _, err = run_cli(capsys, "verify", "-p", plugins, "-s", path, "run_2", "peaks")
    assert code == 1
    assert err.startswith("strax-decl: error: cannot verify 'peaks' of run 'run_2'")
    assert len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "verify", "-p", plugins, "-s", path, "run_1", "peakz")
    assert code == 2 and "unknown target 'peakz' (did you mean 'peaks'?" in err
    code, _, err = run_cli(
        capsys, "verify", "-p", plugins, "-s", path, "run_1", "peaks", "--sample", "0"
    )
    assert code == 2 and "expected a positive integer" in err
