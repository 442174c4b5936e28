"""The loop kind: ``compute_loop`` once per base row, with the rows of other kinds that are
inside it (``time_selection = "fully_contained"``) or touch it (``"touching"``).

Touching, as strax's ``touching_windows``: a row ``[t, e)`` touches the base row ``[T, E)``
when ``e > T - w`` and ``t < E + w`` (``w = touching_window``), i.e. it overlaps ``[T - w,
E + w)``; a zero-length row touches only when strictly inside. Unlike strax (a slice from
the first to the last touching row) the selection is exact when rows' end times are not in
order, so a long row does not drag in the short rows it spans.

Why the result does not depend on the chunking: rows inside or overlapping a base row
always arrive in the same step (a step boundary cuts no row), so with ``w = 0`` the plain
runner runs it. With ``w > 0`` a touching row can sit beyond a step boundary, so the
plugin runs as an overlap window of ``(w, w)``: ``TouchingLoopRunner``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from strax_decl.chunk import endtimes
from strax_decl.kinds_common import check_kind_parameters, kinds_of, require_own_hook, window_pair
from strax_decl.plugin import Options, Plugin, PluginDeclarationError, PluginGaveWrongOutput
from strax_decl.runner import OverlapWindowRunner

__all__ = ["TIME_SELECTIONS", "LoopPlugin", "TouchingLoopRunner"]

TIME_SELECTIONS = ("fully_contained", "touching")


class TouchingLoopRunner(OverlapWindowRunner):
    """Runs a touching ``LoopPlugin`` with ``touching_window > 0``: an overlap window of
    ``touching_window`` on both sides (the plugin's ``_window``), so that the rows touching
    a base row near a step boundary are there when it is computed."""


class LoopPlugin(Plugin):
    """Compute once per row of a base kind, with the rows of other kinds inside (or touching)
    that row.

    ``loop_over`` names the base kind (default: the kind of the first input). Define
    ``compute_loop(self, <base row>, <kind>=<rows of kind selected for the base row>, ...)``
    returning one output row: a dict ``{field: value}`` (``time``/``endtime`` default to the
    base row's) or a numpy row; with several outputs, ``{output: row}``. Base rows must not
    overlap.

    ``time_selection`` (strax's names): ``"fully_contained"`` (default) selects the rows
    inside the base row; ``"touching"`` those overlapping it widened by ``touching_window``
    ns on each side (or a ``(left, right)`` pair), so one row may be selected for two base
    rows. Either way the result does not depend on the chunking.
    """

    abstract = True
    loop_over: ClassVar[str | None] = None
    time_selection: ClassVar[str] = "fully_contained"
    touching_window: ClassVar[int | tuple[int, int]] = 0

    @classmethod
    def _check_declaration(cls) -> None:
        require_own_hook(cls, LoopPlugin, "compute_loop", "(self, <base row>, <other kind>=rows)")
        if cls.time_selection not in TIME_SELECTIONS:
            raise PluginDeclarationError(
                f"plugin {cls.name}: time_selection must be one of "
                f"{', '.join(map(repr, TIME_SELECTIONS))}, got {cls.time_selection!r}"
            )
        left, right = window_pair(cls.name, cls.touching_window, "touching_window")
        windowed = cls.time_selection == "touching" and (left or right)
        if (left or right) and not windowed:
            raise PluginDeclarationError(
                f"plugin {cls.name}: touching_window = {cls.touching_window!r} applies only "
                "with time_selection = 'touching'"
            )
        if windowed and cls.parallel:
            raise PluginDeclarationError(
                f"plugin {cls.name}: a touching LoopPlugin with a touching_window keeps input "
                "across chunks (an overlap window), so it cannot be parallel"
            )
        if windowed and cls._runner is None:
            cls._runner = TouchingLoopRunner
        elif not windowed and cls._runner is TouchingLoopRunner:
            cls._runner = None  # a subclass back to no window: the plain runner

    @classmethod
    def check_input_kinds(cls, input_kinds: Mapping[str, str]) -> None:
        kinds = kinds_of(cls, input_kinds)
        base = cls.loop_over or kinds[0]
        if base not in kinds:
            raise PluginDeclarationError(
                f"plugin {cls.name}: loop_over = {base!r} is not the kind of any input "
                f"(input kinds: {', '.join(kinds)})"
            )
        others = [k for k in kinds if k != base]
        check_kind_parameters(cls.name, cls.compute_loop, others, skip=1, what="compute_loop")

    def __init__(
        self, options: Options, run_id: str, input_kinds: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(options, run_id, input_kinds)
        self.check_input_kinds(self.input_kinds)
        self.base_kind = self.loop_over or kinds_of(type(self), self.input_kinds)[0]

    def _window(self) -> tuple[int, int]:
        """The touching window ``(left, right)`` ns (for ``TouchingLoopRunner``)."""
        return window_pair(self.name, self.touching_window, "touching_window")

    def compute_loop(self, base: np.void, **selected: np.ndarray) -> Any:
        """One output row for ``base`` and the rows of each other kind selected for it."""
        raise NotImplementedError

    def compute(self, **kinds: np.ndarray) -> dict[str, np.ndarray]:
        base = kinds[self.base_kind]
        base_end = endtimes(base)
        if len(base) > 1:
            overlap = np.flatnonzero(base["time"][1:] < base_end[:-1])
            if len(overlap):
                i = int(overlap[0])
                raise ValueError(
                    f"plugin {self.name}: rows {i} [{int(base['time'][i])}, {int(base_end[i])}) "
                    f"and {i + 1} [{int(base['time'][i + 1])}, {int(base_end[i + 1])}) of "
                    f"{self.base_kind!r} overlap; a LoopPlugin needs non-overlapping base rows"
                )
        touching = self.time_selection == "touching"
        left, right = self._window()
        groups = [
            (kind, *_selection(rows, base["time"], base_end, touching, left, right))
            for kind, rows in kinds.items()
            if kind != self.base_kind
        ]
        out = {
            name: self._prefilled(spec.dtype, base, base_end) for name, spec in self.outputs.items()
        }
        single = next(iter(self.outputs)) if len(self.outputs) == 1 else None
        for i in range(len(base)):
            selected = {}
            for kind, rows, lo, hi, keep in groups:
                a, b = int(lo[i]), int(hi[i])
                mask = keep(a, b, i)
                selected[kind] = rows[a:b] if mask is None else rows[a:b][mask]
            result = self.compute_loop(base[i], **selected)
            if single is not None:
                self._store(single, out[single], i, result)
            elif isinstance(result, Mapping) and set(result) == set(self.outputs):
                for name, row in result.items():
                    self._store(name, out[name], i, row)
            else:
                raise PluginGaveWrongOutput(
                    f"plugin {self.name}: compute_loop must return {{output: row}} for the "
                    f"outputs {sorted(self.outputs)}, got {result!r:.200}"
                )
        return out

    @staticmethod
    def _prefilled(dtype: np.dtype, base: np.ndarray, base_end: np.ndarray) -> np.ndarray:
        rows = np.zeros(len(base), dtype=dtype)
        names = dtype.names or ()
        if "time" in names:
            rows["time"] = base["time"]
        if "endtime" in names:
            rows["endtime"] = base_end
        for f in ("dt", "length"):
            if f in names and f in (base.dtype.names or ()):
                rows[f] = base[f]
        return rows

    def _store(self, name: str, rows: np.ndarray, i: int, row: Any) -> None:
        if isinstance(row, np.void) and row.dtype == rows.dtype:
            rows[i] = row
            return
        if isinstance(row, np.void):
            row = {f: row[f] for f in row.dtype.names or ()}
        if not isinstance(row, Mapping):
            raise PluginGaveWrongOutput(
                f"plugin {self.name}, output {name!r}: compute_loop must return a dict "
                f"{{field: value}} or a numpy row, got {type(row).__name__}"
            )
        names = rows.dtype.names or ()
        for f, value in row.items():
            if f not in names:
                raise PluginGaveWrongOutput(
                    f"plugin {self.name}, output {name!r}: compute_loop returned field {f!r}, "
                    f"which the output does not declare (fields: {', '.join(names)})"
                )
            rows[f][i] = value


_Keep = Callable[[int, int, int], "np.ndarray | None"]
"""``keep(a, b, i)``: which of ``rows[a:b]`` base row ``i`` selects (a mask; None: all)."""


def _selection(
    rows: np.ndarray,
    base_time: np.ndarray,
    base_end: np.ndarray,
    touching: bool,
    left: int,
    right: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, _Keep]:
    """Per base row ``i``: the candidate range ``rows[lo[i]:hi[i]]`` and ``keep(a, b, i)``,
    the mask of those selected (rows sorted by time; their end times need not be)."""
    ends = endtimes(rows)
    if not touching:  # fully contained: time >= T, end <= E
        lo = np.searchsorted(rows["time"], base_time, side="left")
        hi = np.searchsorted(rows["time"], base_end, side="left")

        def contained(a: int, b: int, i: int) -> np.ndarray | None:
            inside = ends[a:b] <= base_end[i]
            return None if inside.all() else inside

        return rows, lo, hi, contained
    # touching: end > T - left and time < E + right; rows before lo all end by T - left
    reach = base_time - left
    lo = np.searchsorted(np.maximum.accumulate(ends), reach, side="right")
    hi = np.searchsorted(rows["time"], base_end + right, side="left")

    def touches(a: int, b: int, i: int) -> np.ndarray | None:
        touch = ends[a:b] > reach[i]
        return None if touch.all() else touch

    return rows, lo, hi, touches
