"""The ``strax-decl`` command line: every subcommand, its output, exit codes and errors.

Most tests call ``cli.main(argv)`` in-process (fast, and measured by coverage); a few run the
real console script / ``python -m strax_decl`` in a subprocess to check what users see.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import strax_decl as sd
import strax_decl.testing
from strax_decl.cli import load_plugins, main, parse_config

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / "examples" / "demo_plugins.py")
SMALL = ["-c", "run_duration=100000000", "-c", "chunk_duration=25000000"]
DEMO_TYPES = ["records", "peaks", "peak_basics", "events", "event_basics", "cut_s1", "cut_drift"]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("strax-decl: error: "), err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], (f, err)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store holding the (small) demo run demo_000, made through the CLI once."""
    path = str(tmp_path_factory.mktemp("cli") / "strax_data")
    assert main(["run", "-p", DEMO, "-s", path, *SMALL, "demo_000", "-q"]) == 0
    return path


@pytest.fixture
def own_store(store: str, tmp_path: Path) -> str:
    """A private copy of ``store`` for tests that change it."""
    path = tmp_path / "strax_data"
    shutil.copytree(store, path)
    return str(path)


# --------------------------------------------------------------------------- run


def test_run_then_second_run_computes_nothing(capsys, tmp_path):
    path = str(tmp_path / "s")
    code, out, _ = run_cli(capsys, "run", "-p", DEMO, "-s", path, *SMALL, "demo_000")
    assert code == 0
    assert "demo_000: computed records, peaks, peak_basics, events, event_basics, " in out
    assert "cut_drift computed stored" in " ".join(out.split())
    assert "event_info" not in out  # merge-only: made on the fly, never a default target
    code, out, err = run_cli(capsys, "run", "-p", DEMO, "-s", path, *SMALL, "demo_000")
    assert code == 0, err
    assert "nothing to compute" in out
    assert "computed" not in out.replace("nothing to compute", "")
    ctx = sd.Context(path, plugins=load_plugins(DEMO), config=parse_config(SMALL[1::2]))
    assert all(ctx.is_stored("demo_000", d) for d in DEMO_TYPES)


def test_run_several_runs_with_timing_and_targets(capsys, store, tmp_path):
    path = str(tmp_path / "s")
    code, out, _ = run_cli(
        capsys, "run", "-p", DEMO, "-s", path, *SMALL, "demo_001,demo_002", "peaks", "--timing"
    )
    assert code == 0
    assert "demo_001: computed records, peaks" in out
    assert "demo_002: computed records, peaks" in out
    assert "events" not in out  # only what the target needs
    # The timing summary: one row per plugin and saver, then the wall time.
    assert out.count("component") == 2 and out.count("wall time") == 2
    for name in ("SimRecords", "PeakFinder", "save peaks", "save records"):
        assert name in out


def test_run_loads_what_is_stored_and_shows_timing_of_nothing(capsys, store):
    code, out, _ = run_cli(
        capsys, "run", "-p", DEMO, "-s", store, *SMALL, "demo_000", "events", "--timing"
    )
    assert code == 0
    assert "nothing to compute; already stored: events" in out
    assert "wall time" in out


def test_run_serial_with_progress(capsys, tmp_path):
    path = str(tmp_path / "s")
    code, out, err = run_cli(
        capsys,
        "run",
        "-p",
        DEMO,
        "-s",
        path,
        *SMALL,
        "demo_000",
        "--processor",
        "serial",
        "--max-workers",
        "1",
        "--progress",
        "-q",
    )
    assert code == 0
    assert out == ""
    last = err.strip().splitlines()[-1]
    assert "demo_000 (7 targets) 100%" in last and "done in" in last, err
    assert "rows/s" in last and "chunks/s" in last
    assert re.search(r"[\d.]+ [kMG]?B/s", last), last  # the unit follows the rate


def test_run_is_quiet_on_stderr_when_not_a_terminal(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "-p", DEMO, "-s", str(tmp_path / "s"), *SMALL, "r1")
    assert code == 0 and err == ""


def test_run_default_targets_are_the_ends_of_the_dag(capsys):
    code, out, _ = run_cli(capsys, "plan", "-p", "strax_decl.testing", "-s", "memory://", "r")
    assert code == 0
    # Every data type saved by default, in registration order.
    assert "targets records, peaks, peak_basics, big_peaks, peak_extras:" in out


def test_runtime_failure_exits_1_with_one_line(capsys, tmp_path):
    path = str(tmp_path / "s")
    code, _, err = run_cli(
        capsys,
        "run",
        "-p",
        "strax_decl.testing",
        "-s",
        path,
        "-c",
        "crash_at_chunk=1",
        "r1",
        "peaks",
    )
    assert code == 1
    # Where first (plugin, run, chunk), then what: one line.
    assert_one_line_error(
        err,
        "plugin ToyRecords failed on run r1, after chunk [0, 11000): RuntimeError: ToyRecords "
        "crashed on purpose at chunk 1",
        "--debug",
    )
    code, out, _ = run_cli(capsys, "ls", "-s", path, "--status", "failed")
    assert code == 0 and "records" in out and "failed" in out
    code, out, _ = run_cli(capsys, "info", "-s", path, "r1", "records")
    assert code == 0 and "status     failed" in out
    assert (
        "exception  plugin ToyRecords failed on run r1, after chunk [0, 11000): RuntimeError: "
        "ToyRecords crashed" in out
    )


def test_debug_shows_the_traceback(capsys, tmp_path):
    code, _, err = run_cli(
        capsys,
        "run",
        "--debug",
        "-p",
        "strax_decl.testing",
        "-s",
        str(tmp_path / "s"),
        "-c",
        "crash_at_chunk=0",
        "r1",
        "peaks",
    )
    assert code == 1
    assert "Traceback (most recent call last)" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(
        "strax-decl: error: plugin ToyRecords failed on run r1, before its first chunk: "
        "RuntimeError"
    )


# --------------------------------------------------------------------------- plan


def test_plan_says_load_or_compute_and_why(capsys, store):
    code, out, _ = run_cli(
        capsys, "plan", "-p", DEMO, "-s", store, *SMALL, "demo_000", "event_basics"
    )
    assert code == 0
    assert out.startswith("Plan for run 'demo_000', targets event_basics:")
    assert "event_basics [EventBasics," in out and "load (stored in" in out
    code, out, _ = run_cli(
        capsys,
        "plan",
        "-p",
        DEMO,
        "-s",
        store,
        *SMALL,
        "-c",
        "peak_gap=300",
        "demo_000,demo_009",
        "events",
    )
    assert code == 0
    first, second = out.split("\n\n")
    assert "records [SimRecords" in first and "load (stored in" in first
    assert "peaks [PeakFinder" in first and "peak_gap: 200 -> 300" in first
    assert "demo_009" in second and "compute (not stored)" in second


# --------------------------------------------------------------------------- ls / info


def test_ls_lists_every_data_set(capsys, store):
    code, out, _ = run_cli(capsys, "ls", "-s", store)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == [
        "run",
        "data",
        "type",
        "lineage",
        "status",
        "rows",
        "chunks",
        "on",
        "disk",
        "ratio",
        "created",
    ]
    rows = [line.split() for line in lines[1:]]
    assert sorted(r[1] for r in rows) == sorted(DEMO_TYPES)
    for r in rows:
        assert r[0] == "demo_000" and r[3] == "complete"
        assert len(r[2]) == 16  # lineage hash
        assert int(r[4]) >= 0 and int(r[5]) >= 1  # rows, chunks (savers may rechunk)
        assert float(r[8]) > 0  # compression ratio
    records = next(r for r in rows if r[1] == "records")
    assert float(records[8]) > 1.5  # noisy waveforms still compress


def test_ls_filters(capsys, store):
    code, out, _ = run_cli(capsys, "ls", "-s", store, "demo_000", "--data-type", "peaks")
    assert code == 0 and len(out.strip().splitlines()) == 2 and " peaks " in out
    code, out, err = run_cli(capsys, "ls", "-s", store, "--status", "failed")
    assert code == 0 and out == "" and "no data sets" in err


def test_info_shows_metadata_fields_and_lineage(capsys, store):
    code, out, _ = run_cli(capsys, "info", "-s", store, "demo_000", "peaks")
    assert code == 0
    assert "status     complete" in out
    assert "plugin     PeakFinder version 0.1.0" in out
    assert "kind       peaks" in out
    assert "zstd level" in out and "crc32c" in out
    # Fields with type, unit and description.
    assert "area          float32" in out and "PE" in out and "total area of the hits" in out
    assert "data          float32[50]" in out
    # The lineage tree, down to the source and its options.
    assert "peaks <- PeakFinder 0.1.0 (gain=50.0, hit_threshold=10.0, peak_gap=200)" in out
    assert "  records <- SimRecords 0.1.0 (" in out and "run_duration=100000000" in out


def test_info_json_and_hash_prefix(capsys, store):
    ctx = sd.Context(store, plugins=load_plugins(DEMO), config=parse_config(SMALL[1::2]))
    lineage_hash = ctx.key_for("demo_000", "events").lineage_hash
    code, out, _ = run_cli(
        capsys, "info", "-s", store, "demo_000", "events", lineage_hash[:4], "--json"
    )
    assert code == 0
    attrs = json.loads(out)["strax_decl"]
    assert attrs["complete"] is True and attrs["lineage_hash"] == lineage_hash
    assert attrs["metadata"]["lineage"] == ctx.lineage("events")


def store_records_of_a_second_lineage(store: str) -> None:
    """``own_store`` holds demo_000 records; store them again with another seed."""
    argv = ["run", "-p", DEMO, "-s", store, *SMALL, "-c", "seed=1", "demo_000", "records", "-q"]
    assert main(argv) == 0


def test_info_ambiguous_needs_a_hash_prefix(capsys, own_store):
    store_records_of_a_second_lineage(own_store)
    code, _, err = run_cli(capsys, "info", "-s", own_store, "demo_000", "records")
    assert code == 2
    assert_one_line_error(err, "2 data sets match", "give a hash prefix")


# --------------------------------------------------------------------------- graph


def test_graph_text(capsys):
    code, out, _ = run_cli(capsys, "graph", "-p", DEMO)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == ["data", "type", "kind", "plugin", "reads"]
    assert lines[1].split() == ["records", "records", "SimRecords", "0.1.0", "(source)"]
    events = next(line for line in lines if line.startswith("events "))
    assert events.split()[-2:] == ["peaks,", "peak_basics"]


def test_graph_dot_and_mermaid(capsys):
    code, out, _ = run_cli(capsys, "graph", "-p", DEMO, "--format", "dot")
    assert code == 0
    assert out.startswith("digraph strax_decl {") and out.rstrip().endswith("}")
    assert '"records" -> "peaks";' in out and '"peak_basics" -> "events";' in out
    assert out.count("fillcolor=") == len(DEMO_TYPES) + 1  # + event_info
    code, out, _ = run_cli(capsys, "graph", "-p", DEMO, "-f", "mermaid", "peak_basics")
    assert code == 0
    assert out.startswith("flowchart LR")
    assert "records --> peaks" in out and "peaks --> peak_basics" in out
    assert "events" not in out  # only the target and what it needs
    assert "class peaks,peak_basics kind1" in out


def test_graph_keeps_multi_output_plugins_whole(capsys):
    code, out, _ = run_cli(capsys, "graph", "-p", "strax_decl.testing", "big_peaks")
    assert code == 0
    assert "peak_basics" in out and "peak_extras" not in out


# --------------------------------------------------------------------------- rm


def test_rm_one_data_set(capsys, own_store):
    code, out, _ = run_cli(capsys, "rm", "-s", own_store, "demo_000", "events", "-n")
    assert code == 0 and out.startswith("would remove demo_000/events-")
    code, out, _ = run_cli(capsys, "rm", "-s", own_store, "demo_000", "events")
    assert code == 0 and out.startswith("removed demo_000/events-")
    code, out, _ = run_cli(capsys, "ls", "-s", own_store)
    assert " events " not in out and " event_basics " in out
    code, _, err = run_cli(capsys, "rm", "-s", own_store, "demo_000", "events")
    assert code == 1
    assert_one_line_error(err, "no stored data set for run 'demo_000', data type 'events'")


def test_rm_all_lineages(capsys, own_store):
    store_records_of_a_second_lineage(own_store)
    code, out, _ = run_cli(capsys, "rm", "-s", own_store, "demo_000", "records", "--all")
    assert code == 0 and out.count("removed demo_000/records-") == 2


def test_rm_failed(capsys, tmp_path):
    path = str(tmp_path / "s")
    assert main(["run", "-p", "strax_decl.testing", "-s", path, "r1", "peaks", "-q"]) == 0
    assert (
        main(
            [
                "run",
                "-p",
                "strax_decl.testing",
                "-s",
                path,
                "-c",
                "crash_at_chunk=2",
                "-c",
                "seed=5",
                "r1",
                "peaks",
                "-q",
            ]
        )
        == 1
    )
    capsys.readouterr()
    code, out, _ = run_cli(capsys, "rm", "-s", path, "--failed")
    assert code == 0
    assert out.count("removed") == 2 and "r1/records-" in out and "r1/peaks-" in out
    code, out, _ = run_cli(capsys, "ls", "-s", path)
    assert out.count("complete") == 2 and "failed" not in out
    code, _, err = run_cli(capsys, "rm", "-s", path, "--failed")
    assert code == 0 and "no failed" in err


_KILLED_WRITER = """
import os, sys
import strax_decl as sd
import strax_decl.testing
from strax_storage import DataKey, open_store

key = DataKey("r1", "hits", "abcdefgh")
saver = open_store(sys.argv[1]).saver(key, sd.testing.Record.dtype, {})
saver.send(sd.Chunk(0, 10, sd.testing.Record.zeros(0)))
os._exit(9)  # killed mid-write: no close, no cleanup
"""


def test_rm_failed_removes_leftovers_of_killed_writers(capsys, tmp_path):
    from strax_storage import DataKey, open_store

    killed = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(tmp_path)], check=False)
    assert killed.returncode == 9
    store = open_store(str(tmp_path))
    key = DataKey("r1", "hits", "abcdefgh")
    code, out, _ = run_cli(capsys, "ls", "-s", str(tmp_path))
    assert out.splitlines()[1].split()[:4] == ["r1", "hits", "abcdefgh", "failed"]
    code, out, _ = run_cli(capsys, "rm", "-s", str(tmp_path), "--failed", "r1")
    assert code == 0 and out.strip() == "removed r1/hits-abcdefgh"
    assert store.status(key) == "absent" and store.list() == []
    assert sorted(p.name for p in (tmp_path / "r1").iterdir()) == ["zarr.json"]  # no claim


def test_rm_failed_leaves_a_live_writer_alone(capsys, tmp_path):
    from strax_storage import DataKey, open_store

    store = open_store(str(tmp_path))
    key = DataKey("r1", "hits", "abcdefgh")
    saver = store.saver(key, sd.testing.Record.dtype, {})  # this process: alive, still writing
    saver.send(sd.Chunk(0, 10, sd.testing.Record.zeros(0)))
    code, out, _ = run_cli(capsys, "ls", "-s", str(tmp_path))
    assert "writing" in out
    code, out, err = run_cli(capsys, "rm", "-s", str(tmp_path), "--failed")
    assert code == 0 and out == "" and "no failed data sets" in err
    saver.send(sd.Chunk(10, 20, sd.testing.Record.zeros(0)))
    saver.close()
    assert store.status(key) == "complete" and store.info(key).n_chunks == 2


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (
            ["run", "-p", DEMO, "demo_000", "pekas"],
            [
                "unknown target 'pekas'",
                "did you mean 'peaks'?",
                "registered: cut_drift, cut_s1, event_basics",
            ],
        ),
        (
            ["run", "-p", DEMO, *SMALL, "-c", "peak_gap=-5", "demo_000"],
            ["option 'peak_gap' of plugin PeakFinder", "greater than or equal to 0", "-5"],
        ),
        (["run", "-p", DEMO, "-c", "peak_gap=wide", "demo_000"], ["peak_gap", "'wide'"]),
        (
            ["run", "-p", DEMO, "-c", "no_such_option=1", "demo_000"],
            ["unknown option 'no_such_option'"],
        ),
        (["run", "-p", DEMO, "-c", "peak_gap", "demo_000"], ["--config expects KEY=VALUE"]),
        (["run", "-p", DEMO, "bad/run"], ["invalid run_id 'bad/run'"]),
        (["run", "-p", DEMO, ",", "peaks"], ["no run id given"]),
        (["run", "-p", DEMO, "--max-workers", "0", "r"], ["expected a positive integer"]),
        (["run", "-p", DEMO, "--processor", "gpu", "r"], ["invalid choice: 'gpu'"]),
        (["run", "demo_000"], ["the following arguments are required: --plugins"]),
        (["run", "-p", "no_such_module_xyz", "r"], ["cannot import plugin module"]),
        (["run", "-p", "nowhere/plugins.py", "r"], ["plugin file 'nowhere/plugins.py' not found"]),
        (["run", "-p", "json", "r"], ["no plugins found in 'json'"]),
        (["frobnicate"], ["invalid choice: 'frobnicate'"]),
        ([], ["the following arguments are required: COMMAND"]),
        (["ls", "bad/run"], ["invalid run_id"]),
        (["ls", "--data-type", "9x"], ["invalid data_type '9x'"]),
        (["graph", "-p", DEMO, "--format", "png"], ["invalid choice: 'png'"]),
        (["rm"], ["rm needs RUN DATA_TYPE"]),
        (["rm", "--failed", "r", "peaks"], ["rm --failed takes at most a run id"]),
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, store, argv, fragments):
    if argv and argv[0] in ("ls", "rm"):
        argv = [*argv, "-s", store]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (code, out, err)
    assert_one_line_error(err, *fragments)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["info", "nosuchrun", "peaks"], "no stored data set for run 'nosuchrun'"),
        (["info", "demo_000", "peaks", "zzzz"], "lineage hash zzzz*"),
        (["ls", "nosuchrun"], "no data sets for run 'nosuchrun'"),
        (["rm", "nosuchrun", "peaks"], "no stored data set for run 'nosuchrun'"),
    ],
)
def test_unknown_run_or_data_set_exits_1(capsys, store, argv, fragment):
    code, _, err = run_cli(capsys, *argv, "-s", store)
    assert code == 1
    assert_one_line_error(err, fragment)


def test_ls_of_a_missing_store_says_it_is_empty_and_creates_nothing(capsys, tmp_path):
    code, _, err = run_cli(capsys, "ls", "-s", str(tmp_path / "nothing"))
    assert code == 0
    assert "no data sets in" in err and "does not exist" in err
    assert not (tmp_path / "nothing").exists()


def test_plugin_file_that_fails_to_import_is_reported(capsys, tmp_path):
    bad = tmp_path / "bad_plugins.py"
    bad.write_text("raise ImportError('numba is broken today')\n")
    code, _, err = run_cli(capsys, "graph", "-p", str(bad))
    assert code == 1
    assert_one_line_error(err, "numba is broken today")


def test_plugins_from_a_module_name_without_plugins_list(capsys):
    names = [p.name for p in load_plugins("strax_decl.testing")]
    assert names == ["ToyRecords", "Peaks", "PeakProperties", "PeakRecordCount"]
    assert load_plugins(DEMO) == load_plugins(DEMO)  # a file is imported once


def test_parse_config_values():
    assert parse_config(["a=1", "b=1.5", "c=[1, 2]", "d=text", "e=", "f=true", "g=x=y"]) == {
        "a": 1,
        "b": 1.5,
        "c": [1, 2],
        "d": "text",
        "e": "",
        "f": True,
        "g": "x=y",
    }


# --------------------------------------------------------------------------- the real thing


def test_version_and_help_through_the_console_script():
    out = subprocess.run(
        ["strax-decl", "--version"]
        if shutil.which("strax-decl")
        else [sys.executable, "-m", "strax_decl", "--version"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0
    assert out.stdout.strip() == f"strax-decl {sd.__version__}"


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("run", "plan", "ls", "info", "graph", "rm"):
        assert f"    {cmd} " in out


def test_error_through_python_m(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "strax_decl", "run", "-p", DEMO, "-s", str(tmp_path), "r", "pekas"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stdout == ""
    assert_one_line_error(out.stderr, "unknown target 'pekas'")


def test_corrections_add_tag_list_and_append_only(tmp_path, capsys):
    path = str(tmp_path / "c.sqlite")
    assert main(["corrections", path, "add", "gain", "v1", "[1.5, 2.5]", "--runs", "r1,r2"]) == 0
    assert main(["corrections", path, "add", "elife", "v1", "500", "--start", "0"]) == 0
    assert main(["corrections", path, "tag", "gv1", "gain=v1", "elife=v1"]) == 0
    capsys.readouterr()
    assert main(["corrections", path, "list"]) == 0
    out = capsys.readouterr().out
    assert "[0, for ever)" in out and "global version gv1: elife=v1, gain=v1" in out
    assert main(["corrections", path, "add", "gain", "v1", "3", "--runs", "r1"]) == 1
    err = capsys.readouterr().err
    assert "already holds [1.5, 2.5] for run r1" in err and "append-only" in err
    assert main(["corrections", path, "list", "gain", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [v["run_id"] for v in listed["values"]] == ["r1", "r2"]


def test_run_takes_a_timeout_and_refuses_a_bad_one(capsys, tmp_path):
    store = str(tmp_path / "data")
    code, _, err = run_cli(
        capsys, "run", "-p", "strax_decl.testing", "-s", store, "--timeout", "30", "-q", "r1"
    )
    assert code == 0, err
    code, _, err = run_cli(capsys, "run", "-p", "strax_decl.testing", "--timeout", "0", "r1")
    assert code == 2 and "--timeout: expected a positive number, got '0'" in err
