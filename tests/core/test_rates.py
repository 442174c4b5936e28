"""Rates in one unit rule: ``format_rate`` picks kB/s, MB/s or GB/s as fits (never
``0.0 MB/s`` for a small data type), and both the timing summary of a run and the terminal
progress bar write their rates with it."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.progress import ProgressBar
from strax_decl.stats import format_rate, format_size
from strax_decl.testing import TOY_PLUGINS, Record

SMALL = {"n_chunks": 2, "rows_per_chunk": 20}


@pytest.mark.parametrize(
    ("bytes_per_second", "shown"),
    [
        (0, "0 B/s"),
        (0.2, "<1 B/s"),  # little, but not nothing
        (999, "999 B/s"),
        (1_000, "1.0 kB/s"),
        (2_500, "2.5 kB/s"),
        (999_949, "999.9 kB/s"),
        (999_999, "1.0 MB/s"),  # the unit is chosen after rounding: not "1000.0 kB/s"
        (1_000_000, "1.0 MB/s"),
        (37_500_000, "37.5 MB/s"),
        (1e9, "1.0 GB/s"),
        (2.25e12, "2250.0 GB/s"),
    ],
)
def test_format_rate_thresholds(bytes_per_second, shown):
    assert format_rate(bytes_per_second) == shown
    assert format_size(bytes_per_second) + "/s" == shown  # one unit rule for sizes and rates


@pytest.mark.parametrize("bytes_per_second", [1, 40, 512, 4_000, 49_999, 60_000, 999_000])
def test_a_small_rate_is_never_zero_megabytes(bytes_per_second):
    shown = format_rate(bytes_per_second)
    assert "MB/s" not in shown and not shown.startswith("0")


def test_timing_summary_of_a_real_run_relates_busy_to_wall_time(tmp_path):
    """A tiny run's ``last_stats.summary()``: one row per component with a rate in the
    formatter's units, then the wall time and the busy seconds as a multiple of it."""
    ctx = sd.Context(str(tmp_path), plugins=TOY_PLUGINS, config=SMALL, processor="threaded")
    peaks = ctx.get_array("r1", "peaks")
    assert len(peaks) > 0
    stats = ctx.last_stats
    assert stats is not None
    summary = stats.summary()
    lines = summary.splitlines()
    assert lines[0].split()[:2] == ["component", "seconds"] and "rate" in lines[0]
    assert "ToyRecords" in summary and "Peaks" in summary and "save peaks" in summary
    wall = re.search(r"^wall time (\d+\.\d{3}) s$", summary, re.M)
    busy = re.search(r"^busy (\d+\.\d{3}) s = (\d+\.\d\d) x elapsed ", summary, re.M)
    assert wall and busy, summary
    assert float(busy.group(1)) == pytest.approx(
        sum(c.seconds for c in stats.components.values()), abs=1e-3
    )
    assert "ran at the same time" in lines[-1]  # how parallel seconds relate to wall time
    records = next(line for line in lines if line.startswith("ToyRecords"))
    c = stats.components["ToyRecords"]
    assert format_rate(c.nbytes / c.seconds) in records  # the summary's rate is format_rate's


def records_chunk(start: int, end: int, n: int = 10) -> sd.Chunk:
    rows = Record.zeros(n)
    rows["time"] = np.linspace(start, end - 100, n).astype(np.int64)
    rows["length"], rows["dt"] = 1, 10
    return sd.Chunk(start, end, rows)


@pytest.mark.parametrize("width", [200, 70, 40])
def test_terminal_bar_shows_a_small_rate_in_kilobytes(width):
    """About 2.5 kB/s entering the run: every layout of the line (wide, narrower, narrowest)
    writes ``kB`` and never ``0.0 MB``."""
    out = io.StringIO()
    bar = ProgressBar("r1 peaks", stream=out, delay=0, interval=0, width=width)
    chunk = records_chunk(0, 1_000)
    bar("ToyRecords", chunk)
    seconds = chunk.nbytes / 2_500  # this much time passed: 2.5 kB/s
    line = bar.render(bar.started + seconds)
    assert "0.0 MB" not in line, line
    assert format_size(chunk.nbytes) in line  # the size read, in the unit that shows it
    if width >= 70:  # the narrowest layout drops the rate, keeps the size
        assert "2.5 kB/s" in line, line
    bar.close()
    assert "0.0 MB" not in out.getvalue()


def test_terminal_bar_of_a_real_run_writes_small_rates_in_kilobytes(tmp_path, capsys):
    """A real threaded run of 360 bytes of records with the bar forced on (stderr, not a
    terminal: the final line is written): the bytes and their rate are in the formatter's
    units. Reaching 1 MB/s would need the whole run in 0.36 ms, so ``MB`` never shows."""
    ctx = sd.Context(
        str(tmp_path),
        plugins=TOY_PLUGINS,
        config={"n_chunks": 2, "rows_per_chunk": 5},
        processor="threaded",
    )
    ctx.make("r1", "peaks", progress=True)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    records = ctx.get_array("r1", "records")
    assert records.nbytes == 360
    assert line.startswith("r1 peaks 10 rows 360 B 2 chunks | ") and "done in" in line, line
    assert re.search(r" rows/s (\d+ B/s|\d+\.\d kB/s) ", line), line
    assert "MB" not in line, line
