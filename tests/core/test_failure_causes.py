"""Each failed data set records the failure it depends on, whichever executor runs it.

    ticks --(Split)--> a, b --(Join)--> j ----------------\\
                       a --(ParA, parallel)--> pa --(Join2, with b)--> j2 --(Top2)--> top2

With ``keep_finished``, Join fails first (at 1000): only ``j`` depends on it, so Split, ParA
and Join2 go on until Split fails (at 4000). ``a``, ``b``, ``pa`` and ``j2`` then record
Split's error, not Join's (nor "during handling of" Join's): the threaded executor once told
a mailbox's readers the run's first failure instead of the failure that ended its producer.
"""

from __future__ import annotations

import sys
import threading
import traceback
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

import strax_decl as sd

sys.path.insert(0, str(Path(__file__).parent))
import tiny_pipeline as tiny


class Split(sd.Plugin):
    version = "0.1.0"

    class Inputs(sd.Inputs):
        ticks: tiny.Tick

    class Outputs(sd.Outputs):
        a: tiny.Tick = sd.output(description="the ticks")
        b: tiny.Tick = sd.output(description="the ticks, value + 1")

    class Options(sd.Options):
        split_fail_at: int = sd.option(-1, description="raise KeyError from this chunk on")

    def compute(self, ticks: np.ndarray, start: int, end: int) -> dict[str, np.ndarray]:
        if 0 <= self.options.split_fail_at <= start:
            raise KeyError(f"split at {start}")
        b = ticks.copy()
        b["value"] += 1
        return {"a": ticks.copy(), "b": b}


class Join(sd.Plugin):
    version = "0.1.0"

    class Inputs(sd.Inputs):
        a: tiny.Tick
        b: tiny.Tick

    class Outputs(sd.Outputs):
        j: tiny.Tick = sd.output(description="a + b")

    class Options(sd.Options):
        join_fail_at: int = sd.option(-1, description="raise LookupError from this chunk on")

    def compute(self, a: np.ndarray, b: np.ndarray, start: int, end: int) -> np.ndarray:
        if 0 <= self.options.join_fail_at <= start:
            raise LookupError(f"join at {start}")
        out = a.copy()
        out["value"] += b["value"]
        return out


class ParA(sd.Plugin):
    version = "0.1.0"
    parallel = True

    class Inputs(sd.Inputs):
        a: tiny.Tick

    class Outputs(sd.Outputs):
        pa: tiny.Tick = sd.output(description="a, computed in the pool")

    def compute(self, a: np.ndarray) -> np.ndarray:
        return a.copy()


class Join2(sd.Plugin):
    version = "0.1.0"

    class Inputs(sd.Inputs):
        pa: tiny.Tick
        b: tiny.Tick

    class Outputs(sd.Outputs):
        j2: tiny.Tick = sd.output(description="pa + b")

    def compute(self, pa: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = pa.copy()
        out["value"] += b["value"]
        return out


class Top2(sd.Plugin):
    version = "0.1.0"

    class Inputs(sd.Inputs):
        j2: tiny.Tick
        j: tiny.Tick

    class Outputs(sd.Outputs):
        top2: tiny.Tick = sd.output(description="j2")

    def compute(self, j2: np.ndarray, j: np.ndarray) -> np.ndarray:
        return j2.copy()


PLUGINS = [tiny.Ticks, Split, Join, ParA, Join2, Top2]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("processor", ["threaded", "serial"])
def test_each_failed_data_set_records_the_failure_it_depends_on(
    tmp_path: Path, processor: Literal["threaded", "serial"]
) -> None:
    ctx = sd.Context(
        str(tmp_path),
        plugins=PLUGINS,
        config={"n_chunks": 8, "join_fail_at": 1000, "split_fail_at": 4000},
        max_messages=1,
        processor=processor,
    )
    with pytest.raises(LookupError) as info:  # Join's, the first
        ctx.get_array("r1", "top2")
    text = "".join(traceback.format_exception(info.value))
    assert "later, plugin Split failed on run r1, chunk [4000, 5000)" in text, text

    def recorded(data_type: str) -> str:
        exception = ctx.stores[0].info(ctx.key_for("r1", data_type)).exception
        assert exception is not None, data_type
        return exception

    for data_type in ("j", "top2"):  # top2 depends on both: the first is Join's
        assert "plugin Join failed on run r1, chunk [1000, 2000)" in recorded(data_type)
    for data_type in ("a", "b", "pa", "j2"):
        assert "plugin Split failed on run r1, chunk [4000, 5000)" in recorded(data_type)
        assert "plugin Join failed" not in recorded(data_type), data_type
    assert ctx.stores[0].status(ctx.key_for("r1", "ticks")) == "complete"
    assert [t.name for t in threading.enumerate() if t.name.startswith("sd")] == []


class LateInterrupt(sd.Plugin):
    """Reads doubled; raises KeyboardInterrupt (a Ctrl-C landing in it) at 6000."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        doubled: tiny.Tick

    class Outputs(sd.Outputs):
        late: tiny.Tick = sd.output(description="doubled, until the Ctrl-C")

    def compute(self, doubled: np.ndarray, start: int, end: int) -> np.ndarray:
        if start >= 6000:
            raise KeyboardInterrupt("Ctrl-C at 6000")
        return doubled.copy()


class Both(sd.Plugin):
    version = "0.1.0"

    class Inputs(sd.Inputs):
        fragile: tiny.Tick
        late: tiny.Tick

    class Outputs(sd.Outputs):
        both: tiny.Tick = sd.output(description="fragile")

    def compute(self, fragile: np.ndarray, late: np.ndarray) -> np.ndarray:
        return fragile.copy()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("processor", ["threaded", "serial"])
def test_a_failure_before_a_ctrl_c_is_kept_and_noted(
    tmp_path: Path, processor: Literal["threaded", "serial"]
) -> None:
    """Fragile fails at 2000; what does not depend on it runs on (``keep_finished``) until
    a Ctrl-C at 6000 stops everything. The interrupt is raised noting the failure before it,
    the data set that failed stays failed with its own error (it once vanished with the
    discarded ones), and what was merely cut short is discarded."""
    ctx = sd.Context(
        str(tmp_path),
        plugins=[*tiny.PLUGINS, LateInterrupt, Both],
        config={"n_chunks": 8, "fragile_fail_at": 2000},
        max_messages=1,
        processor=processor,
    )
    with pytest.raises(KeyboardInterrupt) as info:
        ctx.get_array("r1", "both")
    notes = getattr(info.value, "__notes__", [])
    assert any(
        n.startswith("before it, plugin Fragile failed on run r1, chunk [2000, 3000)")
        for n in notes
    ), notes
    fragile = ctx.stores[0].info(ctx.key_for("r1", "fragile"))
    assert fragile.status == "failed" and "ValueError: bad value at 2000" in str(fragile.exception)
    for data_type in ("late", "doubled"):
        assert ctx.stores[0].status(ctx.key_for("r1", data_type)) == "absent", data_type
    assert [t.name for t in threading.enumerate() if t.name.startswith("sd")] == []


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str exploded")


class NoNotes(Exception):
    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("no attributes")


def test_odd_exceptions_do_not_replace_the_one_raised() -> None:
    """An exception that cannot say what it is, or that refuses a note, is still noted (or
    skipped) without raising anything in its place."""
    from strax_decl.engine.failures import RunFailures
    from strax_decl.engine.graph import Graph

    graph = Graph(producers=[])
    first, later = ValueError("first"), Unprintable()
    failures = RunFailures(graph)
    failures.add(first)
    failures.add(later)
    failures.note_on(first)
    assert first.__notes__ == [
        "later, another component failed: Unprintable: <exception str() failed>"
    ]

    refusing = RunFailures(graph)
    stubborn = NoNotes("first")
    refusing.add(stubborn)
    refusing.add(ValueError("later"))
    refusing.note_on(stubborn)  # nothing raised
