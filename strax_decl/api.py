"""The public API, imported at once: ``strax_decl`` (the package root) loads this module the
first time one of its names is used (``sd.Context``, ``from strax_decl import Plugin``), so
``import strax_decl.cli`` (the command line's start-up) does not import numba, zarr or pydantic.
A public name is added here (an import and an entry of ``__all__``): the root finds it here.
"""

from strax_decl.chunk import Chunk, ChunkLawViolation
from strax_decl.config import InvalidOption, by_run, correction
from strax_decl.context import Context
from strax_decl.corrections import CorrectionConflict, CorrectionNotFound, CorrectionsTable
from strax_decl.errors import LiveTimeout, StraxDeclError
from strax_decl.fuzzy import FuzzyLoadWarning
from strax_decl.kinds import (
    CutPlugin,
    ExhaustPlugin,
    LoopPlugin,
    MergeOnlyPlugin,
    OverlapWindowPlugin,
)
from strax_decl.lineage import PerRunLineage
from strax_decl.plugin import (
    Inputs,
    Options,
    Outputs,
    Plugin,
    PluginDeclarationError,
    PluginGaveWrongOutput,
    PluginRaisedStopIteration,
    SaveWhen,
    option,
    output,
)
from strax_decl.registry import RegistrationError
from strax_decl.request_args import CreationForbidden
from strax_decl.resolver import Plan, StaleVersionWarning, Step
from strax_decl.runner import NOT_YET
from strax_decl.runs import MultiRunResult, RunsFailed
from strax_decl.schema import (
    Schema,
    SchemaError,
    array,
    bool_,
    f32,
    f64,
    field,
    i8,
    i16,
    i32,
    i64,
    str_,
    u8,
    u16,
    u32,
    u64,
)
from strax_decl.version import __version__

__all__ = [
    "NOT_YET",
    "Chunk",
    "ChunkLawViolation",
    "Context",
    "CorrectionConflict",
    "CorrectionNotFound",
    "CorrectionsTable",
    "CreationForbidden",
    "CutPlugin",
    "ExhaustPlugin",
    "FuzzyLoadWarning",
    "Inputs",
    "InvalidOption",
    "LiveTimeout",
    "LoopPlugin",
    "MergeOnlyPlugin",
    "MultiRunResult",
    "Options",
    "Outputs",
    "OverlapWindowPlugin",
    "PerRunLineage",
    "Plan",
    "Plugin",
    "PluginDeclarationError",
    "PluginGaveWrongOutput",
    "PluginRaisedStopIteration",
    "RegistrationError",
    "RunsFailed",
    "SaveWhen",
    "Schema",
    "SchemaError",
    "StaleVersionWarning",
    "Step",
    "StraxDeclError",
    "__version__",
    "array",
    "bool_",
    "by_run",
    "correction",
    "f32",
    "f64",
    "field",
    "i8",
    "i16",
    "i32",
    "i64",
    "option",
    "output",
    "str_",
    "u8",
    "u16",
    "u32",
    "u64",
]
