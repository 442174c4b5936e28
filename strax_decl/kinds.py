"""Plugin kinds: overlap windows, loops, merge-only, cut and exhaust plugins.

Each kind is a ``Plugin`` subclass that writes part of the plugin for its user::

    class NearbyPeaks(sd.OverlapWindowPlugin):      # sees +-window of input around each chunk
        window = 10_000                              # ns, or (left, right), or def window_size
        ...

    class EventInfo(sd.LoopPlugin):                  # compute_loop once per event
        loop_over = "events"
        def compute_loop(self, event, peaks): ...    # the peaks inside this event

    class PeakInfo(sd.MergeOnlyPlugin):              # peaks + peak_basics as one data type
        provides = "peak_info"
        kind = "peaks"
        class Inputs(sd.Inputs): ...

    class CutBigPeaks(sd.CutPlugin):                 # one boolean per peak
        def cut_by(self, peaks): return peaks["area"] > 1000

    class PeakStats(sd.ExhaustPlugin):               # compute once, on all peaks of the run
        def compute(self, peaks, start, end): ...

The loop kind lives in ``kinds_loop`` and the exhaust kind in ``kinds_exhaust`` (re-exported
here); the checks they share in ``kinds_common``.

A plugin whose ``compute`` is a generator (down-chunking) needs no kind: the plain runner
(``strax_decl.runner``) runs it and checks that the chunks it yields tile each step. A kind
whose steps differ (the overlap window) names its runner in ``_runner``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from pydantic import create_model

from strax_decl.chunk import TIME_FIELDS, Chunk, endtimes, merged_dtype
from strax_decl.kinds_common import check_kind_parameters, kinds_of, require_own_hook, window_pair
from strax_decl.kinds_exhaust import ExhaustPlugin
from strax_decl.kinds_loop import LoopPlugin
from strax_decl.plugin import (
    Inputs,
    Options,
    Outputs,
    Plugin,
    PluginDeclarationError,
    PluginGaveWrongOutput,
    SaveWhen,
    _schema_annotation,
    output,
)
from strax_decl.runner import OverlapWindowRunner, PluginRunner
from strax_decl.schema import Schema, SchemaError, bool_, field, i64, schema_from_dtype

__all__ = [
    "CutPlugin",
    "ExhaustPlugin",
    "LoopPlugin",
    "MergeOnlyPlugin",
    "OverlapWindowPlugin",
]

Window = int | tuple[int, int]


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


class OverlapWindowPlugin(Plugin):
    """A plugin whose output rows depend on input within a window around them.

    Declare ``window = W`` (ns on both sides), ``window = (left, right)``, or override
    ``window_size()`` (e.g. to read an option). The contract: an output row ``[t, e)``, its
    existence and its values, depends only on input rows overlapping ``[t - left, e + right)``.

    The framework then makes the result independent of the chunking: it computes on the new
    input plus cached input reaching back ``left`` before what is not yet sent, sends only
    rows that end more than ``right`` before the known input ends, holds back (and later
    recomputes) the rest, and sends the held-back rows when the input ends. Output chunks
    therefore need not match input chunks. It keeps state across chunks, so it is never
    parallel and its compute cannot be a generator.
    """

    abstract = True
    window: ClassVar[Window | None] = None
    _runner = OverlapWindowRunner

    def window_size(self) -> Window:
        """The window in ns: ``W`` or ``(left, right)``; override for option-dependent windows."""
        if self.window is None:
            raise PluginDeclarationError(f"plugin {self.name}: declare window = <ns>")
        return self.window

    @classmethod
    def _check_declaration(cls) -> None:
        if cls.parallel:
            raise PluginDeclarationError(
                f"plugin {cls.name}: an OverlapWindowPlugin keeps input and output across "
                "chunks, so it cannot be parallel"
            )
        if cls.compute_is_generator:
            raise PluginDeclarationError(
                f"plugin {cls.name}: an OverlapWindowPlugin cannot down-chunk (compute must "
                "return its rows, not yield them)"
            )
        if cls.window is None and cls.window_size is OverlapWindowPlugin.window_size:
            raise PluginDeclarationError(
                f"plugin {cls.name}: declare window = <ns> (or (left, right)), or define "
                "window_size(self)"
            )
        if cls.window is not None:
            window_pair(cls.name, cls.window)

    def _window(self) -> tuple[int, int]:
        """The window as checked ``(left, right)`` ns, for the runner."""
        return window_pair(self.name, self.window_size())


class _DerivedOutput(Plugin):
    """Kinds whose single output is derived from the declaration instead of declared."""

    abstract = True
    provides: ClassVar[str | None] = None  # the data type provided (default: from the name)
    kind: ClassVar[str | None] = None  # its data kind (default: the first input's name)
    save: ClassVar[SaveWhen | str] = SaveWhen.ALWAYS

    @classmethod
    def _read_declaration(cls) -> None:
        if "Outputs" in cls.__dict__:
            raise PluginDeclarationError(
                f"plugin {cls.__name__}: a {cls._kind_name()} derives its Outputs; declare "
                "provides = '<data type>' (and kind = '<data kind>') instead"
            )
        if not isinstance(cls.Inputs, type) or not issubclass(cls.Inputs, Inputs):
            raise PluginDeclarationError(
                f"plugin {cls.__name__}: Inputs must subclass sd.Inputs, got {cls.Inputs!r}"
            )
        inputs = {
            f: _schema_annotation(cls.__name__, "input", f, info.annotation)
            for f, info in cls.Inputs.model_fields.items()
        }
        if not inputs:
            raise PluginDeclarationError(f"plugin {cls.__name__}: declare at least one input")
        provides = cls.provides or cls._default_provides()
        schema = cls._output_schema(inputs)
        kind = cls.kind or next(iter(inputs))
        fields: dict[str, Any] = {provides: (schema, output(kind=kind, save=cls.save))}
        cls.Outputs = create_model(f"{cls.__name__}Outputs", __base__=Outputs, **fields)
        super()._read_declaration()

    @classmethod
    def _kind_name(cls) -> str:
        return next(b.__name__ for b in cls.__mro__ if b.__dict__.get("abstract", False))

    @classmethod
    def _default_provides(cls) -> str:
        return _snake(cls.__name__)

    @classmethod
    def _output_schema(cls, inputs: dict[str, type[Schema]]) -> type[Schema]:
        raise NotImplementedError

    @property
    def provided(self) -> str:
        return next(iter(self.outputs))

    def __init__(
        self, options: Options, run_id: str, input_kinds: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(options, run_id, input_kinds)
        self.check_input_kinds(self.input_kinds)


class MergeOnlyRunner(PluginRunner):
    """Runs a ``MergeOnlyPlugin``: merged rows arrive in the output's dtype (new fields 0)."""

    plugin: MergeOnlyPlugin

    def merge_by_kind(self, step: Mapping[str, Chunk]) -> dict[str, Chunk]:
        dtype = self.plugin.outputs[self.plugin.provided].dtype
        return {
            kind: Chunk(c.start, c.end, _as_dtype(c.data, dtype))
            for kind, c in super().merge_by_kind(step).items()
        }


def _as_dtype(rows: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if rows.dtype == dtype:
        return rows
    out = np.zeros(len(rows), dtype=dtype)
    for f in dtype.names or ():
        if f in (rows.dtype.names or ()):
            out[f] = rows[f]
    return out


class MergeOnlyPlugin(_DerivedOutput):
    """One data type holding the fields of several same-kind inputs, optionally plus a few
    fields derived from them.

    Declare ``Inputs`` (the schemas whose fields to keep), ``provides`` and ``kind`` (default:
    the first input's name). The output schema is the union of the input schemas' fields (a
    shared field, of one dtype, is kept once: the later input's values win, as in any
    same-kind merge). Saved only when listed in ``save=`` by default: it holds nothing new.

    With ``extra_fields = <abstract schema of new fields>`` and a ``compute(self, <kind>)``
    of its own it merges, then derives: compute gets the merged rows in the output's dtype
    (new fields zero) and returns them filled in (in place is fine). Saved by default.
    """

    abstract = True
    save: ClassVar[SaveWhen | str] = SaveWhen.EXPLICIT
    extra_fields: ClassVar[type[Schema] | None] = None
    _runner = MergeOnlyRunner

    @classmethod
    def _read_declaration(cls) -> None:
        own = cls.__mro__[: cls.__mro__.index(MergeOnlyPlugin)]
        declared = any("save" in b.__dict__ for b in own)
        if cls.compute is not MergeOnlyPlugin.compute and not declared:
            cls.save = SaveWhen.ALWAYS  # it holds fields its inputs do not
        super()._read_declaration()

    @classmethod
    def _output_schema(cls, inputs: dict[str, type[Schema]]) -> type[Schema]:
        docs: dict[str, dict[str, Any]] = {}
        for schema in inputs.values():
            for f, doc in schema.field_docs().items():
                if f not in docs or f not in TIME_FIELDS:
                    docs[f] = doc  # the later input's, like its values
        try:
            dtype = merged_dtype(tuple(s.dtype for s in inputs.values()))
        except TypeError as e:
            raise PluginDeclarationError(f"plugin {cls.__name__}: {e}") from None
        merged = schema_from_dtype(f"{cls.__name__}Row", dtype, docs)
        extra = cls.extra_fields
        if extra is None:
            return merged
        if not (isinstance(extra, type) and issubclass(extra, Schema)):
            raise PluginDeclarationError(
                f"plugin {cls.__name__}: extra_fields must be a sd.Schema subclass (an "
                f"abstract one holding the new fields), got {extra!r}"
            )
        try:
            return merged.derive(f"{cls.__name__}Row", add=extra)
        except SchemaError as e:
            raise PluginDeclarationError(f"plugin {cls.__name__}: extra_fields: {e}") from None

    @classmethod
    def _check_declaration(cls) -> None:
        has_compute = cls.compute is not MergeOnlyPlugin.compute
        if has_compute and cls.extra_fields is None:
            raise PluginDeclarationError(
                f"plugin {cls.name}: a MergeOnlyPlugin with a compute of its own derives "
                "fields: declare them as extra_fields = <an abstract sd.Schema>"
            )
        if cls.extra_fields is not None and not has_compute:
            raise PluginDeclarationError(
                f"plugin {cls.name}: extra_fields are declared, but no compute fills them in"
            )
        if has_compute and cls.compute_is_generator:
            raise PluginDeclarationError(f"plugin {cls.name}: a MergeOnlyPlugin cannot down-chunk")

    @classmethod
    def check_input_kinds(cls, input_kinds: Mapping[str, str]) -> None:
        kinds = kinds_of(cls, input_kinds)
        if len(kinds) != 1:
            raise PluginDeclarationError(
                f"plugin {cls.name}: a MergeOnlyPlugin merges inputs of one kind, but its "
                f"inputs are of kinds {', '.join(kinds)}"
            )
        (provided,) = cls.outputs.values()
        if kinds[0] != provided.kind:
            raise PluginDeclarationError(
                f"plugin {cls.name}: its rows are rows of kind {kinds[0]!r}, but its output "
                f"{provided.name!r} is declared of kind {provided.kind!r}; set kind = "
                f"{kinds[0]!r}"
            )
        if cls.compute is not MergeOnlyPlugin.compute:
            check_kind_parameters(cls.name, cls.compute, kinds)

    def compute(self, **kinds: np.ndarray) -> np.ndarray:
        (rows,) = kinds.values()
        return _as_dtype(rows, self.outputs[self.provided].dtype)


class CutPlugin(_DerivedOutput):
    """One boolean per row of a kind, from ``cut_by(self, <kind>=rows, ...) -> bool array``.

    Output rows: ``time``, ``endtime`` and the boolean field ``cut_name`` (default: the class
    name in snake case), in data type ``provides`` (default: ``cut_name``) of kind ``kind``
    (default: the first input's name); ``cut_by`` gets every input kind and returns one
    boolean per row of that kind. Saved when it is a requested target, as in strax.
    """

    abstract = True
    cut_name: ClassVar[str | None] = None
    cut_description: ClassVar[str] = ""
    save: ClassVar[SaveWhen | str] = SaveWhen.TARGET

    @classmethod
    def _default_provides(cls) -> str:
        return cls._cut_field()

    @classmethod
    def _cut_field(cls) -> str:
        name = cls.cut_name or _snake(cls.__name__)
        if not name.isidentifier() or name in TIME_FIELDS:
            raise PluginDeclarationError(
                f"plugin {cls.__name__}: cut_name {name!r} must be an identifier other than "
                f"{', '.join(TIME_FIELDS)}"
            )
        return name

    @classmethod
    def _output_schema(cls, inputs: dict[str, type[Schema]]) -> type[Schema]:
        name = cls._cut_field()
        description = cls.cut_description or f"passes cut {name}"
        fields: dict[str, Any] = {
            "time": (i64, field("start time", unit="ns")),
            "endtime": (i64, field("exclusive end time", unit="ns")),
            name: (bool_, field(description)),
        }
        return create_model(f"{cls.__name__}Row", __base__=Schema, **fields)

    @classmethod
    def _check_declaration(cls) -> None:
        require_own_hook(cls, CutPlugin, "cut_by", "(self, <kind>=rows) returning a bool array")

    @classmethod
    def check_input_kinds(cls, input_kinds: Mapping[str, str]) -> None:
        kinds = kinds_of(cls, input_kinds)
        (provided,) = cls.outputs.values()
        if provided.kind not in kinds:
            raise PluginDeclarationError(
                f"plugin {cls.name}: its output is of kind {provided.kind!r}, which is not the "
                f"kind of any input (input kinds: {', '.join(kinds)}); set kind to one of them"
            )
        check_kind_parameters(cls.name, cls.cut_by, kinds, what="cut_by")

    def __init__(
        self, options: Options, run_id: str, input_kinds: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(options, run_id, input_kinds)
        self.field = self._cut_field()

    def cut_by(self, **kinds: np.ndarray) -> np.ndarray:
        """True for each row (of the output's kind) that passes the cut."""
        raise NotImplementedError

    def compute(self, **kinds: np.ndarray) -> np.ndarray:
        spec = self.outputs[self.provided]
        rows = kinds[spec.kind]
        passed = np.asarray(self.cut_by(**kinds))
        if passed.dtype != np.bool_ or passed.shape != (len(rows),):
            raise PluginGaveWrongOutput(
                f"plugin {self.name}: cut_by must return a bool array with one value per "
                f"{spec.kind} row ({len(rows)}), got dtype {passed.dtype}, shape {passed.shape}"
            )
        out = np.zeros(len(rows), dtype=spec.dtype)
        out["time"] = rows["time"]
        out["endtime"] = endtimes(rows)
        out[self.field] = passed
        return out
