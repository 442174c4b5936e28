"""``strax-decl runs``, ``define-run`` and ``tag``; ``plan`` of a superrun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import strax_decl as sd
from strax_decl.cli import main
from strax_decl.testing import PLUGINS

TESTING = "strax_decl.testing"
SMALL = ["-c", "n_chunks=2", "-c", "rows_per_chunk=20"]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def store(tmp_path: Path) -> str:
    path = str(tmp_path / "data")
    ctx = sd.Context(path, plugins=PLUGINS, config={"n_chunks": 2, "rows_per_chunk": 20})
    ctx.define_run("r1", start=0, end=10**9, mode="tpc_kr83m", tags=["calib"])
    ctx.define_run("r2", start=2 * 10**9, end=3 * 10**9, mode="tpc_bkg", tags=["_blinded"])
    ctx.make("r1", "peaks")
    return path


def test_runs_table_and_json(capsys, store: str) -> None:
    code, out, _ = run_cli(capsys, "runs", "-s", store)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["run", "start"] and lines[1].startswith("r1 ")
    assert "tpc_kr83m" in lines[1] and "_blinded" in lines[2]
    code, out, _ = run_cli(
        capsys, "runs", "-s", store, "-p", TESTING, *SMALL, "-k", "peaks", "--json"
    )
    assert code == 0
    rows = json.loads(out)
    assert [(r["name"], r["peaks_available"]) for r in rows] == [("r1", True), ("r2", False)]
    assert rows[0]["start"] == 0 and rows[0]["tags"] == ["calib"] and rows[0]["livetime"] == 1.0


def test_runs_selection(capsys, store: str) -> None:
    def selected(*args: str) -> list[str]:
        code, out, err = run_cli(capsys, "runs", "-s", store, *args, "--json")
        assert code == 0, err
        return [r["name"] for r in json.loads(out)]

    assert selected("-m", "tpc_*") == ["r1", "r2"]
    assert selected("-t", "blinded") == ["r2"]  # the leading underscore ignored
    assert selected("-x", "cal*") == ["r2"]
    assert selected("--pattern", "r[2-9]") == ["r2"]
    assert selected("--since", "1970-01-01T00:00:01") == ["r2"]
    assert selected("-p", TESTING, *SMALL, "-a", "peaks", "-m", "tpc_*") == ["r1"]
    code, _, err = run_cli(capsys, "runs", "-s", store, "-a", "peaks")
    assert code == 2 and "--available and --check need the plugins" in err


def test_define_run_tag_and_superrun_plan(capsys, store: str) -> None:
    code, out, err = run_cli(
        capsys, "define-run", "-s", store, "r3", "--start", "2024-01-01T00:00:00",
        "--end", "2024-01-01T01:00:00", "--mode", "nv", "--tag", "x", "--comment", "hi",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["livetime"] == 3600.0
    code, out, _ = run_cli(capsys, "tag", "-s", store, "r3", "good")
    assert code == 0 and "added" in out
    code, out, _ = run_cli(capsys, "tag", "-s", store, "r3", "x", "--remove")
    assert code == 0 and "removed" in out
    code, out, _ = run_cli(capsys, "runs", "-s", store, "-t", "good", "--json")
    assert [(r["name"], r["tags"]) for r in json.loads(out)] == [("r3", ["good"])]
    code, _, err = run_cli(capsys, "tag", "-s", store, "r3", "../bad")
    assert code == 2 and "invalid tag" in err
    code, out, err = run_cli(capsys, "define-run", "-s", store, "_sr1", "--subruns", "r1,r2")
    assert code == 0, err
    assert json.loads(out)["sub_run_spec"] == {"r1": "all", "r2": "all"}
    code, out, err = run_cli(capsys, "plan", "-s", store, "-p", TESTING, *SMALL, "_sr1", "peaks")
    assert code == 0, err
    assert out.startswith("superrun _sr1: subruns r1, r2")
    assert "subrun r1:" in out and "load" in out.split("subrun r2:")[0]
    code, out, _ = run_cli(capsys, "runs", "-s", store, "--pattern", "_*")
    assert "superrun" in out.splitlines()[1]
