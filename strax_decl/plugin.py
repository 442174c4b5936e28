"""Plugin base class: inputs, outputs and options declared as pydantic models.

::

    class PeakFinder(sd.Plugin):
        version = "0.1.0"

        class Inputs(sd.Inputs):
            records: Record

        class Outputs(sd.Outputs):
            peaks: Peak

        class Options(sd.Options):
            gap: int = sd.option(300, ge=0, description="largest gap inside one peak [ns]")

        def compute(self, records, start, end):
            ...

The declaration is read once, when the class is defined, into plain specs (``InputSpec``,
``OutputSpec``, ``OptionSpec``) that the resolver and the pipeline use; mistakes in the
declaration raise ``PluginDeclarationError`` naming the plugin right there.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticUndefined

from strax_decl.chunk import Chunk
from strax_decl.code_hash import code_hash
from strax_decl.errors import StraxDeclError
from strax_decl.option_types import coercion_problem
from strax_decl.schema import Schema, schema_from_dtype
from strax_storage.codec_choice import check_choice

if TYPE_CHECKING:  # pragma: no cover
    from strax_decl.runner import PluginRunner

__all__ = [
    "InputSpec",
    "Inputs",
    "OptionSpec",
    "Options",
    "OutputSpec",
    "Outputs",
    "Plugin",
    "PluginDeclarationError",
    "PluginGaveWrongOutput",
    "PluginRaisedStopIteration",
    "SaveWhen",
    "option",
    "output",
]

Submit = Callable[..., "Future[Any]"]
"""Where a parallel plugin's step computations go: a callable like ``Executor.submit``."""


class PluginDeclarationError(StraxDeclError, TypeError):
    """A plugin class is declared wrongly; the message names the plugin."""


class PluginGaveWrongOutput(StraxDeclError, TypeError):
    """A plugin's compute returned rows that do not match its declared outputs."""


class PluginRaisedStopIteration(StraxDeclError, RuntimeError):
    """User code (compute, a source or down-chunking generator) leaked a ``StopIteration``.

    Left as is it would look like the end of a stream to whoever iterates, and a truncated
    output would be stored complete; the original is the ``__cause__``.
    """


class SaveWhen(IntEnum):
    """When an output is stored (as strax's SaveWhen): never < explicit < target < always."""

    NEVER = 0
    EXPLICIT = 1  # only when the user lists it in ``save=``
    TARGET = 2  # only when it is a requested target
    ALWAYS = 3


class Inputs(BaseModel):
    """Field name = data type consumed; annotation = the schema expected from its provider."""

    model_config = ConfigDict(arbitrary_types_allowed=True)


class Outputs(BaseModel):
    """Field name = data type provided; annotation = its row schema; default = ``sd.output()``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)


class Options(BaseModel):
    """Validated, typed, documented configuration of one plugin."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_silent_coercion(cls, value: Any, info: ValidationInfo) -> Any:
        """Refuse what pydantic would quietly change (True as 1, "20" as 20; option_types)."""
        field = cls.model_fields.get(info.field_name or "")
        problem = (
            None if field is None else coercion_problem(value, field.annotation, field.metadata)
        )
        if problem is not None:
            raise ValueError(problem)
        return value


def option(
    default: Any = PydanticUndefined,
    *,
    description: str,
    track: bool = True,
    per_run: bool = False,
    **constraints: Any,
) -> Any:
    """Declare an option: default, description, pydantic constraints (``ge=0`` ...).

    ``track=False`` keeps the value out of the lineage (for options that cannot change the
    result, such as a chunk size of a simulated source). ``per_run=True``: the value may vary
    from run to run (``sd.by_run(...)``, ``sd.correction(...)`` in the config; see
    ``strax_decl.config``); each run's resolved value enters that run's lineage.
    """
    if per_run and not track:
        raise ValueError("a per_run option changes results run by run: it cannot be track=False")
    return Field(
        default,
        description=description,
        json_schema_extra={"track": track, "per_run": per_run},
        **constraints,
    )


def output(
    *,
    kind: str | None = None,
    save: SaveWhen | str = SaveWhen.ALWAYS,
    description: str = "",
    fields_from: str | None = None,
    codec: str | Mapping[str, str] | None = None,
) -> Any:
    """Declare how an output is handled: its data kind, save policy and codec.

    ``fields_from="<input>"``: the output's rows have every field of that input (as its
    provider declares it, resolved when the context is built) followed by the fields of the
    annotated schema (usually an ``abstract`` one holding only the new fields); see
    ``Plugin.output_schemas`` for subsets and other derivations.

    There is no rechunking on save (strax's ``rechunk_on_save``): a stored data set keeps the
    chunks its plugin made, because consumers computed from a loaded input must see the
    chunk boundaries they would see live (see docs/storage.md, "Chunks are part of the data").

    ``codec``: how the stored fields are compressed, a name for all of them (``"zstd:3"``,
    ``"blosc-zstd"``, ...) or ``{field: name}`` (see ``strax_storage.codec_choice``); None
    is the measured default per field. It changes only the bytes on disk, never the rows, so
    it is not part of the lineage (docs/storage.md, "Codecs").
    """
    save_when = SaveWhen[save.upper()] if isinstance(save, str) else SaveWhen(save)
    try:
        checked: Any = check_choice(codec)  # JSON: a name, a {field: name} dict or None
    except (TypeError, ValueError) as e:
        raise type(e)(f"sd.output(codec=...): {e}") from None
    return Field(
        default=None,
        description=description or None,
        json_schema_extra={
            "kind": kind,
            "save": int(save_when),
            "fields_from": fields_from,
            "codec": checked,
        },
    )


@dataclass(frozen=True)
class InputSpec:
    name: str
    schema: type[Schema]

    @property
    def fields(self) -> np.dtype | None:
        """Fields the consumer requires (None: accepts any provider dtype)."""
        return None if self.schema is Schema else self.schema.dtype


@dataclass(frozen=True)
class OutputSpec:
    name: str
    schema: type[Schema]
    kind: str
    save: SaveWhen
    description: str
    #: Whether the schema is resolved when the context is built (``Plugin.output_schemas``
    #: or ``fields_from``): ``schema`` is then the declared base until it is.
    resolved_at_build: bool = False
    fields_from: str | None = None
    #: ``sd.output(codec=...)``: handed to ``Store.saver`` (not part of the lineage)
    codec: str | dict[str, str] | None = None

    @property
    def dtype(self) -> np.dtype:
        return self.schema.dtype

    def __reduce__(self) -> Any:
        # A schema built at run time (Schema.derive, from_dtype) cannot be pickled by name;
        # process pools and Dask workers get it rebuilt from its dtype and field docs.
        fields = [getattr(self, f.name) for f in dataclasses.fields(self)]
        if _importable(self.schema):
            return (OutputSpec, tuple(fields))
        schema = (self.schema.__name__, self.schema.dtype, self.schema.field_docs())
        return (_rebuilt_output_spec, (schema, fields[0], *fields[2:]))


def _importable(cls: type) -> bool:
    module = sys.modules.get(cls.__module__)
    found: Any = module
    for part in cls.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is cls


def _rebuilt_output_spec(schema: tuple[str, np.dtype, dict[str, Any]], *rest: Any) -> OutputSpec:
    name, dtype, docs = schema
    return OutputSpec(rest[0], schema_from_dtype(name, dtype, docs), *rest[1:])


@dataclass(frozen=True)
class OptionSpec:
    name: str
    annotation: Any
    default: Any  # PydanticUndefined when required
    description: str
    track: bool
    plugin: str
    per_run: bool = False

    @property
    def required(self) -> bool:
        return self.default is PydanticUndefined

    @property
    def type_name(self) -> str:
        a = self.annotation
        return getattr(a, "__name__", None) or str(a).replace("typing.", "")


def _schema_annotation(plugin: str, where: str, name: str, annotation: Any) -> type[Schema]:
    if isinstance(annotation, type) and issubclass(annotation, Schema):
        return annotation
    raise PluginDeclarationError(
        f"plugin {plugin}: {where} {name!r} must be annotated with a sd.Schema subclass, "
        f"got {annotation!r}"
    )


def _extra(info: Any) -> dict[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


class Plugin:
    """Base of all plugins. Subclass it and declare ``Inputs``, ``Outputs``, ``Options``.

    Class attributes users set:
      ``version``: a string in the lineage; ``"auto"`` derives it from the source code.
      ``parallel``: ``True``/``"thread"`` computes chunks in a thread pool, ``"process"`` in a
      process pool (the pipeline still delivers them in order).
      ``max_messages``: mailbox bound for this plugin's outputs (None: the context's).

    Only what plugin authors write lives here (``setup``, ``compute``, ``source``,
    ``run_end``); running an instance step by step is ``strax_decl.runner``'s job.
    """

    version: ClassVar[str] = "0.0.0"
    parallel: ClassVar[bool | str] = False
    max_messages: ClassVar[int | None] = None
    #: Superrun-level: on a superrun, computed once on the subruns' joined inputs and stored
    #: under the superrun (only when listed in ``save=``); else made per subrun (strax's name).
    allow_superrun: ClassVar[bool] = False
    #: Live source: ``source`` may yield ``sd.NOT_YET`` (no new data yet, the run goes on);
    #: the runner then waits ``live_poll`` s and asks again (docs/live.md).
    live: ClassVar[bool] = False
    live_poll: ClassVar[float] = 0.2
    #: Seconds of ``sd.NOT_YET`` in a row after which the request fails with ``LiveTimeout``
    #: (None: wait as long as the run goes on; an interrupt still stops it).
    live_timeout: ClassVar[float | None] = None
    #: False: a rerun after a kill recomputes it from the start (it keeps state across
    #: chunks) instead of resuming after its last final chunk.
    resumable: ClassVar[bool] = True
    abstract: ClassVar[bool] = True

    Inputs: ClassVar[type[Inputs]] = Inputs
    Outputs: ClassVar[type[Outputs]] = Outputs
    Options: ClassVar[type[Options]] = Options

    # Derived from the declaration when the class is defined:
    name: ClassVar[str]
    inputs: ClassVar[dict[str, InputSpec]]
    outputs: ClassVar[dict[str, OutputSpec]]
    option_specs: ClassVar[dict[str, OptionSpec]]
    code_hash: ClassVar[str]
    is_source: ClassVar[bool]
    compute_takes_start_end: ClassVar[bool]
    compute_is_generator: ClassVar[bool]  # down-chunking: several output chunks per step
    #: Whether ``version`` was declared ``"auto"`` (here or by the nearest base declaring one).
    _auto_version: ClassVar[bool] = False
    #: How instances run (``strax_decl.runner``): a plugin kind whose steps differ names its
    #: runner class here; None is the plain ``PluginRunner``. Kept off the public namespace so
    #: that no user method can replace the framework's step machinery.
    _runner: ClassVar[type[PluginRunner] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = cls.__name__
        if cls.__dict__.get("abstract", False):
            return
        cls.abstract = False
        cls._read_declaration()

    @classmethod
    def _read_declaration(cls) -> None:
        name = cls.__name__
        for attr, base in (("Inputs", Inputs), ("Outputs", Outputs), ("Options", Options)):
            model = getattr(cls, attr)
            if not (isinstance(model, type) and issubclass(model, base)):
                raise PluginDeclarationError(
                    f"plugin {name}: {attr} must subclass sd.{base.__name__}, got {model!r}"
                )
        if not isinstance(cls.version, str) or not cls.version:
            raise PluginDeclarationError(f"plugin {name}: version must be a non-empty string")
        timeout = cls.live_timeout
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise PluginDeclarationError(
                f"plugin {name}: live_timeout must be a positive number of seconds or None, "
                f"got {timeout!r}"
            )
        if cls.parallel not in (False, True, "thread", "process"):
            raise PluginDeclarationError(
                f"plugin {name}: parallel must be False, True, 'thread' or 'process', "
                f"got {cls.parallel!r}"
            )
        cls.inputs = {
            f: InputSpec(f, _schema_annotation(name, "input", f, info.annotation))
            for f, info in cls.Inputs.model_fields.items()
        }
        outputs: dict[str, OutputSpec] = {}
        hook = cls.has_schema_hook()
        for f, info in cls.Outputs.model_fields.items():
            schema = _schema_annotation(name, "output", f, info.annotation)
            extra = _extra(info)
            fields_from = extra.get("fields_from")
            if fields_from is not None and fields_from not in cls.inputs:
                raise PluginDeclarationError(
                    f"plugin {name}: output {f!r} takes fields_from={fields_from!r}, which is "
                    f"not an input (inputs: {', '.join(cls.inputs) or 'none'})"
                )
            abstract = schema is Schema or (
                getattr(schema, "abstract", False) and "abstract" in schema.__dict__
            )
            if abstract and not (hook or fields_from):
                raise PluginDeclarationError(
                    f"plugin {name}: output {f!r} uses abstract schema {schema.__name__} "
                    "(a schema resolved when the context is built needs output_schemas() "
                    "or sd.output(fields_from=...))"
                )
            outputs[f] = OutputSpec(
                name=f,
                schema=schema,
                kind=extra.get("kind") or f,
                save=SaveWhen(extra.get("save", SaveWhen.ALWAYS)),
                description=info.description or "",
                resolved_at_build=hook or fields_from is not None,
                fields_from=fields_from,
                codec=extra.get("codec"),
            )
        if not outputs:
            raise PluginDeclarationError(f"plugin {name}: Outputs declares no data type")
        overlap = set(outputs) & set(cls.inputs)
        if overlap:
            raise PluginDeclarationError(
                f"plugin {name}: {sorted(overlap)} declared as both input and output"
            )
        cls.outputs = outputs
        cls.option_specs = {
            f: OptionSpec(
                name=f,
                annotation=info.annotation,
                default=info.get_default(call_default_factory=True)
                if not info.is_required()
                else PydanticUndefined,
                description=info.description or "",
                track=bool(_extra(info).get("track", True)),
                plugin=name,
                per_run=bool(_extra(info).get("per_run", False)),
            )
            for f, info in cls.Options.model_fields.items()
        }
        cls.is_source = not cls.inputs
        if cls.is_source and cls.source is Plugin.source:
            raise PluginDeclarationError(
                f"plugin {name}: a plugin without inputs is a source and must define "
                "source(self, run_id) yielding chunks"
            )
        if not cls.is_source and cls.compute is Plugin.compute:
            raise PluginDeclarationError(f"plugin {name}: define compute(self, ...)")
        params = inspect.signature(cls.compute).parameters
        cls.compute_takes_start_end = "start" in params and "end" in params
        cls.compute_is_generator = inspect.isgeneratorfunction(cls.compute)
        if cls.compute_is_generator and cls.parallel:
            raise PluginDeclarationError(
                f"plugin {name}: compute is a generator (down-chunking), so it cannot be "
                "parallel: its chunks come in order from one call; set parallel = False"
            )
        cls.code_hash = code_hash(cls)
        # "auto" is resolved per class: a subclass that declares no version of its own is auto
        # too (its parent's resolved "auto-..." must not become its version), and its own
        # code hash (over its user bases too) makes its version.
        declared = cls.__dict__.get("version")
        auto = cls.version == "auto" or (declared is None and cls._auto_version)
        cls._auto_version = auto
        if auto:
            cls.version = "auto-" + cls.code_hash[:12]
        cls._check_declaration()

    @classmethod
    def _check_declaration(cls) -> None:
        """Hook for plugin kinds to check their extra declarations."""

    @classmethod
    def output_schemas(
        cls, options: Any, inputs: Mapping[str, type[Schema]]
    ) -> Mapping[str, type[Schema]] | type[Schema]:
        """Define to compute output schemas when the context is built: ``{output: schema}``
        (or one schema for a single output) from this plugin's validated ``options`` and the
        schemas its inputs' providers declare (``inputs``: data type -> schema). It may also be
        written ``output_schemas(cls, options)``. Each returned schema must hold the fields of
        the output's annotated schema (its base; ``sd.Schema`` or an ``abstract`` one for
        none). Consumers are checked against the result and the dtype enters the lineage.
        """
        raise NotImplementedError

    @classmethod
    def has_schema_hook(cls) -> bool:
        """Whether this plugin computes its output schemas (defines ``output_schemas``)."""
        return cls.output_schemas.__func__ is not Plugin.output_schemas.__func__  # type: ignore[attr-defined]

    @classmethod
    def check_input_kinds(cls, input_kinds: Mapping[str, str]) -> None:
        """Hook for plugin kinds: check what depends on the kinds of the inputs.

        Those are known only once the providers are (``input_kinds``: data type -> kind), so
        this cannot run at class definition; plugin kinds call it when they are created.
        Raise PluginDeclarationError naming the plugin.
        """

    # ------------------------------------------------------------------ instances

    def __init__(
        self, options: BaseModel, run_id: str, input_kinds: Mapping[str, str] | None = None
    ) -> None:
        # Typed Any: each plugin's own Options model defines the attributes users read.
        self.options: Any = options
        self.run_id = run_id
        self.input_kinds: dict[str, str] = dict(input_kinds or {})
        self.input_dtypes: dict[str, np.dtype] = {}
        self.setup()

    def setup(self) -> None:
        """Called once per run after options are set; override to prepare lookups."""

    def compute(self, *args: Any, **kwargs: Any) -> Any:
        """Rows of the outputs for one step: an array, or ``{output: array}``."""
        raise NotImplementedError

    def source(self, run_id: str) -> Iterator[Chunk | dict[str, Chunk]]:
        """Source plugins yield chunks (or ``{output: chunk}``) for ``run_id``."""
        raise NotImplementedError

    def run_end(self, run_id: str) -> int | None:
        """Sources may override: the end time (ns) of ``run_id`` if known before reading it.

        Used only for the progress bar's ETA (progress = end of the latest chunk / run end);
        the default, None, means unknown (the bar then shows rates without an ETA).
        """
        return None

    def run_metadata(self, run_id: str) -> Mapping[str, Any] | None:
        """Sources may override: the run document of ``run_id`` (start, end, mode, tags, ...;
        see ``strax_decl.run_meta.RunDoc``), stored with the run when it is first made."""
        return None
