"""Ctrl-C and SIGTERM anywhere stop the whole request, quickly and cleanly.

Real subprocesses get SIGINT / SIGTERM from the OS (Python's default SIGINT handling
restored in the child); a thread standing in for a notebook kernel gets a KeyboardInterrupt
raised asynchronously (``PyThreadState_SetAsyncExc``), once and twice (the second during the
winding down). Every case checks: the interrupt comes back, no thread of the request is alive
afterwards, no claim is left, nothing is marked complete that did not finish and nothing
shows as failed (interrupted work is discarded), and a rerun is correct.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.engine.stopping import ProcessingStopped
from strax_decl.progress import ProgressBar

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import tiny_pipeline as tiny  # noqa: E402

REPO = HERE.parent.parent
SLOW = {"n_chunks": 150, "tick_delay_s": 0.05}  # 7.5 s if not interrupted
TYPES = ["ticks", "doubled", "fragile"]

CHILD = """
import json, signal, sys, threading
from pathlib import Path
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {here!r})
import tiny_pipeline as tiny
import strax_decl as sd

root = {root!r}
ctx = sd.Context(root, plugins=tiny.PLUGINS, config={config!r}, processor={processor!r})
try:
    if {get!r}:
        ctx.get_array("r1", "fragile")
    else:
        ctx.make("r1", "fragile")
except KeyboardInterrupt:
    alive = [t.name for t in threading.enumerate() if t.name.startswith("sd")]
    claims = [p.name for p in Path(root, "r1").glob(".claim-*")]
    print("INTERRUPTED " + json.dumps({{"alive": alive, "claims": claims}}), flush=True)
    sys.exit(130)
print("FINISHED", flush=True)
"""


def wait_for_line(proc: subprocess.Popen[str], word: str, limit: float) -> None:
    """Read the child's stdout until a line ``word`` (it says it is under way)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == word:
            return
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"the child never printed {word}: {proc.communicate()}")


def check_store_after_interrupt(root: Path) -> None:
    """Nothing left half-done: no claim, no temporary directory, nothing failed; what is
    complete is right; the rerun (without the delay) computes the rest correctly."""
    config = {**SLOW, "tick_delay_s": 0.0}
    ctx = sd.Context(str(root), plugins=tiny.PLUGINS, config=config)
    run = root / "r1"
    leftovers = sorted(p.name for p in run.glob(".*")) if run.exists() else []
    assert leftovers == [], leftovers
    listed = [(i.data_type, i.status) for i in ctx.stores[0].list()]
    assert all(status == "complete" for _, status in listed), listed
    reference = sd.Context(None, plugins=tiny.PLUGINS, config=config, processor="serial")
    for data_type in TYPES:
        if ctx.is_stored("r1", data_type):
            key = ctx.key_for("r1", data_type)
            np.testing.assert_array_equal(
                ctx.stores[0].load_array(key), reference.get_array("r1", data_type)
            )
    np.testing.assert_array_equal(
        ctx.get_array("r1", "fragile"), reference.get_array("r1", "fragile")
    )


def pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("sd")]


def wait_no_pipeline_threads(limit: float = 2.0) -> list[str]:
    deadline = time.monotonic() + limit
    while pipeline_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    return pipeline_threads()


# ------------------------------------------------------------------ real signals


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("processor", "get"), [("threaded", False), ("threaded", True), ("serial", False)]
)
def test_sigint_in_a_subprocess_stops_everything(tmp_path: Path, processor: str, get: bool) -> None:
    root = tmp_path / "store"
    config = {**SLOW, "ready_at": 3}
    script = CHILD.format(
        here=str(HERE), root=str(root), config=config, processor=processor, get=get
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for_line(proc, "READY", 30)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 130, (out, err)
    assert elapsed < 5, elapsed  # bounded (the target is < 2 s; slack for a busy machine)
    report = json.loads(out.split("INTERRUPTED ", 1)[1])
    assert report == {"alive": [], "claims": []}, report  # threads stopped before the claims
    check_store_after_interrupt(root)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_cli_handles_sigterm_like_sigint(tmp_path: Path, sig: signal.Signals) -> None:
    root = tmp_path / "store"
    args = [sys.executable, "-m", "strax_decl", "run", "-s", str(root)]
    args += ["-p", str(HERE / "tiny_pipeline.py"), "r1", "fragile"]
    for name, value in {**SLOW, "ready_at": 3}.items():
        args += ["-c", f"{name}={value}"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for_line(proc, "READY", 30)
    t0 = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert time.monotonic() - t0 < 5
    expected = 143 if sig == signal.SIGTERM else 130
    assert proc.returncode == expected, (out, err)
    lines = err.strip().splitlines()
    word = "terminated" if sig == signal.SIGTERM else "interrupted"
    assert len(lines) == 1 and word in lines[0] and "Traceback" not in err, err
    check_store_after_interrupt(root)


# ------------------------------------------------------------------ a notebook kernel


def _async_raise(thread: threading.Thread) -> None:
    assert thread.ident is not None
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt)
    )
    assert done == 1


class Kernel:
    """A thread running one request, as a notebook kernel's thread would."""

    def __init__(self, call: Any) -> None:
        self.error: BaseException | None = None
        self.done = threading.Event()

        def main() -> None:
            try:
                call()
            except BaseException as e:
                self.error = e
            finally:
                self.done.set()

        self.thread = threading.Thread(target=main, name="kernel")


@pytest.mark.skipif(
    sys.gettrace() is not None,
    reason="under a tracer (coverage's C tracer, Python 3.11) the asynchronous KeyboardInterrupt "
    "is sometimes never delivered to a kernel thread blocked in a mailbox wait, so the request "
    "runs on (seen in CI): a tracer/async-exception interplay, not the pipeline's handling, "
    "which this test checks without --cov",
)
@pytest.mark.timeout(60)
@pytest.mark.parametrize("processor", ["threaded", "serial"])
@pytest.mark.parametrize("times", [1, 2])
@pytest.mark.parametrize("what", ["make", "get"])
def test_ctrl_c_in_a_notebook_kernel_stops_the_request(
    tmp_path: Path, processor: str, times: int, what: str
) -> None:
    root = tmp_path / "store"
    ctx = sd.Context(str(root), plugins=tiny.PLUGINS, config=SLOW, processor=processor)  # type: ignore[arg-type]
    if what == "make":
        kernel = Kernel(lambda: ctx.make("r1", "fragile"))
    else:
        kernel = Kernel(lambda: ctx.get_array("r1", "fragile"))
    kernel.thread.start()
    deadline = time.monotonic() + 20
    while not list((root / "r1").glob(".tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.01)  # under way: its savers have started
    time.sleep(0.1)
    t0 = time.monotonic()
    for i in range(times):
        if i:
            time.sleep(0.02)  # the second Ctrl-C lands while the first is being handled
        if kernel.thread.is_alive():
            _async_raise(kernel.thread)
    assert kernel.done.wait(10)
    elapsed = time.monotonic() - t0
    kernel.thread.join(5)
    assert isinstance(kernel.error, KeyboardInterrupt), kernel.error
    assert elapsed < 5, elapsed
    assert pipeline_threads() == []  # nothing keeps computing after the prompt is back
    assert list((root / "r1").glob(".claim-*")) == []
    check_store_after_interrupt(root)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("processor", ["threaded", "serial"])
def test_a_keyboard_interrupt_in_a_plugin_stops_everything_and_is_re_raised(
    tmp_path: Path, processor: str
) -> None:
    config = {**SLOW, "tick_delay_s": 0.0, "fragile_fail_at": 3000, "fragile_interrupt": True}
    ctx = sd.Context(str(tmp_path), plugins=tiny.PLUGINS, config=config, processor=processor)  # type: ignore[arg-type]
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt, match="Ctrl-C in a plugin"):
        ctx.make("r1", "fragile")
    assert time.monotonic() - t0 < 10
    assert wait_no_pipeline_threads() == []
    statuses = {t: ctx.stores[0].status(ctx.key_for("r1", t)) for t in TYPES}
    # Interrupts stop everything at once (no keep_finished) and leave nothing failed.
    assert statuses["fragile"] == "absent" and "failed" not in statuses.values(), statuses
    assert [p.name for p in (tmp_path / "r1").glob(".*")] == []


@pytest.mark.timeout(60)
def test_the_progress_bar_says_how_the_run_ended(tmp_path: Path) -> None:
    import io

    lines = {}
    for name, error in [
        ("done", None),
        ("interrupted", KeyboardInterrupt()),
        ("failed", ValueError("x")),
        ("stopped", ProcessingStopped("early")),
    ]:
        stream = io.StringIO()
        bar = ProgressBar("r1 ticks", stream=stream)
        bar.on_end(error)
        lines[name] = stream.getvalue().strip().splitlines()[-1]
    assert "done in" in lines["done"]
    for word in ("interrupted", "failed", "stopped"):
        assert f"{word} after" in lines[word] and "done" not in lines[word], lines
    # And through a real run ending on Ctrl-C in a plugin:
    config = {"fragile_fail_at": 3000, "fragile_interrupt": True}
    ctx = sd.Context(str(tmp_path), plugins=tiny.PLUGINS, config=config)
    stream = io.StringIO()
    old, sys.stderr = sys.stderr, stream
    try:
        with pytest.raises(KeyboardInterrupt):
            ctx.make("r1", "fragile", progress=True)
    finally:
        sys.stderr = old
    assert "interrupted after" in stream.getvalue().strip().splitlines()[-1]
