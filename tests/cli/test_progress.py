"""The progress bar: what it shows, when it shows, and its hook into the Context."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import numpy as np
import pytest

import strax_decl as sd
from strax_decl import progress
from strax_decl.progress import ProgressBar, format_count, format_duration
from strax_decl.testing import TOY_PLUGINS, Record, ToyRecords


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def chunk(start: int, end: int, n: int = 10) -> sd.Chunk:
    rows = Record.zeros(n)
    rows["time"] = np.linspace(start, end - 100, n).astype(np.int64)
    rows["length"], rows["dt"] = 1, 10
    return sd.Chunk(start, end, rows)


def test_formatting():
    assert format_count(999) == "999"
    assert format_count(12_345) == "12.3k"
    assert format_count(4_560_000) == "4.56M"
    assert format_count(7e9) == "7G"
    assert format_duration(5) == "0:05"
    assert format_duration(75) == "1:15"
    assert format_duration(3725) == "1:02:05"


def test_known_end_gives_fraction_bar_and_eta():
    out = io.StringIO()
    bar = ProgressBar(
        "run1 peaks", inputs={"Src"}, span=(0, 10_000), stream=out, delay=0, interval=0, width=120
    )
    bar.started -= 10.0  # pretend 10 s passed
    bar("Src", chunk(0, 2_500))
    bar("Other", chunk(0, 9_000))  # not an input: ignored
    assert bar.fraction == pytest.approx(0.25)
    assert bar.rows == 10 and bar.chunks == 1 and bar.nbytes == chunk(0, 1).nbytes
    line = out.getvalue().splitlines()[-1]
    assert line.startswith("run1 peaks  25% |")
    assert "10 rows" in line and "1 chunks" in line and "rows/s" in line
    assert re.search(r" \d+ B/s", line), line  # 360 B in 10 s, not "0.0 MB/s"
    assert "ETA 0:30" in line  # 10 s for a quarter: 30 s to go
    bar.close()
    bar.close()  # once only
    final = out.getvalue().splitlines()
    assert final[-1].startswith("run1 peaks  25% |") and "done in 0:10" in final[-1]
    assert len(final) == 2


def test_unknown_end_shows_elapsed_and_no_bar():
    bar = ProgressBar("r", stream=io.StringIO(), delay=0, interval=0, width=200)
    bar("anything", chunk(100, 200))
    assert bar.fraction is None
    text = bar.render()
    assert "%" not in text and "|" in text and "elapsed" in text


def test_terminal_redraws_in_place_and_waits_for_the_delay():
    tty = FakeTTY()
    bar = ProgressBar("r", span=(0, 1000), stream=tty, delay=3600, interval=0, width=80)
    bar("x", chunk(0, 500))
    assert tty.getvalue() == ""  # a fast run does not flicker
    bar.delay = 0
    bar("x", chunk(500, 800))
    assert tty.getvalue().startswith("\rr  80% |") and tty.getvalue().endswith("\x1b[K")
    bar.close()
    assert tty.getvalue().endswith("\x1b[K\n")
    drawn = [line.replace("\x1b[K", "").rstrip("\n") for line in tty.getvalue().split("\r")]
    assert all(len(line) <= 80 for line in drawn), drawn


def test_enabled_follows_the_terminal_unless_told():
    assert progress.enabled(None, io.StringIO()) is False
    assert progress.enabled(None, FakeTTY()) is True
    assert progress.enabled(True, io.StringIO()) is True
    assert progress.enabled(False, FakeTTY()) is False


def test_context_quiet_by_default_when_not_a_terminal(tmp_path, capsys):
    ctx = sd.Context(str(tmp_path), plugins=TOY_PLUGINS)
    ctx.make("r1", "peaks")
    assert len(ctx.get_array("r1", "peaks")) == 80
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("processor", ["serial", "threaded"])
def test_context_progress_and_stats(tmp_path, capsys, processor):
    ctx = sd.Context(str(tmp_path), plugins=TOY_PLUGINS, processor=processor)
    ctx.make("r1", "peaks", progress=True)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    # The toy source does not know its end: rates, no fraction.
    assert line.startswith("r1 peaks 400 rows") and "done in" in line and "%" not in line
    assert ctx.last_stats is not None
    summary = ctx.last_stats.summary()
    assert "ToyRecords" in summary and "Peaks" in summary and "save peaks" in summary
    assert ctx.last_stats.components["ToyRecords"].rows == 400
    # Loading: the stored data set's time span gives the fraction.
    arr = ctx.get_array("r1", "peaks", progress=True)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("r1 peaks 100% |") and "80 rows" in line
    assert len(arr) == 80
    assert ctx.last_stats.components["load peaks"].rows == 80
    ctx.make("r1", "peaks", progress=True)  # nothing to do: no bar, empty stats
    assert capsys.readouterr().err == ""
    assert ctx.last_stats.components == {}


def test_source_run_end_gives_the_eta(tmp_path, capsys):
    class EndKnown(ToyRecords):
        def run_end(self, run_id: str) -> int:
            return self.options.n_chunks * (self.options.rows_per_chunk * 100 + 1000)

    ctx = sd.Context(str(tmp_path), plugins=[EndKnown, *TOY_PLUGINS[1:]], processor="serial")
    chunks: Iterator[sd.Chunk] = ctx.iter_chunks("r1", "records", progress=True)
    next(chunks)
    chunks.close()  # stopping early still closes the bar
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("r1 records  25% |"), line  # serial: one chunk pulled, of four
    assert len(ctx.get_array("r1", "records", progress=True)) == 400
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("r1 records 100% |"), line


def test_a_broken_run_end_never_breaks_the_run(tmp_path, capsys):
    class Broken(ToyRecords):
        def run_end(self, run_id: str) -> int:
            raise RuntimeError("no idea")

    ctx = sd.Context(str(tmp_path), plugins=[Broken, *TOY_PLUGINS[1:]])
    assert len(ctx.get_array("r1", "records", progress=True)) == 400
    assert "%" not in capsys.readouterr().err
    assert sd.Plugin.run_end(ctx.registry.provider("records").__new__(Broken), "r") is None


def test_a_superruns_bar_counts_the_time_inside_its_pieces():
    """A superrun's pieces (here 1000 ns and 3000 ns, far apart): the gap is not progress."""
    out = io.StringIO()
    bar = ProgressBar(
        "_sr peaks", pieces=[(0, 1000), (50_000, 53_000)], stream=out, delay=0, interval=0
    )
    bar.at("1/2 r1")
    bar("r1", chunk(0, 500))
    assert bar.fraction == pytest.approx(500 / 4000)
    bar("r1", chunk(500, 1000))
    assert bar.fraction == pytest.approx(1000 / 4000)  # the gap up to 50_000 adds nothing
    bar.at("2/2 r2")
    bar.add(7, 700, None, 51_500)  # a whole part counted at once (get_array of a subrun)
    assert bar.fraction == pytest.approx(2500 / 4000) and bar.rows == 27
    assert out.getvalue().splitlines()[-1].startswith("_sr peaks [2/2 r2]  62% |")
    bar.on_end(None)  # done: every piece was read
    assert bar.fraction == 1.0
    assert out.getvalue().splitlines()[-1].startswith("_sr peaks [2/2 r2] 100% |")
    failed = ProgressBar("_sr peaks", pieces=[(0, 1000)], stream=io.StringIO(), delay=0)
    failed("r1", chunk(0, 250))
    failed.on_end(ValueError("bad"))  # a failed run keeps the fraction it reached
    assert failed.fraction == pytest.approx(0.25) and failed.ending == "failed"
