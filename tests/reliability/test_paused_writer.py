"""A writer paused past its claim's stale limit never destroys the copy another writer made.

A real subprocess writer is stopped with SIGSTOP in the middle of a write (a suspended batch
job, a closed laptop) for longer than its claim's ``stale_after``. Another writer breaks the
stale claim, cleans up the paused one's temporary directory and publishes a good copy. Then
the paused writer gets SIGCONT: it must notice that it lost its claim, publish nothing and
re-create nothing, and the good copy must stay intact and load.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from strax_storage import Chunk, DataKey, open_store

KEY = DataKey("run_1", "peaks", "abc234def")
DTYPE = np.dtype([("time", "<i8"), ("endtime", "<i8"), ("area", "<f4")])
STALE = 1.0
ROWS_PER_CHUNK = 50

_WRITER = """
import json, sys, time
from pathlib import Path
import numpy as np
from strax_storage import Chunk, DataKey, open_store

root, ready, go, result, when = sys.argv[1:6]
dtype = np.dtype([("time", "<i8"), ("endtime", "<i8"), ("area", "<f4")])
store = open_store(root, rows_per_chunk=50, claim_stale_after=1.0)

def chunk(i, area):
    rows = np.zeros(20, dtype)
    rows["time"] = i * 1000 + np.arange(20) * 10
    rows["endtime"] = rows["time"] + 5
    rows["area"] = area
    return Chunk(i * 1000, (i + 1) * 1000, rows)

out = {}
try:
    # overwrite=True, as the framework's savers do: it must still never replace a copy
    # that another writer published while this one was paused
    saver = store.saver(DataKey("run_1", "peaks", "abc234def"), dtype, {"who": "paused"},
                        overwrite=True)
    for i in range(5):
        saver.send(chunk(i, -1.0))  # 100 rows: two Zarr chunks written before the pause
    Path(ready).write_text("ready")
    while not Path(go).exists():
        time.sleep(0.01)
    if when == "sending":
        for i in range(5, 10):
            saver.send(chunk(i, -1.0))  # writes Zarr chunks into the removed directory
    saver.close()
    out = {"outcome": "published"}
except Exception as e:
    out = {"outcome": type(e).__name__, "message": str(e)}
Path(result).write_text(json.dumps(out))
"""


def good_chunks() -> list[Chunk]:
    chunks = []
    for i in range(10):
        rows = np.zeros(20, DTYPE)
        rows["time"] = i * 1000 + np.arange(20) * 10
        rows["endtime"] = rows["time"] + 5
        rows["area"] = 1.0
        chunks.append(Chunk(i * 1000, (i + 1) * 1000, rows))
    return chunks


def wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the writer exited early ({proc.returncode})"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.01)


@pytest.mark.parametrize("when", ["closing", "sending"])
def test_a_writer_paused_past_its_stale_limit_never_replaces_the_good_copy(
    tmp_path: Path, when: str
) -> None:
    root = tmp_path / "strax_data"
    ready, go, result = tmp_path / "ready", tmp_path / "go", tmp_path / "result.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(root), str(ready), str(go), str(result), when]
    )
    try:
        wait_for(ready, proc)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            time.sleep(STALE + 0.6)  # its claim goes stale: no heartbeat while stopped
            store = open_store(root, rows_per_chunk=ROWS_PER_CHUNK, claim_stale_after=STALE)
            holder = store.claim_holder(KEY)
            assert holder is not None and holder.stale and holder.pid == proc.pid
            # the second writer breaks the stale claim, cleans up the paused writer's work
            info = store.saver(KEY, DTYPE, {"who": "good"}).save_from(good_chunks())
            assert info.status == "complete" and info.n_rows == 200
        finally:
            go.write_text("go")
            os.kill(proc.pid, signal.SIGCONT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    outcome = json.loads(result.read_text())
    assert outcome["outcome"] == "WriteLost", outcome
    assert "claim lost" in outcome["message"] and str(KEY) in outcome["message"]
    found = store.find(KEY)
    assert found is not None and found.metadata == {"who": "good"}
    rows = store.load_array(KEY)
    assert len(rows) == 200 and (rows["area"] == 1.0).all()
    # nothing of the paused writer is left or re-created; no claim is left behind
    run_dir = root / KEY.run_id
    assert sorted(os.listdir(run_dir)) == [KEY.dirname, "zarr.json"]
    assert store.claim_holder(KEY) is None
