"""Many runs on a Dask cluster vs one after another: W1 scaled down, 8 runs, stored.

    python bench/scale_bench.py [--runs 8] [--chunks 8] [--rows 50000] [--workers 2]
                                [--repeat 3] [--storage-threads 2,1]

W1 (``shared/bench/workloads.md``: records -> peaks -> peak_basics -> events), scaled down to
8 chunks of 50,000 records (96 MB of records) per run, every data type stored. For each storage
pool size in ``--storage-threads`` (``$STORAGE_THREADS``: threads compressing and writing chunks
in each process; 2 is the default) a fresh process measures, best of ``--repeat``, one JSON line
per figure:

- ``serial``: the runs one after another in one process, ``processor="serial"``;
- ``serial_threaded``: the same with the default threaded processor (``max_workers=2``), i.e.
  what ``strax-decl run RUN1,RUN2,...`` does on one machine;
- ``plain_processes``: the runs split over ``--workers`` plain processes (multiprocessing, no
  Dask): the reference for what that many processes can do on this machine;
- ``cluster``: ``ctx.make(runs, "events", client=client)`` on a ``LocalCluster`` of
  ``--workers`` processes with one thread each; each run on one worker with
  ``--worker-processor`` (default serial: one core per worker, the parallelism is the runs),
  Dask's statistical profiler off in the workers (``--dask-profile`` keeps it on);
- ``speedup``: serial (and serial_threaded) time / cluster time, target >= 1.6 on 2 cores;
  ``dask_overhead``: cluster time / plain-processes time.

``cores_busy`` (CPU seconds / wall seconds, all threads; for the cluster, of the worker
processes) shows how much of the machine a figure used: W1 is dominated by compressing and
writing records, which the storage pool already spreads over 2 cores in a single process.
JIT compilation is excluded everywhere (every process first makes a tiny run), and the stores
of all figures are checked to hold identical events. The W1 plugins are defined here (thin,
calling ``workloads.py``); workers import them from this module (module ``scale_bench``, on the
``sys.path`` that worker processes inherit).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
for _p in (str(BENCH_DIR.parent), str(BENCH_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import workloads as wl  # noqa: E402

import strax_decl as sd  # noqa: E402

VERSION = "0.0.1"
TARGET_SPEEDUP = 1.6


# ---------------------------------------------------------------------------------- W1 plugins


class Record(sd.Schema):
    time: sd.i64 = sd.field("start time", unit="ns")
    length: sd.i32 = sd.field("number of samples")
    dt: sd.i16 = sd.field("sample width", unit="ns")
    channel: sd.i16
    area: sd.f32 = sd.field("integral", unit="ADC sample")
    data: sd.array(sd.i16, wl.RECORD_LENGTH)  # type: ignore[valid-type]


class Peak(sd.Schema):
    time: sd.i64 = sd.field("start time", unit="ns")
    length: sd.i32
    dt: sd.i32 = sd.field("sample width", unit="ns")
    area: sd.f32
    n_records: sd.i32
    data: sd.array(sd.f32, wl.PEAK_LENGTH)  # type: ignore[valid-type]


class PeakBasics(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    area: sd.f32
    max_amplitude: sd.f32
    time_of_max: sd.i64
    center_time: sd.i64
    range_50p_area: sd.f32
    range_90p_area: sd.f32


class Event(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    n_peaks: sd.i32
    n_triggers: sd.i32
    area: sd.f32
    largest_peak_area: sd.f32


class RecordSource(sd.Plugin):
    version = VERSION

    class Outputs(sd.Outputs):
        records: Record

    class Options(sd.Options):
        n_chunks: int = sd.option(4, ge=1, description="number of chunks")
        rows_per_chunk: int = sd.option(20_000, ge=1000, description="rows per chunk (x1000)")

    def source(self, run_id: str) -> Iterator[sd.Chunk]:
        for c in range(self.options.n_chunks):
            start, end, data = wl.records_chunk(c, self.options.rows_per_chunk)
            yield sd.Chunk(start, end, data)


class PeakFinder(sd.Plugin):
    version = VERSION
    parallel = True

    class Inputs(sd.Inputs):
        records: Record

    class Outputs(sd.Outputs):
        peaks: Peak

    def compute(self, records: np.ndarray) -> np.ndarray:
        return wl.compute_peaks(records)


class PeakBasicsPlugin(sd.Plugin):
    version = VERSION
    parallel = True

    class Inputs(sd.Inputs):
        peaks: Peak

    class Outputs(sd.Outputs):
        peak_basics: PeakBasics = sd.output(kind="peaks")

    def compute(self, peaks: np.ndarray) -> np.ndarray:
        return wl.compute_peak_basics(peaks)


class EventBuilder(sd.OverlapWindowPlugin):
    version = VERSION
    window = wl.EVENT_WINDOW_NS

    class Inputs(sd.Inputs):
        peak_basics: PeakBasics

    class Outputs(sd.Outputs):
        events: Event

    def compute(self, peaks: np.ndarray, start: int, end: int) -> np.ndarray:
        return wl.compute_events(peaks, start, end)


PLUGINS: list[type[sd.Plugin]] = [RecordSource, PeakFinder, PeakBasicsPlugin, EventBuilder]


# ---------------------------------------------------------------------------------- running


def _plugins() -> list[type[sd.Plugin]]:
    """The plugin classes as workers will see them: from module ``scale_bench``, not __main__."""
    import scale_bench

    return scale_bench.PLUGINS


def context(store: Path, n_chunks: int, rows: int, **settings: Any) -> sd.Context:
    return sd.Context(
        storage=str(store),
        plugins=_plugins(),
        config={"n_chunks": n_chunks, "rows_per_chunk": rows},
        **settings,
    )


def warm_up(store: Path) -> str:
    """A tiny W1 run: compiles every numba kernel in this process (run on each worker too)."""
    size = wl.size_for("W1", "warmup")
    ctx = context(store, size.n_chunks, size.rows_per_chunk, processor="serial")
    ctx.make(f"warmup_{os.getpid()}", "events")
    return "warm"


EXTRA: dict[str, Any] = {}
"""Added to every figure (the storage pool size of this process)."""


def emit(**figure: Any) -> None:
    print(json.dumps({**figure, **EXTRA}), flush=True)


def serial_figure(
    name: str, store: Path, runs: list[str], args: argparse.Namespace, **settings: Any
) -> float:
    """The runs one after another here; best of ``--repeat`` (fresh store each time)."""
    times, cpus = [], []
    for rep in range(args.repeat):
        where = store / f"rep{rep}"
        ctx = context(where, args.chunks, args.rows, **settings)
        c0, t0 = time.process_time(), time.perf_counter()
        for run in runs:
            ctx.make(run, "events")
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        if rep < args.repeat - 1:
            shutil.rmtree(where)
    best = min(range(len(times)), key=times.__getitem__)
    seconds = times[best]
    emit(
        figure=name,
        runs=len(runs),
        seconds=round(seconds, 3),
        all_seconds=[round(t, 3) for t in times],
        cpu_seconds=round(cpus[best], 2),
        cores_busy=round(cpus[best] / seconds, 2),
        **_rates(seconds, runs, args),
        **settings,
    )
    return seconds


def cluster_figure(store: Path, runs: list[str], args: argparse.Namespace, scratch: Path) -> float:
    import dask
    from distributed import Client, LocalCluster

    t_start = time.perf_counter()
    # Dask's statistical profiler samples every worker thread's stack every 10 ms (holding the
    # GIL); for these GIL-releasing, CPU-bound tasks it cost ~15-40% of the cluster's time here.
    profile = {"distributed.worker.profile.enabled": args.dask_profile}
    with (
        dask.config.set(profile),
        LocalCluster(
            n_workers=args.workers,
            processes=True,
            threads_per_worker=1,
            dashboard_address=":0",
            local_directory=str(scratch),
        ) as cluster,
        Client(cluster) as client,
    ):
        startup = time.perf_counter() - t_start
        import scale_bench  # by reference: workers import it, as they do the plugins

        client.run(scale_bench.warm_up, store.parent / "warmup-workers")
        ctx = context(
            store,
            args.chunks,
            args.rows,
            processor=args.worker_processor,
            max_workers=args.worker_threads,
        )
        times, cpus = [], []
        for rep in range(args.repeat):
            ctx = ctx.new_context(storage=str(store / f"rep{rep}"))
            c0 = sum(client.run(time.process_time).values())
            t0 = time.perf_counter()
            result = ctx.make(runs, "events", client=client)
            times.append(time.perf_counter() - t0)
            cpus.append(sum(client.run(time.process_time).values()) - c0)
            result.raise_if_failed()
            if rep < args.repeat - 1:
                shutil.rmtree(store / f"rep{rep}")
    best = min(range(len(times)), key=times.__getitem__)
    seconds = times[best]
    emit(
        figure="cluster",
        runs=len(runs),
        workers=args.workers,
        threads_per_worker=1,
        worker_processor=args.worker_processor,
        worker_max_workers=args.worker_threads,
        dask_profiler=args.dask_profile,
        seconds=round(seconds, 3),
        all_seconds=[round(t, 3) for t in times],
        cpu_seconds_workers=round(cpus[best], 2),
        cores_busy=round(cpus[best] / seconds, 2),
        cluster_startup_s=round(startup, 3),
        **_rates(seconds, runs, args),
    )
    return seconds


def _plain_init(warm_store: str) -> None:
    warm_up(Path(warm_store))


def _plain_part(store: str, runs: list[str], chunks: int, rows: int, processor: str) -> float:
    """In a plain worker process: make ``runs`` one after another; returns CPU seconds."""
    ctx = context(Path(store), chunks, rows, processor=processor, max_workers=1)
    c0 = time.process_time()
    for run in runs:
        ctx.make(run, "events")
    return time.process_time() - c0


def plain_figure(store: Path, runs: list[str], args: argparse.Namespace) -> float:
    """The reference for the cluster: the runs split over ``--workers`` plain processes
    (multiprocessing, no Dask), each making its share one after another. What any scheme of
    that many processes can get on this machine; the cluster figure should come close."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import scale_bench  # by reference, for the spawned processes

    n = args.workers
    times, cpus = [], []
    with ProcessPoolExecutor(
        n,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=scale_bench._plain_init,
        initargs=(str(store.parent / "warmup-plain"),),
    ) as pool:
        list(pool.map(time.sleep, [0.2] * n))  # every process started and warmed up
        for rep in range(args.repeat):
            where = store / f"rep{rep}"
            t0 = time.perf_counter()
            parts = [
                pool.submit(
                    scale_bench._plain_part,
                    str(where),
                    runs[i::n],
                    args.chunks,
                    args.rows,
                    args.worker_processor,
                )
                for i in range(n)
            ]
            cpu = sum(f.result() for f in parts)
            times.append(time.perf_counter() - t0)
            cpus.append(cpu)
            if rep < args.repeat - 1:
                shutil.rmtree(where)
    best = min(range(len(times)), key=times.__getitem__)
    seconds = times[best]
    emit(
        figure="plain_processes",
        runs=len(runs),
        processes=n,
        processor=args.worker_processor,
        seconds=round(seconds, 3),
        all_seconds=[round(t, 3) for t in times],
        cpu_seconds=round(cpus[best], 2),
        cores_busy=round(cpus[best] / seconds, 2),
        **_rates(seconds, runs, args),
    )
    return seconds


def _rates(seconds: float, runs: list[str], args: argparse.Namespace) -> dict[str, float]:
    records_mb = len(runs) * args.chunks * args.rows * wl.RECORD_DTYPE.itemsize / 1e6
    return {"records_MB": round(records_mb, 1), "records_MBps": round(records_mb / seconds, 1)}


def same_events(stores: list[Path], runs: list[str], args: argparse.Namespace) -> int:
    """Every store holds the same events for every run; returns the number of events."""
    contexts = [context(s / f"rep{args.repeat - 1}", args.chunks, args.rows) for s in stores]
    total = 0
    for run in runs:
        arrays = [c.get_array(run, "events") for c in contexts]
        for a in arrays[1:]:
            if a.tobytes() != arrays[0].tobytes():
                raise AssertionError(f"run {run}: the stores hold different events")
        total += len(arrays[0])
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--chunks", type=int, default=8, help="chunks per run")
    parser.add_argument("--rows", type=int, default=50_000, help="records per chunk")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument(
        "--worker-processor",
        default="serial",
        choices=["threaded", "serial"],
        help="processor of each run on a worker (one core each: serial wastes least)",
    )
    parser.add_argument(
        "--worker-threads", type=int, default=1, help="max_workers of each run on a worker"
    )
    parser.add_argument("--skip-threaded", action="store_true", help="no serial_threaded")
    parser.add_argument("--repeat", type=int, default=3, help="best of N per figure")
    parser.add_argument(
        "--storage-threads",
        default="2,1",
        help="storage pool sizes ($STORAGE_THREADS) to measure, each in a fresh process",
    )
    parser.add_argument(
        "--dask-profile",
        action="store_true",
        help="keep Dask's statistical profiler on in the workers (off by default)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.child:
        return _each_storage_setting(args, list(sys.argv[1:] if argv is None else argv))
    EXTRA["storage_threads"] = int(os.environ.get("STORAGE_THREADS", "2"))

    runs = [f"run_{i:03d}" for i in range(args.runs)]
    workdir = Path(tempfile.mkdtemp(prefix="sd_scale_bench_"))
    try:
        warm_up(workdir / "warmup")
        emit(
            figure="setup",
            cpus=os.cpu_count(),
            load_average=[round(x, 2) for x in os.getloadavg()],
            runs=args.runs,
            chunks_per_run=args.chunks,
            records_per_chunk=args.rows,
        )
        stores = [workdir / "serial"]
        serial = serial_figure("serial", stores[0], runs, args, processor="serial")
        threaded = None
        if not args.skip_threaded:
            stores.append(workdir / "serial_threaded")
            threaded = serial_figure(
                "serial_threaded", stores[-1], runs, args, processor="threaded", max_workers=2
            )
        stores.append(workdir / "plain")
        plain = plain_figure(stores[-1], runs, args)
        stores.append(workdir / "cluster")
        cluster = cluster_figure(stores[-1], runs, args, workdir / "dask-scratch")
        n_events = same_events(stores, runs, args)
        emit(figure="check", identical_events=True, events=n_events, stores=len(stores))
        emit(
            figure="speedup",
            vs="serial",
            value=round(serial / cluster, 2),
            target=f">={TARGET_SPEEDUP}",
            met=serial / cluster >= TARGET_SPEEDUP,
        )
        if threaded is not None:
            emit(figure="speedup", vs="serial_threaded", value=round(threaded / cluster, 2))
        emit(figure="speedup", what="plain_processes_vs_serial", value=round(serial / plain, 2))
        emit(figure="dask_overhead", cluster_vs_plain=round(cluster / plain, 2))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _each_storage_setting(args: argparse.Namespace, argv: list[str]) -> int:
    """Run the figures once per storage pool size, each in a fresh process (the pool is
    process-wide and sized when first used; the cluster's workers inherit the setting)."""
    status = 0
    for n in args.storage_threads.split(","):
        env = {**os.environ, "STORAGE_THREADS": n.strip()}
        proc = subprocess.run(
            [sys.executable, __file__, *argv, "--child"], env=env, stdout=subprocess.PIPE
        )
        sys.stdout.write(proc.stdout.decode())
        sys.stdout.flush()
        status = status or proc.returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
