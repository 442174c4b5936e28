"""A half-read ``iter_chunks`` kept open in one process, and another process that wants the
same data: the waiter's wait is bounded by its context's ``timeout`` and names the holder
(pid, host, what it is doing, since when); the holder exits cleanly without closing the
stream (no traceback, no claim, no break lock, no temporary directory left).

Real subprocesses hold the stream; the waiter is this process.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import strax_decl as sd
from strax_decl.claiming import wait_for_writer
from strax_storage import ClaimTimeout

HERE = Path(__file__).parent
REPO = HERE.parent.parent
CORE = REPO / "tests" / "core"
sys.path.insert(0, str(CORE))
import tiny_pipeline as tiny  # noqa: E402

CONFIG = {"n_chunks": 30}

HOLDER = """
import sys
sys.path.insert(0, {core!r})
import tiny_pipeline as tiny
import strax_decl as sd

ctx = sd.Context({root!r}, plugins=tiny.PLUGINS, config={config!r}, processor={processor!r})
stream = ctx.iter_chunks("r1", "doubled")  # kept open, never closed
chunk = next(stream)
print("READ", chunk.start, chunk.end, flush=True)
sys.stdin.readline()  # until the test says go; then exit with the stream still open
print("EXITING", flush=True)
"""


def start_holder(root: Path, processor: str = "threaded") -> subprocess.Popen[str]:
    code = HOLDER.format(core=str(CORE), root=str(root), config=CONFIG, processor=processor)
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READ"):
        proc.kill()
        raise AssertionError(f"the holder did not start: {line!r} {proc.communicate()}")
    return proc


def let_exit(proc: subprocess.Popen[str]) -> tuple[str, str]:
    out, err = proc.communicate("go\n", timeout=30)
    assert proc.returncode == 0, (out, err)
    return out, err


def leftovers(root: Path) -> list[str]:
    """Claims, break locks and temporary directories in the run folder."""
    return sorted(p.name for p in (root / "r1").iterdir() if p.name.startswith("."))


@pytest.mark.timeout(60)
def test_make_waiting_for_a_half_read_stream_elsewhere_gives_up_after_the_timeout(
    tmp_path: Path,
) -> None:
    root = tmp_path / "store"
    holder = start_holder(root)
    try:
        ctx = sd.Context(str(root), plugins=tiny.PLUGINS, config=CONFIG, timeout=1.5)
        t0 = time.monotonic()
        with pytest.raises(ClaimTimeout) as info:
            ctx.make("r1", "doubled")
        elapsed = time.monotonic() - t0
        assert 1.4 < elapsed < 10, elapsed
        text = str(info.value)
        key = ctx.key_for("r1", "doubled")
        for expected in (
            "the context's timeout",
            str(key.run_id),
            f"pid {holder.pid} on host {socket.gethostname()}",
            "iter_chunks/get_array doubled of run r1",  # what the holder is doing
            " since 20",  # since when (ISO date)
            "half-read iter_chunks",  # what to do
        ):
            assert expected in text, (expected, text)
        assert info.value.holder is not None and info.value.holder.pid == holder.pid
        assert ctx.stores[0].status(key) == "writing"  # the holder's write, untouched
    finally:
        let_exit(holder)
    # Its holder gone, the same request now computes it.
    ctx.make("r1", "doubled")
    assert ctx.is_stored("r1", "doubled")


@pytest.mark.timeout(60)
def test_waiting_without_a_timeout_is_reported_while_it_lasts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "store"
    holder = start_holder(root)
    try:
        ctx = sd.Context(str(root), plugins=tiny.PLUGINS, config=CONFIG)
        store, key = ctx.stores[0], ctx.key_for("r1", "doubled")
        who = store.claim_holder(key)
        assert who is not None and who.doing == "iter_chunks/get_array doubled of run r1"
        with (
            caplog.at_level(logging.INFO, logger="strax_decl.claiming"),
            pytest.raises(ClaimTimeout),
        ):
            wait_for_writer(store, key, who, timeout=1.2, report_first=0.3)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings, caplog.records
        assert "still waiting" in warnings[0] and f"pid {holder.pid}" in warnings[0]
        assert str(key) in warnings[0] and " since 20" in warnings[0]
    finally:
        let_exit(holder)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("processor", ["threaded", "serial"])
def test_a_process_exiting_with_a_stream_open_leaves_nothing_behind(
    tmp_path: Path, processor: str
) -> None:
    root = tmp_path / "store"
    holder = start_holder(root, processor)
    assert [n for n in leftovers(root) if n.startswith(".claim-")]  # it holds the claims
    t0 = time.monotonic()
    out, err = let_exit(holder)
    assert time.monotonic() - t0 < 10
    assert "EXITING" in out
    assert err == "", err  # no NameError, no traceback at interpreter exit
    assert leftovers(root) == []  # no claim, no break lock, no temporary directory
    ctx = sd.Context(str(root), plugins=tiny.PLUGINS, config=CONFIG)
    for data_type in ("ticks", "doubled"):
        assert ctx.stores[0].status(ctx.key_for("r1", data_type)) == "absent"  # not failed
    assert ctx.plan("r1", "doubled").to_compute == ["ticks", "doubled"]
