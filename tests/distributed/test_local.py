"""The parts of the Dask face that need no cluster: specs, multi-run results, the submit hook,
reading into Dask with its local scheduler, and working without Dask installed."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.runs import MultiRunResult, RunOutcome, RunsFailed
from strax_decl.spec import ContextSpec, PluginRef, SpecError
from strax_decl.testing import TOY_PLUGINS, ThreadFlakyPeaks, ToyRecords
from strax_storage import DataNotFound, open_store

ROOT = Path(__file__).resolve().parents[2]


def _ctx(root: Path, **config: object) -> sd.Context:
    return sd.Context(storage=str(root), plugins=TOY_PLUGINS, config=dict(config))


def _python(code: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ------------------------------------------------------------------------------- optional Dask


def test_importing_strax_decl_never_imports_dask() -> None:
    proc = _python(
        """
        import sys
        import strax_decl, strax_decl.context, strax_decl.cluster, strax_decl.cli
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed"))
        assert not loaded, loaded
        """
    )
    assert proc.returncode == 0, proc.stderr


def test_everything_else_works_without_dask(tmp_path: Path) -> None:
    """Dask made unimportable: processing works, Dask features say what to install."""
    proc = _python(
        f"""
        import sys
        class NoDask:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("dask", "distributed"):
                    raise ImportError(f"No module named {{name!r}} (hidden by the test)")
                return None
        sys.meta_path.insert(0, NoDask())

        import strax_decl as sd
        from strax_decl.testing import TOY_PLUGINS
        ctx = sd.Context({str(tmp_path)!r}, TOY_PLUGINS)
        ctx.make("r0", "peak_basics")
        result = ctx.make(["r1", "r2"], "peak_basics")
        assert result.succeeded == ["r1", "r2"], str(result)
        assert len(ctx.get_array("r1", "peak_basics")) == 80
        for call in (lambda: ctx.to_dask("r0", "peak_basics"),
                     lambda: ctx.make(["r3"], "peaks", client="tcp://127.0.0.1:1")):
            try:
                call()
            except ImportError as e:
                assert "strax-decl[dask]" in str(e), e
            else:
                raise AssertionError("no ImportError")
        print("ok")
        """
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


# ------------------------------------------------------------------------------- specs


def test_spec_round_trip_and_pickled_context(tmp_path: Path) -> None:
    store = open_store(tmp_path, rows_per_chunk=64, zstd_level=5)
    ctx = sd.Context(
        storage=store,
        plugins=TOY_PLUGINS,
        config={"n_chunks": 2, "group": 4},
        max_workers=3,
        max_messages=7,
    )
    spec = ctx.spec()
    again = sd.Context.from_spec(pickle.loads(pickle.dumps(spec)))
    assert [p.name for p in again.plugins] == [p.name for p in ctx.plugins]
    assert again.config == ctx.config
    assert (again.max_workers, again.max_messages) == (3, 7)
    # every keyword-only setting of Context travels (processor, timeout, on_conflict, ...)
    assert {"processor", "max_workers", "max_messages", "timeout"} <= set(spec.settings)
    for name, value in spec.settings.items():
        assert getattr(again, name) == value, name
    assert again.stores[0].url == store.url
    assert (again.stores[0].rows_per_chunk, again.stores[0].zstd_level) == (64, 5)
    for data_type in ("records", "peaks", "peak_basics", "peak_extras"):
        assert again.key_for("r", data_type) == ctx.key_for("r", data_type)
    copy = pickle.loads(pickle.dumps(ctx))  # a Context pickles as its spec
    assert isinstance(copy, sd.Context)
    assert copy.key_for("r", "peaks") == ctx.key_for("r", "peaks")


def test_spec_refuses_other_plugin_code_and_unreachable_stores(tmp_path: Path) -> None:
    spec = _ctx(tmp_path).spec()
    bad = ContextSpec(
        spec.plugins,
        spec.storage,
        spec.config,
        spec.settings,
        {**spec.lineage_hashes, "peaks": "0" * 16},
    )
    with pytest.raises(SpecError, match=r"peaks.*Peaks.*same plugin code"):
        sd.Context.from_spec(bad)
    with pytest.raises(SpecError, match="anonymous in-memory"):
        sd.Context(storage="memory://", plugins=TOY_PLUGINS).spec()
    named = sd.Context(storage="memory://sd-spec-test", plugins=TOY_PLUGINS)
    named.make("r", "peaks")
    assert sd.Context.from_spec(named.spec()).is_stored("r", "peaks")  # same process: shared


def test_plugin_refs_resolve_by_module_then_by_file(tmp_path: Path) -> None:
    assert PluginRef.of(ToyRecords).resolve() is ToyRecords
    with pytest.raises(SpecError, match="no plugin class"):
        PluginRef("strax_decl.testing", "NoSuchPlugin").resolve()
    with pytest.raises(SpecError, match="cannot import module"):
        PluginRef("no_such_module_sd", "X").resolve()
    with pytest.raises(SpecError, match="__main__"):
        PluginRef("__main__", "X", None).resolve()

    # a plugin file that is not importable by name (as with `strax-decl run --plugins f.py`)
    plugin_file = tmp_path / "my_file_plugins.py"
    plugin_file.write_text(
        textwrap.dedent(
            """
            import strax_decl as sd
            from strax_decl.testing import Peaks

            class FilePeaks(Peaks):
                version = "auto"

            def _make(n):
                return type(f"Made{n}", (Peaks,), {"version": "9"})

            MADE = [_make(1), _make(2)]
            """
        )
    )
    proc = _python(
        f"""
        import pickle
        from strax_decl.spec import PluginRef
        for module in ("my_file_plugins", "__main__"):
            ref = PluginRef(module, "FilePeaks", {str(plugin_file)!r})
            cls = ref.resolve()
            assert cls.name == "FilePeaks" and cls.version.startswith("auto-"), cls
        made = PluginRef("my_file_plugins", "Made2", {str(plugin_file)!r}).resolve()
        assert made.name == "Made2" and made.version == "9"
        print("ok")
        """,
        cwd=tmp_path.parent,  # the file's directory is not on sys.path
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


# ------------------------------------------------------------------------------- many runs here


def test_several_runs_without_a_client_run_here_and_report_failures(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, n_chunks=3)
    result = ctx.make(["a", "b"], "peaks")
    assert isinstance(result, MultiRunResult)
    assert result.succeeded == ["a", "b"] and result.ok
    assert {o.where for o in result.outcomes.values()} == {"local"}
    crashing = ctx.new_context(config={"crash_at_chunk": 1}, storage=str(tmp_path / "crash"))
    result = crashing.make(("a", "b"), "peaks")
    assert result.succeeded == []
    assert set(result.failed) == {"a", "b"}
    with pytest.raises(RunsFailed, match="2 runs: 0 succeeded, 2 failed"):
        result.raise_if_failed()
    # one run, no client: unchanged (returns nothing, raises)
    assert ctx.make("c", "peaks") is None
    with pytest.raises(RuntimeError, match="crashed on purpose"):
        crashing.make("c", "peaks")


def test_make_argument_checks(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    with pytest.raises(ValueError, match="needs a client"):
        ctx.make("a", "peaks", parallel_on_client=True)
    with pytest.raises(ValueError, match="needs a client"):
        ctx.make(["a"], "peaks", parallel_on_client=True)
    with pytest.raises(ValueError, match="no run ids"):
        ctx.make([], "peaks")
    with pytest.raises(ValueError, match="run_id"):
        ctx.make(["a", "bad/run"], "peaks")
    with pytest.raises(ValueError, match="submit"):
        ctx.make(["a"], "peaks", submit=ThreadPoolExecutor(1).submit)  # type: ignore[call-overload]


def test_summary_text() -> None:
    result = MultiRunResult(
        {
            "a": RunOutcome("a", True, seconds=1.5, where="tcp://w1"),
            "b": RunOutcome("b", False, error="ValueError: bad things"),
        },
        seconds=2.0,
    )
    assert str(result) == (
        "2 runs: 1 succeeded, 1 failed in 2.00 s\n"
        "  FAILED  b: ValueError: bad things\n"
        "  ok      a  (1.50 s on tcp://w1)"
    )
    assert result.failed == {"b": "ValueError: bad things"}


def test_submit_hook_takes_any_executor(tmp_path: Path) -> None:
    plugins = [ToyRecords, ThreadFlakyPeaks]
    ctx = sd.Context(storage=str(tmp_path), plugins=plugins, config={"n_chunks": 5}, max_workers=1)
    calls: list[str] = []
    with ThreadPoolExecutor(2) as pool:

        def submit(fn, *args):  # type: ignore[no-untyped-def]
            calls.append(getattr(fn, "__name__", "?"))
            return pool.submit(fn, *args)

        ctx.make("a", "peaks", submit=submit)
    assert calls == ["compute_step"] * 5  # used although max_workers=1
    reference = sd.Context(storage=None, plugins=TOY_PLUGINS, config={"n_chunks": 5})
    np.testing.assert_array_equal(ctx.get_array("a", "peaks"), reference.get_array("a", "peaks"))


# ------------------------------------------------------------------------------- reading into Dask


def test_to_dask_arrays_equal_get_array_one_block_per_zarr_chunk(tmp_path: Path) -> None:
    pytest.importorskip("dask.array")
    store = open_store(tmp_path, rows_per_chunk=64)
    ctx = sd.Context(storage=store, plugins=TOY_PLUGINS, config={"n_chunks": 5})
    assert ctx.make(["a", "b"], ["peak_basics", "records"]).ok

    records = ctx.to_dask("a", "records")
    expected = ctx.get_array("a", "records")
    assert set(records) == set(expected.dtype.names or ())
    assert records["data"].shape == expected["data"].shape  # sub-array field: 2-D
    assert records["time"].numblocks == (-(-len(expected) // 64),)
    for name, array in records.items():
        np.testing.assert_array_equal(array.compute(scheduler="sync"), expected[name])

    both = ctx.to_dask(["a", "b"], "peak_basics", fields=["time", "mean_area"])
    assert list(both) == ["time", "mean_area"]
    joined = np.concatenate([ctx.get_array(r, "peak_basics") for r in ("a", "b")])
    np.testing.assert_array_equal(both["mean_area"].compute(), joined["mean_area"])


def test_to_dask_dataframe_equals_get_df(tmp_path: Path) -> None:
    pytest.importorskip("dask.dataframe")
    store = open_store(tmp_path, rows_per_chunk=32)
    ctx = sd.Context(storage=store, plugins=TOY_PLUGINS, config={"n_chunks": 3})
    ctx.make(["a", "b"], ["peak_basics", "records"])

    frame = ctx.to_dask_dataframe("a", "peak_basics")
    expected = ctx.get_df("a", "peak_basics")
    assert frame.npartitions == -(-len(expected) // 32)
    assert frame.known_divisions
    got = frame.compute()
    assert list(got.columns) == list(expected.columns)
    for column in expected.columns:
        np.testing.assert_array_equal(got[column].to_numpy(), expected[column].to_numpy())
    np.testing.assert_array_equal(got.index.to_numpy(), np.arange(len(expected)))

    records = ctx.to_dask_dataframe(["a", "b"], "records")
    assert "data" not in records.columns  # sub-array fields left out
    assert "run_id" in records.columns
    assert records["run_id"].compute().tolist().count("b") == len(ctx.get_array("b", "records"))
    with pytest.raises(ValueError, match="sub-arrays"):
        ctx.to_dask_dataframe("a", "records", fields=["time", "data"])


def test_to_dask_needs_stored_data(tmp_path: Path) -> None:
    pytest.importorskip("dask.array")
    ctx = _ctx(tmp_path)
    with pytest.raises(DataNotFound, match=r"make it first: ctx.make\('a', 'peaks'\)"):
        ctx.to_dask("a", "peaks")
    ctx.make("a", "peaks")
    with pytest.raises(KeyError, match="no field"):
        ctx.to_dask("a", "peaks", fields=["nope"])
    empty = _ctx(tmp_path / "empty", n_chunks=0)
    empty.make("e", "peaks")
    arrays = empty.to_dask("e", "peaks")
    assert arrays["time"].shape == (0,) and len(arrays["time"].compute()) == 0
    pytest.importorskip("dask.dataframe")
    assert len(empty.to_dask_dataframe("e", "peaks").compute()) == 0
