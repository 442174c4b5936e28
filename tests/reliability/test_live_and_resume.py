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


def test_ctrl_c_keeps_a_resumable_partial_and_the_rerun_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real SIGINT to a process saving a resumable data set: the interrupt comes back,
    no claim or live writer is left, the data set is ``partial`` (never failed, never loaded
    whole) and the rerun resumes after its prefix, bit-identical to a clean run."""
    import signal

    from strax_decl.cli import main

    config = {"n_chunks": 120, "rows_per_chunk": 50}
    clean = context(tmp_path / "clean", ToyRecords, config)
    clean.make("r1", "record_sums", save=["records"], progress=False)
    root = tmp_path / "s"
    ctx = context(root, ToyRecords, config)
    ctx.make("r1", "records", progress=False)
    code = PIPELINE.format(
        root=str(root), source="ToyRecords", config={**config, "work": 400}, run="r1"
    )
    code = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n" + code
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
    key = ctx.key_for("r1", "record_sums")
    store = ctx.stores[0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until a few chunks are final, then Ctrl-C
        p = store.progress(key)
        if p is not None and p.n_chunks >= 8:
            break
        assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and b"KeyboardInterrupt" in err, err.decode()
    assert store.status(key) == "partial", store.status(key)
    p = store.progress(key)
    assert p is not None and p.resumable and not p.writer_alive and 8 <= p.n_chunks < 120
    assert store.claims.holder(key) is None
    assert [n.name for n in (root / "r1").glob(".claim*")] == []
    capsys.readouterr()
    assert main(["ls", "-s", str(root), "--json"]) == 0
    (listed,) = [d for d in json.loads(capsys.readouterr().out) if d["data_type"] == "record_sums"]
    assert listed["status"] == "partial" and listed["resumable"] and not listed["writer_alive"]
    plan = ctx.plan("r1", "record_sums")
    assert plan.to_resume == ["record_sums"] and "resume after chunk" in str(plan)
    resumed = ctx.get_array("r1", "record_sums", progress=False)
    assert ctx.last_stats is not None
    assert ctx.last_stats.components["load records"].chunks < 120  # from the watermark on
    assert resumed.tobytes() == clean.get_array("r1", "record_sums").tobytes()
    a, b = store.info(key), clean.stores[0].info(key)
    digests = lambda i: json.dumps(i.attrs["strax_decl"]["digests"], sort_keys=True)  # noqa: E731
    assert digests(a) == digests(b) and a.stored_bytes == b.stored_bytes
    assert [p.name for p in (root / "r1").iterdir() if p.name.startswith(".")] == []


def test_a_range_inside_a_live_writers_prefix_is_read_without_waiting(tmp_path: Path) -> None:
    """While another process writes a data set live (and holds its claim), a ``time_range``
    inside its final prefix is read from the prefix: no wait for the writer, no compute."""
    daq = tmp_path / "daq"
    n = 60
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
            "0.1",
        ]
    )
    config = {"daq_dir": str(daq), "rows_per_chunk": 50}
    run = pipeline(tmp_path / "live", "DAQRecords", config)
    reader = context(tmp_path / "live", DAQRecords, config)
    key = reader.key_for("r1", "record_sums")
    batch = context(tmp_path / "batch", ToyRecords, {"n_chunks": n, "rows_per_chunk": 50})
    full = batch.get_array("r1", "record_sums")
    try:
        deadline = time.monotonic() + 60
        p = None
        while time.monotonic() < deadline:
            p = reader.stores[0].progress(key)
            if p is not None and p.n_chunks >= 10:
                break
            time.sleep(0.05)
        assert p is not None and p.writer_alive and p.watermark is not None
        tr = (1000, p.watermark)
        t0 = time.monotonic()
        got = reader.get_array("r1", "record_sums", time_range=tr, progress=False)
        assert time.monotonic() - t0 < 3  # the writer needs seconds more: not waited for
        assert run.poll() is None  # still writing
        want = full[(full["time"] >= tr[0]) & (full["endtime"] <= tr[1])]
        assert got.tobytes() == want.tobytes() and len(got)
        assert reader.last_stats is not None and reader.last_stats.components == {}
    finally:
        assert writer.wait(60) == 0 and run.wait(60) == 0


class PatientDAQRecords(DAQRecords):
    """The toy DAQ source, giving up after 0.6 s without new data."""

    live_timeout = 0.6


@pytest.mark.parametrize("processor", ["threaded", "serial"])
def test_a_live_source_without_new_data_times_out(tmp_path: Path, processor: str) -> None:
    """A live source that stays ``NOT_YET`` fails the request after its ``live_timeout``:
    one LiveTimeout naming the source, the run and the wait; nothing left marked failed, no
    claim, no thread, no temporary directory (the data sets are not resumable: discarded)."""
    import threading

    from strax_decl.daq import write_run

    daq = tmp_path / "daq"
    write_run(daq, "r1", 3, rows_per_chunk=20)
    (daq / "r1" / "END").unlink()  # the DAQ died silently after 3 chunks
    ctx = sd.Context(
        open_store(tmp_path / "s", rows_per_chunk=64),
        plugins=[PatientDAQRecords, RecordSums],
        config={"daq_dir": str(daq), "rows_per_chunk": 20},
        processor=processor,
    )
    t0 = time.monotonic()
    with pytest.raises(sd.LiveTimeout) as caught:
        ctx.make("r1", "record_sums", save=["records"], progress=False)
    waited = time.monotonic() - t0
    message = str(caught.value)
    assert "PatientDAQRecords" in message and "run r1" in message and "no new data for" in message
    assert "live_timeout = 0.6 s" in message and 0.6 <= waited < 20
    notes = getattr(caught.value, "__notes__", [])
    assert notes == ["plugin PatientDAQRecords failed on run r1, after chunk [6000, 9000)"]
    store = ctx.stores[0]
    for data_type in ("records", "record_sums"):
        assert store.status(ctx.key_for("r1", data_type)) == "absent", data_type
    assert [p.name for p in (tmp_path / "s" / "r1").iterdir() if p.name.startswith(".")] == []
    assert not [t for t in threading.enumerate() if t.name.startswith("sd")]


def test_live_timeout_is_checked_when_the_class_is_defined() -> None:
    with pytest.raises(sd.PluginDeclarationError, match="Bad: live_timeout must be a positive"):

        class Bad(DAQRecords):
            live_timeout = 0
