"""A failing source or a loader on corrupted data is named with where it was: the interval
of the last chunk it yielded, or "before its first chunk"; the original exception comes
back with its traceback, and the CLI prints the same in one line."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest

import strax_decl as sd
from strax_decl.engine.stopping import is_failure_note
from strax_storage import DataCorrupted

HERE = Path(__file__).parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
import tiny_pipeline as tiny  # noqa: E402

FAILING_SOURCE = """
import sys
sys.path.insert(0, {here!r})
import tiny_pipeline as tiny
import strax_decl as sd


class LostDaq(tiny.Ticks):
    class Options(sd.Options):
        n_chunks: int = sd.option(10, description="chunks")
        rows: int = sd.option(5, description="rows per chunk")
        tick_delay_s: float = sd.option(0.0, description="sleep", track=False)
        ready_at: int = sd.option(-1, description="unused", track=False)
        lost_at: int = sd.option(3, description="the DAQ goes away before this chunk")

    def source(self, run_id):
        for i, chunk in enumerate(super().source(run_id)):
            if i == self.options.lost_at:
                raise OSError("the DAQ went away")
            yield chunk


PLUGINS = [LostDaq, tiny.Doubler, tiny.Fragile]
"""


@pytest.fixture
def plugins_file(tmp_path: Path) -> Path:
    path = tmp_path / "lost_daq.py"
    path.write_text(FAILING_SOURCE.format(here=str(HERE)))
    return path


def load_plugins(path: Path) -> list[Any]:
    sys.path.insert(0, str(path.parent))
    try:
        import lost_daq  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(path.parent))
    return list(lost_daq.PLUGINS)


@pytest.mark.parametrize("processor", ["threaded", "serial"])
@pytest.mark.parametrize(
    ("lost_at", "where"), [(3, "after chunk [2000, 3000)"), (0, "before its first chunk")]
)
def test_a_failing_source_is_named_with_the_last_chunk_it_yielded(
    plugins_file: Path, processor: str, lost_at: int, where: str
) -> None:
    plugins = load_plugins(plugins_file)
    ctx = sd.Context(None, plugins=plugins, config={"lost_at": lost_at}, processor=processor)  # type: ignore[arg-type]
    with pytest.raises(OSError, match="the DAQ went away") as info:
        ctx.get_array("r1", "fragile")
    note = f"plugin LostDaq failed on run r1, {where}"
    assert info.value.__notes__[0] == note  # the original exception, noted once
    assert is_failure_note(note)
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "source" in frames  # its own traceback, down to the line that raised


def test_the_cli_names_a_failing_source_in_its_one_line_error(
    tmp_path: Path, plugins_file: Path
) -> None:
    args = [sys.executable, "-m", "strax_decl", "run", "-s", str(tmp_path / "store")]
    args += ["-p", str(plugins_file), "r1", "fragile"]
    proc = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 1, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "plugin LostDaq failed on run r1, after chunk [2000, 3000): " in lines[0]
    assert "the DAQ went away" in lines[0]


@pytest.mark.parametrize("processor", ["threaded", "serial"])
def test_a_loader_on_a_corrupted_chunk_says_where_it_was(tmp_path: Path, processor: str) -> None:
    ctx = sd.Context(str(tmp_path), plugins=tiny.PLUGINS, processor=processor)  # type: ignore[arg-type]
    ctx.make("r1", "doubled")
    chunk_file = next((tmp_path / "r1").glob("doubled-*/value/c/0"))
    raw = bytearray(chunk_file.read_bytes())
    raw[10:13] = b"\xff\xff\xff"
    chunk_file.write_bytes(bytes(raw))
    with pytest.raises(DataCorrupted, match="CRC32C mismatch") as info:
        ctx.get_array("r1", "fragile")
    note = info.value.__notes__[0]
    assert note == "loading doubled failed on run r1, before its first chunk", note
    assert is_failure_note(note)
    assert str(chunk_file) in str(info.value)  # the file, from the loader
