"""The progress bar in a real Jupyter kernel: a tqdm.auto widget by default, green when the run
completes, red and saying FAILED when it fails; on a terminal it stays our one line."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from strax_decl.progress import ProgressBar, enabled, in_jupyter_kernel

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")
pytest.importorskip("ipywidgets")


@pytest.fixture(scope="module")
def kernel():
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120)
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run_cell(kc: Any, code: str) -> list[dict[str, Any]]:
    """Execute ``code``; the cell's iopub messages (until the kernel is idle)."""
    msg_id = kc.execute(code)
    messages = []
    while True:
        msg = kc.get_iopub_msg(timeout=180)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return messages


def widget_states(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        m["content"]["data"].get("state", {})
        for m in messages
        if m["msg_type"] in ("comm_open", "comm_msg")
    ]


def test_widget_in_a_kernel(kernel, tmp_path):
    store = json.dumps(str(tmp_path / "data"))
    setup = run_cell(
        kernel,
        "import strax_decl as sd\n"
        "from strax_decl.testing import PLUGINS\n"
        "from strax_decl.progress import in_jupyter_kernel\n"
        f"ctx = sd.Context({store}, plugins=PLUGINS)\n"
        "print(in_jupyter_kernel())\n",
    )
    assert any(m["msg_type"] == "stream" and "True" in m["content"]["text"] for m in setup)

    done = run_cell(kernel, "ctx.make('r1', 'peaks')")  # progress=None: on in a kernel
    displays = [m for m in done if m["msg_type"] == "display_data"]
    assert any("application/vnd.jupyter.widget-view+json" in d["content"]["data"] for d in displays)
    states = widget_states(done)
    assert {"bar_style": "success"} in states
    texts = " ".join(str(s.get("value", "")) for s in states).replace("\u2007", " ")
    assert "done in" in texts and "rows" in texts
    assert not [m for m in done if m["msg_type"] == "stream" and m["content"]["name"] == "stderr"]

    failed = run_cell(
        kernel,
        "try:\n"
        "    ctx.new_context(config={'crash_at_chunk': 1}).make('r2', 'peaks')\n"
        "except Exception as e:\n"
        "    print('raised', type(e).__name__)\n",
    )
    states = widget_states(failed)
    assert {"bar_style": "danger"} in states  # tqdm's red bar: not complete
    texts = " ".join(str(s.get("value", "")) for s in states).replace("\u2007", " ")
    assert "FAILED" in texts and "failed after" in texts
    assert any(m["msg_type"] == "stream" and "raised" in m["content"]["text"] for m in failed)


def test_outside_a_kernel_the_terminal_line_is_kept():
    assert not in_jupyter_kernel()
    assert enabled(None, io.StringIO()) is False  # not a terminal, not a kernel: quiet
    out = io.StringIO()
    bar = ProgressBar("r1 peaks", stream=out, delay=0, interval=0)
    assert bar.notebook is False
    bar.on_end(KeyboardInterrupt())
    assert out.getvalue().startswith("r1 peaks") and "interrupted after" in out.getvalue()
