"""A claim lives as long as its holder: released at interpreter exit if nobody released it,
its release never waits out a dead breaker's lock, and it records what its holder does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from strax_storage import DataKey, open_store
from strax_storage.claims import doing

KEY = DataKey("run_1", "peaks", "abcdefghijklmnop")
REPO = Path(__file__).resolve().parents[2]


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_claim_records_what_its_holder_is_doing(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    with doing("make peaks of run run_1"):
        claim = store.claim(KEY)
    assert claim is not None
    try:
        holder = store.claim_holder(KEY)
        assert holder is not None and holder.doing == "make peaks of run run_1"
        assert holder.command is not None  # this process's command line
        assert "(make peaks of run run_1; command: " in holder.describe()
    finally:
        claim.release()


def test_releasing_a_claim_does_not_wait_for_a_dead_breakers_lock(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    claim = store.claim(KEY)
    assert claim is not None
    lock = tmp_path / "run_1" / f".claim-{KEY.dirname}.break"
    breaker = {"pid": dead_pid(), "host": socket.gethostname(), "created": time.time()}
    lock.write_text(json.dumps(breaker))  # fresh: it would be waited for 10 s as stale
    t0 = time.monotonic()
    claim.release()
    assert time.monotonic() - t0 < 1.0
    assert sorted(os.listdir(tmp_path / "run_1")) == []


EXITS_HOLDING = """
import sys
from strax_storage import DataKey, open_store
store = open_store({root!r})
claim = store.claim(DataKey("run_1", "peaks", "abcdefghijklmnop"))
assert claim is not None
held = [claim]  # never released: still referenced when the interpreter exits
print("HELD", flush=True)
"""


def test_a_claim_never_released_is_released_at_exit_without_a_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", EXITS_HOLDING.format(root=str(tmp_path))],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPO / "storage")},
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "HELD", proc
    assert proc.stderr == "", proc.stderr
    assert sorted(os.listdir(tmp_path / "run_1")) == []  # no claim, no break lock
