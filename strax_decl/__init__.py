"""strax_decl: declarative streaming plugins for chunked, time-ordered data, stored in Zarr."""

from strax_decl.chunk import Chunk, ChunkLawViolation
from strax_decl.config import InvalidOption
from strax_decl.context import Context
from strax_decl.errors import StraxDeclError
from strax_decl.kinds import CutPlugin, LoopPlugin, MergeOnlyPlugin, OverlapWindowPlugin
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
from strax_decl.resolver import Plan, StaleVersionWarning, Step
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
    u8,
    u16,
    u32,
    u64,
)
from strax_decl.version import __version__

__all__ = [
    "Chunk",
    "ChunkLawViolation",
    "Context",
    "CutPlugin",
    "Inputs",
    "InvalidOption",
    "LoopPlugin",
    "MergeOnlyPlugin",
    "MultiRunResult",
    "Options",
    "Outputs",
    "OverlapWindowPlugin",
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
    "f32",
    "f64",
    "field",
    "i8",
    "i16",
    "i32",
    "i64",
    "option",
    "output",
    "u8",
    "u16",
    "u32",
    "u64",
]
