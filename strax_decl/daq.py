"""A toy DAQ: a writer process appending raw chunks to a directory, and a live source reading it.

The writer (``write_run``, or ``python -m strax_decl.daq DIR RUN --chunks N --interval S``)
writes the records of ``ToyRecords`` (same options, same rows, same chunks), one file per
chunk, each made visible at once by a rename, and an ``END`` file when the run is over.
``DAQRecords`` is a live source (``live = True``) reading that directory: it yields each chunk
as its file appears, ``sd.NOT_YET`` while the next one is not there, and ends at ``END``. So a
live run and a batch run of ``ToyRecords`` give the same records, chunk for chunk.

``RecordSums`` is a plain plugin (one row per record) whose data sets can be resumed after a
kill (``strax_decl.resuming``); ``die_at`` kills its own process with SIGKILL at a chunk, for
tests of that.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

import strax_decl as sd
from strax_decl.runner import NOT_YET

__all__ = [
    "RECORD_SAMPLES",
    "DAQRecords",
    "Record",
    "RecordSum",
    "RecordSums",
    "toy_chunks",
    "write_run",
]

END = "END"
RECORD_SAMPLES = 8


class Record(sd.Schema):
    time: sd.i64 = sd.field("start time", unit="ns")
    length: sd.i32 = sd.field("samples in the record")
    dt: sd.i16 = sd.field("sample width", unit="ns")
    channel: sd.i16 = sd.field("channel number")
    area: sd.f32 = sd.field("integral", unit="ADC")
    data: sd.array(sd.i16, RECORD_SAMPLES) = sd.field("waveform", unit="ADC")  # type: ignore[valid-type]


def toy_chunks(n_chunks: int, rows_per_chunk: int, seed: int) -> Iterator[sd.Chunk]:
    """The chunks ``ToyRecords`` makes with these options."""
    rng = np.random.default_rng(seed)
    chunk_ns = rows_per_chunk * 100 + 1000
    for i in range(n_chunks):
        start = i * chunk_ns
        rows = Record.zeros(rows_per_chunk)
        rows["time"] = start + 100 * np.arange(rows_per_chunk)
        rows["length"] = RECORD_SAMPLES
        rows["dt"] = 10
        rows["channel"] = np.arange(rows_per_chunk) % 4
        rows["data"] = rng.integers(0, 100, size=(rows_per_chunk, RECORD_SAMPLES))
        rows["area"] = rows["data"].sum(axis=1)
        yield sd.Chunk(start, start + chunk_ns, rows)


def write_run(
    directory: str | os.PathLike[str],
    run_id: str,
    n_chunks: int,
    *,
    rows_per_chunk: int = 100,
    seed: int = 0,
    interval: float = 0.0,
) -> None:
    """Write ``n_chunks`` chunks of ``run_id`` under ``directory/run_id``, one every
    ``interval`` seconds, then ``END``."""
    folder = Path(directory) / run_id
    folder.mkdir(parents=True, exist_ok=True)
    for i, chunk in enumerate(toy_chunks(n_chunks, rows_per_chunk, seed)):
        if i and interval:
            time.sleep(interval)
        tmp = folder / f".{i:08d}.partial"
        with open(tmp, "wb") as f:
            np.save(f, np.array([chunk.start, chunk.end], dtype=np.int64))
            np.save(f, chunk.data)
        os.replace(tmp, folder / f"{i:08d}.npy")  # a reader sees a whole chunk or none
    (folder / END).write_text(str(n_chunks))


class DAQRecords(sd.Plugin):
    """Records of a run as the toy DAQ writes them (a live source)."""

    version = "0.1.0"
    live = True

    class Outputs(sd.Outputs):
        records: Record

    class Options(sd.Options):
        daq_dir: str = sd.option("./daq", track=False, description="where the DAQ writes")
        rows_per_chunk: int = sd.option(100, ge=0, description="records per chunk")
        seed: int = sd.option(0, description="random seed of the waveforms")

    def source(self, run_id: str) -> Iterator[Any]:  # chunks, or NOT_YET
        folder = Path(self.options.daq_dir) / run_id
        i = 0
        while True:
            path = folder / f"{i:08d}.npy"
            if path.exists():
                with open(path, "rb") as f:
                    start, end = np.load(f)
                    rows = np.load(f)
                yield sd.Chunk(int(start), int(end), rows)
                i += 1
            elif (folder / END).exists() and not path.exists():
                return
            else:
                yield NOT_YET


class RecordSum(sd.Schema):
    time: sd.i64 = sd.field("start time", unit="ns")
    endtime: sd.i64 = sd.field("end time", unit="ns")
    area: sd.f64 = sd.field("integral of the waveform", unit="ADC")
    peak: sd.i16 = sd.field("highest sample", unit="ADC")


class RecordSums(sd.Plugin):
    """One row per record: its integral and highest sample (plain, resumable)."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        records: Record

    class Outputs(sd.Outputs):
        record_sums: RecordSum = sd.output(kind="records")

    class Options(sd.Options):
        die_at: int = sd.option(-1, track=False, description="SIGKILL at this chunk (tests)")
        work: int = sd.option(0, track=False, description="extra work per chunk (bench)")

    def setup(self) -> None:
        self._calls = 0

    def compute(self, records: np.ndarray) -> np.ndarray:
        if self._calls == self.options.die_at:
            os.kill(os.getpid(), signal.SIGKILL)
        self._calls += 1
        out = RecordSum.zeros(len(records))
        out["time"] = records["time"]
        out["endtime"] = records["time"] + records["length"].astype(np.int64) * records["dt"]
        data = records["data"].astype(np.float64)
        for _ in range(self.options.work):
            data = np.sqrt(data * data)
        out["area"] = data.sum(axis=1)
        out["peak"] = records["data"].max(axis=1) if len(records) else 0
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m strax_decl.daq", description=__doc__)
    parser.add_argument("directory")
    parser.add_argument("run_id")
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--rows", type=int, default=100, help="records per chunk")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between chunks")
    args = parser.parse_args(argv)
    write_run(
        args.directory,
        args.run_id,
        args.chunks,
        rows_per_chunk=args.rows,
        seed=args.seed,
        interval=args.interval,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
