"""Live runs fed by a DAQ writer process, final-prefix reads from another process, and
resuming after SIGKILL (real processes, real stores; scaled down: bench/live_bench.py has
the full sizes)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.testing import DAQRecords, RecordSums, ToyRecords
from strax_storage import open_store

PIPELINE = textwrap.dedent(
    """
    import sys
    import strax_decl as sd
    from strax_storage import open_store
    from strax_decl.testing import {source}, RecordSums
    ctx = sd.Context(open_store({root!r}, rows_per_chunk=64), plugins=[{source}, RecordSums],
                     config={config!r})
    ctx.make({run!r}, "record_sums", save=["records"], progress=False)
    """
)


def pipeline(root: Path, source: str, config: dict, run: str = "r1") -> subprocess.Popen:
    code = PIPELINE.format(root=str(root), source=source, config=config, run=run)
    return subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)


def context(root: Path, source: type, config: dict) -> sd.Context:
    return sd.Context(
        open_store(root, rows_per_chunk=64), plugins=[source, RecordSums], config=config
    )


def test_live_run_grows_and_equals_the_batch_run(tmp_path: Path) -> None:
    daq = tmp_path / "daq"
    n = 25
    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "strax_decl.daq",
            str(daq),
            "r1",
            "--chunks",
            str(n),
            "--rows",
            "50",
            "--interval",
            "0.08",
        ]
    )
    config = {"daq_dir": str(daq), "rows_per_chunk": 50}
    run = pipeline(tmp_path / "live", "DAQRecords", config)
    reader = context(tmp_path / "live", DAQRecords, config)
    seen: list[np.ndarray] = []
    deadline = time.monotonic() + 60
    while run.poll() is None and time.monotonic() < deadline:  # the third process: us
        try:
            seen.append(reader.get_array("r1", "record_sums", allow_incomplete=True))
        except sd.StraxDeclError:
            pass
        except Exception as e:  # DataNotFound before the saver starts
            assert "neither stored complete nor being written" in str(e)
        time.sleep(0.05)
    assert writer.wait(30) == 0 and run.wait(30) == 0, run.stderr.read().decode()  # type: ignore[union-attr]
    final = reader.get_array("r1", "record_sums")
    sizes = [len(s) for s in seen]
    assert sizes == sorted(sizes) and len(set(sizes)) >= 3  # it grew while the run ran
    for s in seen:  # only final prefixes: row by row a prefix of the final result
        assert s.tobytes() == final[: len(s)].tobytes()
    batch = context(tmp_path / "batch", ToyRecords, {"n_chunks": n, "rows_per_chunk": 50})
    assert batch.get_array("r1", "record_sums").tobytes() == final.tobytes()
    live_chunks = [(c.start, c.end) for c in reader.iter_chunks("r1", "records")]
    batch_chunks = [(c.start, c.end) for c in batch.iter_chunks("r1", "records")]
    assert live_chunks == batch_chunks
    assert reader.get_array("r1", "records").tobytes() == batch.get_array("r1", "records").tobytes()


def test_interrupting_a_live_run_waiting_for_data(tmp_path: Path) -> None:
    """A live source waiting for data (no END yet) is stopped like any run."""
    daq = tmp_path / "daq"
    from strax_decl.daq import write_run

    write_run(daq, "r1", 3, rows_per_chunk=20)
    (daq / "r1" / "END").unlink()
    ctx = context(tmp_path / "s", DAQRecords, {"daq_dir": str(daq), "rows_per_chunk": 20})
    t0 = time.monotonic()
    it = ctx.iter_chunks("r1", "records")
    got = [next(it) for _ in range(3)]
    it.close()  # the caller stops reading while the source waits
    assert len(got) == 3 and time.monotonic() - t0 < 10
    assert ctx.plan("r1", "records").to_compute == ["records"]  # discarded, not complete


@pytest.mark.parametrize("die_at", [10, 17, 30])
def test_resume_after_sigkill_is_bit_identical(tmp_path: Path, die_at: int) -> None:
    config = {"n_chunks": 40, "rows_per_chunk": 50}
    clean = context(tmp_path / "clean", ToyRecords, config)
    clean.make("r1", "record_sums", save=["records"], progress=False)
    root = tmp_path / "killed"
    context(root, ToyRecords, config).make("r1", "records", progress=False)
    killed = pipeline(root, "ToyRecords", {**config, "die_at": die_at})
    assert killed.wait(60) == -9
    ctx = context(root, ToyRecords, config)
    progress = ctx.stores[0].progress(ctx.key_for("r1", "record_sums"))
    # the saver may lag the plugin by a few chunks: killed early, nothing may be final yet
    resumable = progress is not None and progress.resumable
    assert resumable or die_at < 20
    plan = ctx.plan("r1", "record_sums")
    assert plan.to_resume == (["record_sums"] if resumable else []), plan
    if resumable:
        assert "resume after chunk" in plan.steps["record_sums"].reason
    resumed = ctx.get_array("r1", "record_sums")  # the whole stream: prefix, then computed
    assert ctx.last_stats is not None
    want = clean.get_array("r1", "record_sums")
    assert resumed.tobytes() == want.tobytes()
    assert [(c.start, c.end) for c in ctx.iter_chunks("r1", "record_sums")] == [
        (c.start, c.end) for c in clean.iter_chunks("r1", "record_sums")
    ]
    key = ctx.key_for("r1", "record_sums")
    a, b = ctx.stores[0].info(key), clean.stores[0].info(key)
    digests = lambda i: json.dumps(i.attrs["strax_decl"]["digests"], sort_keys=True)  # noqa: E731
    assert digests(a) == digests(b) and a.stored_bytes == b.stored_bytes
    assert [p.name for p in (root / "r1").iterdir() if p.name.startswith(".")] == []


def test_a_plugin_that_cannot_resume_is_recomputed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {"n_chunks": 20, "rows_per_chunk": 50}
    root = tmp_path / "s"
    context(root, ToyRecords, config).make("r1", "records", progress=False)
    assert pipeline(root, "ToyRecords", {**config, "die_at": 12}).wait(60) == -9
    monkeypatch.setattr(RecordSums, "resumable", False)  # e.g. it keeps state across chunks
    ctx = context(root, ToyRecords, config)
    plan = ctx.plan("r1", "record_sums")
    assert plan.to_resume == [] and "declares resumable = False" in str(plan)
    assert len(ctx.get_array("r1", "record_sums")) == 20 * 50
