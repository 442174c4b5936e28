"""A small progress bar for long runs: a run hook, built from the plan.

``Context.get_array / iter_chunks / make`` take ``progress: bool | None``: ``None`` (the
default) shows the bar only when stderr is a terminal or the code runs in a Jupyter kernel, so
scripts, pipes and CI stay quiet; ``True`` forces it, ``False`` silences it.

In a Jupyter kernel (a notebook, JupyterLab, VS Code) the bar is drawn by ``tqdm.auto``: a
widget where ipywidgets is installed (tqdm's own text bar in the cell's output otherwise),
with the same figures after it, red and saying ``interrupted`` or ``failed`` when the run
did not complete. On a terminal (and in log files) it is the one line below.

The bar counts the data *entering* the pipeline (chunks of source plugins and loaders): rows,
bytes and chunks, with their rates (sizes and rates in the unit that shows them, e.g. kB/s
for a small data type: ``strax_decl.stats.format_size`` and ``format_rate``, as the timing
summary writes them). When the end of the run is known in advance (a stored data set's end
time, or a source plugin's ``run_end(run_id)`` hook) it also shows the fraction done and an
ETA: progress is the end time of the latest chunk read, relative to the run's span.
A superrun's bar (``strax_decl.context.superruns``) is given the time ``pieces`` of its
subruns: progress is then the time covered inside them (the gaps between subruns do not
count), and the label names the subrun being read (``_sr peaks [2/3 r2]``).

Nothing here touches the data: the bar is a run hook (``strax_decl.engine.hooks``) that reads
the ``(component, chunks)`` events every executor reports, the ``run_end`` of the source plugin
instances the run created, and closes when the run ends. It is built from the plan alone.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from strax_decl.engine.hooks import Hook
from strax_decl.engine.stopping import outcome
from strax_decl.stats import format_rate, format_size
from strax_storage.chunk import Chunk

if TYPE_CHECKING:  # pragma: no cover
    from strax_decl.plugin import Plugin
    from strax_decl.resolver import Plan

__all__ = [
    "ProgressBar",
    "enabled",
    "format_count",
    "format_duration",
    "in_jupyter_kernel",
    "progress_bar",
    "run_label",
]

BAR_CHARS = " ▏▎▍▌▋▊▉█"


def format_count(n: float) -> str:
    """``1234567`` -> ``1.23M``: short counts for the bar."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def format_duration(seconds: float) -> str:
    """``75`` -> ``1:15``, ``3725`` -> ``1:02:05``."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressBar(Hook):
    """One line on ``stream`` showing what has entered the pipeline, redrawn as chunks arrive.

    Give it to the executor as a hook (it closes when the run ends), or feed it by hand:
    ``bar(component, chunk)``, then ``close()``. ``inputs`` names the components whose chunks
    are counted (sources and loaders); ``span`` is ``(run start, run end)`` in ns if known,
    for the ETA; ``sources`` are source plugins whose ``run_end`` the run's end also needs
    (asked of the instances the run creates: see ``on_plugin``; ``span``'s end is then that
    of the other inputs, None if there are none). On a terminal the line is
    redrawn in place; elsewhere a line is written every ``interval`` seconds. Nothing is
    drawn during the first ``delay`` seconds (fast runs do not flicker), but ``close()``
    always writes the final line.
    """

    def __init__(
        self,
        label: str,
        *,
        inputs: set[str] | None = None,
        span: tuple[int | None, int | None] = (None, None),
        stream: TextIO | None = None,
        interval: float | None = None,
        delay: float = 0.5,
        width: int | None = None,
        sources: Iterable[str] = (),
        notebook: bool | None = None,
        pieces: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        """``notebook``: draw with ``tqdm.auto`` (None: when in a Jupyter kernel and no
        ``stream`` is given). ``pieces``: the intervals of time the run reads, in order (a
        superrun's subruns): the fraction done is the time covered inside them."""
        self.label = label
        self._base_label = label
        self.pieces = list(pieces) if pieces else None
        if self.pieces and span == (None, None):
            span = (self.pieces[0][0], self.pieces[-1][1])
        self.notebook = in_jupyter_kernel() and stream is None if notebook is None else notebook
        self._tqdm: Any = None
        self.inputs = inputs
        self.run_start, self.run_end = span
        self._sources = set(sources)
        self._source_ends: dict[str, int | None] = {}
        self._other_ends = [] if self.run_end is None else [self.run_end]
        if self._sources:
            self.run_end = None  # until every source has told its end
        self.stream: TextIO = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (0.1 if self.tty else 5.0)
        self.delay = delay
        self.width = width
        self.started = time.perf_counter()
        self.rows = 0
        self.nbytes = 0
        self.chunks = 0
        self.frontier: int | None = None  # end time of the latest chunk read
        self.first_start: int | None = None
        self._last_draw = -1e9
        self._closed = False
        self._lock = threading.Lock()
        self.ending = "done"  # how the run ended, for the final line (see on_end)

    # ------------------------------------------------------------------ hook

    def on_plugin(self, component: str, plugin: Plugin) -> None:
        """A source's end, from the instance the run uses: the run's end once all are known."""
        if component not in self._sources or component in self._source_ends:
            return
        try:
            end = plugin.run_end(plugin.run_id)
        except Exception:  # only the ETA depends on it: never break the run
            end = None
        with self._lock:
            self._source_ends[component] = end
            if len(self._source_ends) < len(self._sources):
                return
            ends = [*self._other_ends, *self._source_ends.values()]
            known = [e for e in ends if e is not None]
            self.run_end = max(known) if len(known) == len(ends) else None

    def on_chunk(self, component: str, seconds: float, chunks: Sequence[Chunk]) -> None:
        for chunk in chunks:
            self(component, chunk)

    def on_end(self, error: BaseException | None) -> None:
        """The last line says how the run ended: ``done``, ``interrupted``, ``stopped`` (the
        caller stopped reading early) or ``failed``."""
        self.ending = outcome(error)
        if error is None and self.pieces:  # every piece was read, to its end
            with self._lock:
                self.frontier = self.pieces[-1][1]
        self.close()

    # ------------------------------------------------------------------ feeding

    def __call__(self, component: str, chunk: Chunk) -> None:
        """RunStats listener: count ``chunk`` if ``component`` brings data in; maybe redraw."""
        if self.inputs is not None and component not in self.inputs:
            return
        self.add(len(chunk), chunk.nbytes, chunk.start, chunk.end)

    def at(self, where: str) -> None:
        """Say which part of the run is being read (the label gets ``[where]``)."""
        with self._lock:
            self.label = f"{self._base_label} [{where}]"

    def add(self, rows: int, nbytes: int, start: int | None, end: int | None) -> None:
        """Count data read up to time ``end`` (a chunk, or a whole subrun of a superrun)."""
        with self._lock:
            self.rows += rows
            self.nbytes += nbytes
            self.chunks += 1
            if start is not None and (self.first_start is None or start < self.first_start):
                self.first_start = start
            if end is not None and (self.frontier is None or end > self.frontier):
                self.frontier = end
            now = time.perf_counter()
            if (
                not self._closed
                and now - self.started >= self.delay
                and now - self._last_draw >= self.interval
            ):
                self._draw(now)

    def close(self) -> None:
        """Write the final line (once)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._draw(time.perf_counter(), final=True)

    # ------------------------------------------------------------------ rendering

    @property
    def fraction(self) -> float | None:
        """Fraction of the run's time span read so far, if the run's end is known."""
        if self.pieces is not None and self.frontier is not None:
            frontier = self.frontier
            total = sum(b - a for a, b in self.pieces)
            covered = sum(max(0, min(frontier, b) - a) for a, b in self.pieces)
            return min(covered / total, 1.0) if total > 0 else 1.0
        start = self.run_start if self.run_start is not None else self.first_start
        if self.run_end is None or start is None or self.frontier is None:
            return None
        if self.run_end <= start:
            return 1.0
        return min(max((self.frontier - start) / (self.run_end - start), 0.0), 1.0)

    def render(self, now: float | None = None, *, final: bool = False) -> str:
        """The line as it would be drawn at time ``now``."""
        now = time.perf_counter() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        frac = self.fraction
        size, rate = format_size(self.nbytes), format_rate(self.nbytes / elapsed)
        figures = f"{format_count(self.rows)} rows {size} {self.chunks} chunks"
        rows_s, chunks_s = format_count(self.rows / elapsed), self.chunks / elapsed
        rates = f"{rows_s} rows/s {rate} {chunks_s:.1f} chunks/s"
        if final:
            ending = self.ending
            timing = f"{ending} {'in' if ending == 'done' else 'after'} {format_duration(elapsed)}"
        elif frac is not None and frac > 0:
            timing = f"ETA {format_duration(elapsed * (1 - frac) / frac)}"
        else:
            timing = f"{format_duration(elapsed)} elapsed"
        tails = [  # most detailed first; the first that fits next to a bar wins
            f"{figures} | {rates} | {timing}",
            f"{format_count(self.rows)} rows {size} | {rate} | {timing}",
            f"{size} | {timing}",
        ]
        head = self.label + (f" {frac:4.0%}" if frac is not None else "")
        total = self.width or (shutil.get_terminal_size((100, 20)).columns if self.tty else 160)
        line = ""
        for tail in tails:
            room = total - len(head) - len(tail) - 4
            if frac is not None and room >= 20:
                line = f"{head} |{_bar(frac, min(room, 30))}| {tail}"
                break
            if frac is None and room >= 0:
                line = f"{head} {tail}"
                break
        if not line:
            line = f"{head} {tails[-1]}"
        return line if len(line) <= total or not self.tty else line[: total - 1]

    def _draw(self, now: float, final: bool = False) -> None:
        if self.notebook:
            self._draw_tqdm(now, final)
            self._last_draw = now
            return
        line = self.render(now, final=final)
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._last_draw = now

    def _draw_tqdm(self, now: float, final: bool) -> None:
        """Update the ``tqdm.auto`` bar (made at the first draw): percent done if the run's
        end is known, else a counter of chunks; the figures as its postfix."""
        frac = self.fraction
        if self._tqdm is None:
            from tqdm.auto import tqdm

            known = frac is not None
            self._tqdm = tqdm(
                total=100 if known else None,
                desc=self.label,
                unit="%" if known else " chunks",
                bar_format="{l_bar}{bar}|{postfix}" if known else "{desc}{postfix}",
                file=None if self.stream is sys.stderr else self.stream,
                leave=True,
                dynamic_ncols=True,
            )
        bar = self._tqdm
        elapsed = max(now - self.started, 1e-9)
        figures = (
            f"{format_count(self.rows)} rows {format_size(self.nbytes)} {self.chunks} chunks "
            f"| {format_count(self.rows / elapsed)} rows/s {format_rate(self.nbytes / elapsed)}"
        )
        if bar.total is not None and frac is not None:
            bar.n = 100 if final and self.ending == "done" else round(frac * 100)
        elif bar.total is None:
            bar.n = self.chunks
        if final:
            ending = self.ending
            timing = f"{ending} {'in' if ending == 'done' else 'after'} {format_duration(elapsed)}"
            if ending != "done":
                bar.set_description_str(f"{self.label} {ending.upper()}", refresh=False)
                if bar.total is None:
                    bar.total = max(bar.n, 1) + 1  # a red bar in a widget: not complete
            bar.set_postfix_str(f"{figures} | {timing}", refresh=False)
            bar.refresh()
            bar.close()
            return
        eta = f"ETA {format_duration(elapsed * (1 - frac) / frac)}" if frac else ""
        bar.set_postfix_str(f"{figures} | {eta or format_duration(elapsed) + ' elapsed'}")


def in_jupyter_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel (IPython's kernel app, as tqdm checks)."""
    ipython = sys.modules.get("IPython")
    if ipython is None or "ipykernel" not in sys.modules:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # pragma: no cover - a broken IPython: no notebook
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def _bar(frac: float, width: int) -> str:
    eighths = round(frac * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (BAR_CHARS[part] if full < width else "")
    return text.ljust(width)


def enabled(progress: bool | None, stream: TextIO | None = None) -> bool:
    """``progress`` if given, else whether ``stream`` (default stderr) is a terminal, or
    this is a Jupyter kernel (where the bar is a widget)."""
    if progress is not None:
        return bool(progress)
    if stream is None and in_jupyter_kernel():
        return True
    s = stream if stream is not None else sys.stderr
    return bool(getattr(s, "isatty", lambda: False)())


def run_label(run_id: str, targets: Sequence[str]) -> str:
    """The bar's label: the run and what is asked of it."""
    what = ", ".join(targets) if len(targets) <= 2 else f"({len(targets)} targets)"
    return f"{run_id} {what}"


def progress_bar(
    plan: Plan, progress: bool | None, stream: TextIO | None = None
) -> ProgressBar | None:
    """A bar for running ``plan`` (a hook to give the executor), or None if progress is off.

    It counts what enters the run: the loads (whose stored time span the plan records) and
    the source plugins (whose ``run_end`` it asks of the instances the run creates).
    """
    if not enabled(progress, stream):
        return None
    inputs: set[str] = set()
    sources: set[str] = set()
    starts: list[int | None] = []
    ends: list[int | None] = []
    for data_type, step in plan.steps.items():
        if step.action == "load":
            inputs.add(f"load {data_type}")
            info = step.info
            starts.append(info.start if info is not None else None)
            ends.append(info.end if info is not None else None)
        elif step.inputs == () and step.plugin not in sources:
            inputs.add(step.plugin)
            sources.add(step.plugin)
            starts.append(None)  # a source's start is known from its first chunk only
    known_ends = [e for e in ends if e is not None]
    end = max(known_ends) if known_ends else None
    if len(known_ends) < len(ends):  # a load's end is unknown: so is the run's
        end, sources = None, set()
    known_starts = [s for s in starts if s is not None]
    start = min(known_starts) if known_starts and len(known_starts) == len(starts) else None
    label = run_label(plan.run_id, plan.targets)
    return ProgressBar(
        label, inputs=inputs or None, span=(start, end), stream=stream, sources=sources
    )
