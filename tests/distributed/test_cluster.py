"""Many runs, parallel chunks and racing clients on a real (local, multi-process) Dask cluster.

One ``LocalCluster`` of 2 worker processes with 1 thread each serves the whole module.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import sd_dist_plugins as dp  # noqa: E402  (after the importorskip)
from sd_dist_helpers import assert_same_store, storage_pool_kind  # noqa: E402

import strax_decl as sd  # noqa: E402
from strax_decl.cluster import ClientSubmit  # noqa: E402
from strax_decl.engine.graph import build_graph  # noqa: E402
from strax_decl.engine.threaded import run_threaded  # noqa: E402
from strax_decl.runs import MultiRunResult, RunsFailed  # noqa: E402
from strax_decl.spec import SpecError  # noqa: E402
from strax_decl.testing import (  # noqa: E402
    TOY_PLUGINS,
    PeakProperties,
    PeakRecordCount,
    ProcessFlakyPeaks,
    ThreadFlakyPeakProperties,
    ThreadFlakyPeaks,
    ToyRecords,
)
from strax_storage import Store, open_store  # noqa: E402

pytestmark = pytest.mark.timeout(120)

RUNS = [f"run_{i}" for i in range(6)]
TARGETS = ["peak_basics", "big_peaks", "peak_extras"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        dashboard_address=":0",
        local_directory=str(tmp_path_factory.mktemp("dask-scratch")),
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(cluster: Any) -> Iterator[Any]:
    with distributed.Client(cluster) as client:
        yield client


def _ctx(
    root: Path | str | Store, plugins: list[type[sd.Plugin]] | None = None, **config: Any
) -> sd.Context:
    storage = root if isinstance(root, Store | str) else str(root)
    return sd.Context(storage=storage, plugins=plugins or TOY_PLUGINS, config=config)


# ------------------------------------------------------------------------------- many runs


def test_six_runs_on_the_cluster_store_what_serial_processing_stores(
    client: Any, tmp_path: Path
) -> None:
    config = {"n_chunks": 6, "rows_per_chunk": 200}
    serial = _ctx(tmp_path / "serial", **config)
    for run in RUNS:
        serial.make(run, TARGETS, processor="serial")

    parallel = _ctx(tmp_path / "cluster", **config)
    result = parallel.make(RUNS, TARGETS, client=client)

    assert isinstance(result, MultiRunResult)
    assert result.succeeded == RUNS and result.failed == {} and result.ok
    result.raise_if_failed()  # nothing to raise
    # the work really was spread over both workers
    assert len({o.where for o in result.outcomes.values()}) == 2
    assert_same_store(serial.stores[0], parallel.stores[0])
    # and it is a normal store: the cluster's results load here
    np.testing.assert_array_equal(
        parallel.get_array("run_3", "peak_basics"), serial.get_array("run_3", "peak_basics")
    )


def test_one_thread_workers_compress_and_write_in_the_run_thread(
    client: Any, tmp_path: Path
) -> None:
    """One thread per worker means one core: no storage threads on top (unless
    $STORAGE_THREADS says otherwise), so N workers on N cores do not oversubscribe them."""
    if any(client.run(os.environ.get, "STORAGE_THREADS").values()):
        pytest.skip("$STORAGE_THREADS is set for the workers: it decides, not the thread count")
    result = _ctx(tmp_path, n_chunks=2, rows_per_chunk=200).make(RUNS, TARGETS, client=client)
    assert result.ok, str(result)
    assert len({o.where for o in result.outcomes.values()}) == 2, "both workers made runs"
    assert set(client.run(storage_pool_kind).values()) == {"InlineExecutor"}


def test_runs_on_the_cluster_write_through_an_fsspec_url(client: Any, tmp_path: Path) -> None:
    """An object store stand-in: workers open the store by URL (fsspec), as they would s3://."""
    config = {"n_chunks": 3, "rows_per_chunk": 200}
    url = f"file://{tmp_path}/object_store"
    result = _ctx(url, **config).make(RUNS[:3], TARGETS, client=client)

    assert result.ok, str(result)
    serial = _ctx(tmp_path / "serial", **config)
    here = _ctx(url, **config)  # a fresh context reading what the workers wrote
    for run in RUNS[:3]:
        serial.make(run, TARGETS, processor="serial")
        for target in TARGETS:
            assert here.plan(run, target).steps[target].action == "load"
            np.testing.assert_array_equal(
                here.get_array(run, target), serial.get_array(run, target)
            )


def test_a_failing_run_is_reported_and_the_other_five_complete(client: Any, tmp_path: Path) -> None:
    plugins = [dp.RunCrashRecords, *TOY_PLUGINS[1:]]
    ctx = _ctx(tmp_path, plugins, n_chunks=4, crash_at_chunk=2, crash_run="run_4")

    result = ctx.make(RUNS, TARGETS, client=client)

    assert result.succeeded == [r for r in RUNS if r != "run_4"]
    assert list(result.failed) == ["run_4"]
    assert "RuntimeError" in result.failed["run_4"]
    assert "crashed on purpose at chunk 2" in result.failed["run_4"]
    assert "Traceback" in (result.outcomes["run_4"].traceback or "")
    for run in result.succeeded:
        assert all(ctx.is_stored(run, t) for t in TARGETS)
    assert not any(ctx.is_stored("run_4", t) for t in ["records", *TARGETS])
    text = str(result)
    assert text.startswith("6 runs: 5 succeeded, 1 failed")
    assert text.splitlines()[1].startswith("  FAILED  run_4: RuntimeError")
    with pytest.raises(RunsFailed, match="run_4") as info:
        result.raise_if_failed()
    assert info.value.result is result


def test_scheduler_address_and_single_run(cluster: Any, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    result = ctx.make("run_0", "peaks", client=cluster.scheduler_address)
    assert result.succeeded == ["run_0"]
    assert ctx.is_stored("run_0", "peaks")


def test_memory_store_is_refused_for_worker_processes(client: Any) -> None:
    ctx = _ctx("memory://sd-dist-test")
    with pytest.raises(SpecError, match="memory"):
        ctx.make(["run_0"], "peaks", client=client)


# ------------------------------------------------------------------------------- no duplicates


def _race(ctx: sd.Context, clients: list[Any], run: str) -> list[MultiRunResult]:
    """Both clients ask for the same data at the same moment."""
    barrier = threading.Barrier(len(clients))
    results: list[MultiRunResult | None] = [None] * len(clients)

    def go(i: int) -> None:
        barrier.wait()
        results[i] = ctx.make([run], TARGETS, client=clients[i])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def _racing_context(root: Path, count_file: Path) -> sd.Context:
    plugins = [ToyRecords, dp.CountingPeaks, PeakProperties, PeakRecordCount]
    return _ctx(root, plugins, n_chunks=8, step_delay_s=0.05, count_file=str(count_file))


def test_two_clients_racing_on_one_data_set_leave_exactly_one_complete_copy(
    cluster: Any, tmp_path: Path
) -> None:
    ctx = _racing_context(tmp_path / "store", tmp_path / "count.txt")
    with distributed.Client(cluster) as c1, distributed.Client(cluster) as c2:
        results = _race(ctx, [c1, c2], "race")
    assert all(r.succeeded == ["race"] for r in results), [str(r) for r in results]

    infos = ctx.stores[0].list("race")
    by_type: dict[str, list[str]] = {}
    for info in infos:
        by_type.setdefault(info.key.data_type, []).append(info.status)
    # one complete data set per data type, no leftovers of the other writer
    assert by_type == {t: ["complete"] for t in ["records", "peaks", *TARGETS]}
    reference = _ctx(tmp_path / "reference", n_chunks=8)
    for t in ["peaks", *TARGETS]:
        np.testing.assert_array_equal(ctx.get_array("race", t), reference.get_array("race", t))


@pytest.mark.skipif(
    not hasattr(Store, "claim"), reason="store claims (issue: no duplicate work) not landed yet"
)
def test_two_clients_racing_compute_the_data_only_once(cluster: Any, tmp_path: Path) -> None:
    count_file = tmp_path / "count.txt"
    ctx = _racing_context(tmp_path / "store", count_file)
    with distributed.Client(cluster) as c1, distributed.Client(cluster) as c2:
        results = _race(ctx, [c1, c2], "race_once")
    assert all(r.succeeded == ["race_once"] for r in results)
    lines = count_file.read_text().splitlines()
    assert len(lines) == 1, f"peaks computed {len(lines)} times: {lines}"


# ------------------------------------------------------------------------------- chunks


def _parallel_plugins() -> list[type[sd.Plugin]]:
    return [ToyRecords, ThreadFlakyPeaks, ThreadFlakyPeakProperties, PeakRecordCount]


def test_parallel_plugin_chunks_run_as_cluster_tasks(client: Any, tmp_path: Path) -> None:
    config = {"n_chunks": 6, "rows_per_chunk": 200}
    local = _ctx(tmp_path / "local", _parallel_plugins(), **config)
    local.make("run_p", TARGETS)
    ctx = _ctx(tmp_path / "cluster", _parallel_plugins(), **config)

    with distributed.get_task_stream(client) as stream:
        result = ctx.make(["run_p"], TARGETS, client=client, parallel_on_client=True)

    assert result.succeeded == ["run_p"], str(result)
    chunk_keys = [str(t["key"]) for t in stream.data if "sd-chunk-run_p" in str(t["key"])]
    # one task per step of each parallel plugin: 6 of ThreadFlakyPeaks, 6 of the properties
    assert len([k for k in chunk_keys if "ThreadFlakyPeaks-" in k]) == 6
    assert len([k for k in chunk_keys if "ThreadFlakyPeakProperties-" in k]) == 6
    assert_same_store(local.stores[0], ctx.stores[0])
    # the run's timing summary still counts the chunk work done elsewhere
    summary = result.outcomes["run_p"].stats or ""
    assert "ThreadFlakyPeaks" in summary


def test_process_parallel_plugins_go_to_the_cluster_too(client: Any, tmp_path: Path) -> None:
    plugins = [ToyRecords, ProcessFlakyPeaks, PeakProperties, PeakRecordCount]
    local = _ctx(tmp_path / "local", n_chunks=4)
    local.make("run_q", TARGETS)
    ctx = _ctx(tmp_path / "cluster", plugins, n_chunks=4)
    with distributed.get_task_stream(client) as stream:
        result = ctx.make(["run_q"], TARGETS, client=client, parallel_on_client=True)
    assert result.ok, str(result)
    keys = [str(t["key"]) for t in stream.data if "sd-chunk-run_q" in str(t["key"])]
    assert len([k for k in keys if "ProcessFlakyPeaks-" in k]) == 4
    for t in TARGETS:
        np.testing.assert_array_equal(ctx.get_array("run_q", t), local.get_array("run_q", t))


def test_a_failing_chunk_task_fails_its_run_only(client: Any, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, _parallel_plugins(), n_chunks=5, peaks_fail_at=0)
    ok = ctx.new_context(config={"peaks_fail_at": -1})
    result = ctx.make(["bad"], TARGETS, client=client, parallel_on_client=True)
    assert list(result.failed) == ["bad"]
    assert "FailedOnPurpose" in result.failed["bad"]
    assert not ctx.is_stored("bad", "peaks")
    assert ok.make(["good"], TARGETS, client=client, parallel_on_client=True).ok


def test_client_submit_keeps_order_and_bounds_work_in_flight(client: Any, tmp_path: Path) -> None:
    ctx = sd.Context(
        storage=None,
        plugins=_parallel_plugins(),
        config={"n_chunks": 12, "rows_per_chunk": 100},
        max_messages=2,
    )
    expected = ctx.get_array("run_b", "peaks", processor="serial")
    plan = ctx.plan("run_b", "peaks")
    graph = build_graph(plan, ctx.registry, ctx.options, ctx.stores, "peaks")
    submit = ClientSubmit(client)
    parts = []
    for chunk in run_threaded(graph, max_messages=2, submit=submit):
        time.sleep(0.05)  # a slow reader: the producer must wait, not pile up tasks
        parts.append(chunk)
    assert [c.start for c in parts] == sorted(c.start for c in parts)
    np.testing.assert_array_equal(np.concatenate([c.data for c in parts]), expected)
    assert submit.submitted == 12
    # the mailbox holds at most 2 messages, plus the one being sent
    assert 1 <= submit.peak_in_flight <= 3
    assert submit.in_flight == 0


# ------------------------------------------------------------------------------- reading


def test_to_dask_computes_on_the_cluster(client: Any, tmp_path: Path) -> None:
    store = open_store(tmp_path, rows_per_chunk=32)
    ctx = _ctx(store, n_chunks=3)
    assert ctx.make(["a", "b"], "peak_basics", client=client).ok
    arrays = ctx.to_dask(["a", "b"], "peak_basics")
    # the workers wrote with the store's tuning (rows per Zarr chunk) carried in the spec
    assert max(arrays["time"].chunks[0]) == 32
    both = np.concatenate([ctx.get_array(r, "peak_basics") for r in ("a", "b")])
    computed = client.compute(arrays).result()
    for name in both.dtype.names or ():
        np.testing.assert_array_equal(computed[name], both[name])


# ------------------------------------------------------------------------------- command line


def test_cli_run_with_scheduler(
    cluster: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from strax_decl.cli import main

    address = cluster.scheduler_address
    # plugins from a file: workers that cannot import it by name load the file itself
    plugin_file = str(Path(dp.__file__).resolve())
    argv = ["run", "--plugins", plugin_file, "--storage", str(tmp_path), "a,b,c", "peaks"]
    crash = ["-c", "crash_at_chunk=1", "-c", "crash_run=b", "--no-progress"]
    code = main([*argv, *crash, "--scheduler", address])
    out, err = capsys.readouterr()
    assert code == 1
    assert out.startswith("3 runs: 2 succeeded, 1 failed")
    assert "FAILED  b: RuntimeError: ToyRecords crashed on purpose at chunk 1" in out
    assert err.strip() == "strax-decl: error: 1 of 3 runs failed: b"

    demo = str(Path(__file__).resolve().parents[2] / "examples" / "demo_plugins.py")
    small = ["-c", "run_duration=100000000", "-c", "chunk_duration=25000000"]
    store = str(tmp_path / "demo")
    code = main(
        [
            "run",
            "--plugins",
            demo,
            "--storage",
            store,
            "d1,d2",
            *small,
            "-q",
            "--scheduler",
            address,
        ]
    )
    out, err = capsys.readouterr()
    assert (code, out, err) == (0, "", "")
    code = main(["ls", "--storage", store])
    out, _ = capsys.readouterr()
    assert code == 0 and "d1" in out and "d2" in out and "failed" not in out


# ------------------------------------------------------------------------------- fresh workers


def test_fresh_workers_next_to_folders_named_storage(tmp_path: Path) -> None:
    """A Dask worker keeps spilled data in ``<local dir>/storage`` and puts its local dir first
    on ``sys.path``; a user's working directory may hold a ``storage`` package of its own.
    Neither shadows the storage layer (imported as ``strax_storage``): on a worker that has
    imported nothing of ours yet, tasks that name strax_decl's functions unpickle and run."""
    import importlib.util
    import os
    import sys

    import strax_storage

    here = tmp_path / "cwd"
    (here / "storage").mkdir(parents=True)
    (here / "storage" / "__init__.py").write_text(
        "raise ImportError('a user package named storage was imported')\n"
    )
    (tmp_path / "scratch" / "storage").mkdir(parents=True)
    saved_path, saved_cwd = list(sys.path), os.getcwd()
    sys.path.insert(0, str(here))  # spawned workers inherit this path and the cwd
    os.chdir(here)
    try:
        cluster = distributed.LocalCluster(
            n_workers=1,
            processes=True,
            threads_per_worker=1,
            dashboard_address=":0",
            local_directory=str(tmp_path / "scratch"),
        )
    finally:
        os.chdir(saved_cwd)
        sys.path[:] = saved_path
    with cluster, distributed.Client(cluster) as fresh:
        ours = fresh.run(lambda: sorted(m for m in sys.modules if m.startswith("strax")))
        assert list(ours.values()) == [[]]  # nothing of ours imported yet
        found = fresh.run(lambda: importlib.util.find_spec("storage").origin)
        assert list(found.values()) == [str(here / "storage" / "__init__.py")]  # the shadow
        ctx = _ctx(tmp_path / "store", _parallel_plugins(), n_chunks=3)
        assert ctx.make(["fresh"], "peaks", client=fresh, parallel_on_client=True).ok
        files = fresh.run(lambda: sys.modules["strax_storage"].__file__)
        assert list(files.values()) == [strax_storage.__file__]
        assert "storage" not in fresh.run(lambda: list(sys.modules)).popitem()[1]
        frame = fresh.compute(ctx.to_dask_dataframe("fresh", "peaks")).result()
        np.testing.assert_array_equal(
            frame["area"].to_numpy(), ctx.get_array("fresh", "peaks")["area"]
        )
