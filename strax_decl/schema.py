"""Row schemas declared with pydantic, turned into numpy structured dtypes.

This module is the one place where a schema becomes a dtype. A schema is a pydantic model
whose fields carry their numpy type in ``Annotated`` metadata::

    class Peak(sd.Schema):
        time: sd.i64 = sd.field("start time", unit="ns")
        endtime: sd.i64
        area: sd.f32 = sd.field("integral", unit="PE")
        data: sd.array(sd.f32, 110)

Pydantic is used for what it is good at (declaration, introspection, documentation); rows
themselves are never validated one by one, they travel as numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, get_args, get_origin

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

from strax_decl.errors import StraxDeclError
from strax_storage.chunk import time_fields_problem

__all__ = [
    "DType",
    "Schema",
    "SchemaError",
    "array",
    "bool_",
    "dtype_of",
    "f32",
    "f64",
    "field",
    "i8",
    "i16",
    "i32",
    "i64",
    "schema_from_dtype",
    "u8",
    "u16",
    "u32",
    "u64",
]


class SchemaError(StraxDeclError, TypeError):
    """A row schema cannot become a valid dtype; the message names the schema and field."""


@dataclass(frozen=True)
class DType:
    """``Annotated`` marker carrying the numpy type (and sub-array shape) of one field."""

    numpy_type: np.dtype
    shape: tuple[int, ...] = ()


i8 = Annotated[int, DType(np.dtype(np.int8))]
i16 = Annotated[int, DType(np.dtype(np.int16))]
i32 = Annotated[int, DType(np.dtype(np.int32))]
i64 = Annotated[int, DType(np.dtype(np.int64))]
u8 = Annotated[int, DType(np.dtype(np.uint8))]
u16 = Annotated[int, DType(np.dtype(np.uint16))]
u32 = Annotated[int, DType(np.dtype(np.uint32))]
u64 = Annotated[int, DType(np.dtype(np.uint64))]
f32 = Annotated[float, DType(np.dtype(np.float32))]
f64 = Annotated[float, DType(np.dtype(np.float64))]
bool_ = Annotated[bool, DType(np.dtype(np.bool_))]


def array(scalar: Any, shape: int | tuple[int, ...]) -> Any:
    """A fixed-size sub-array field, e.g. ``data: sd.array(sd.i16, 110)``."""
    marker = _marker_of(scalar)
    if marker is None or marker.shape:
        raise SchemaError(f"sd.array() needs a scalar field type such as sd.i16, got {scalar!r}")
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    if not dims or any(not isinstance(d, int) or d <= 0 for d in dims):
        raise SchemaError(f"sd.array() needs positive integer dimensions, got {shape!r}")
    return Annotated[np.ndarray, DType(marker.numpy_type, dims)]


def field(description: str = "", *, unit: str | None = None) -> Any:
    """Document a schema field; the description and unit are stored with the data."""
    extra: dict[str, Any] = {"unit": unit} if unit is not None else {}
    return Field(default=None, description=description or None, json_schema_extra=extra)


def _marker_of(annotation: Any) -> DType | None:
    if get_origin(annotation) is Annotated:
        for meta in get_args(annotation)[1:]:
            if isinstance(meta, DType):
                return meta
    return None


def _field_marker(info: FieldInfo) -> DType | None:
    for meta in info.metadata:
        if isinstance(meta, DType):
            return meta
    return _marker_of(info.annotation)


class Schema(BaseModel):
    """Base class of row schemas. ``Schema.dtype`` is the numpy dtype of one row.

    Missing time fields are reported when the class is defined, naming the schema, so a
    mistake surfaces at import rather than deep inside a run.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    dtype: ClassVar[np.dtype]
    abstract: ClassVar[bool] = False

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        descr: list[tuple[str, np.dtype, tuple[int, ...]]] = []
        for name, info in cls.model_fields.items():
            marker = _field_marker(info)
            if marker is None:
                raise SchemaError(
                    f"schema {cls.__name__}: field {name!r} needs a numpy type such as "
                    f"sd.i64, sd.f32 or sd.array(sd.i16, 110), got {info.annotation!r}"
                )
            descr.append((name, marker.numpy_type, marker.shape))
        cls.dtype = np.dtype([(n, t, s) if s else (n, t) for n, t, s in descr])
        abstract = cls.__dict__.get("abstract", False)
        problem = time_fields_problem(cls.dtype)
        if problem is not None and not abstract:
            raise SchemaError(
                f"schema {cls.__name__} {problem}: every row needs 'time' (ns) and either "
                "'endtime' or both 'dt' and 'length' (set abstract = True on a partial base "
                "schema)"
            )

    @classmethod
    def field_docs(cls) -> dict[str, dict[str, Any]]:
        """Per-field description and unit, as stored in the data set's metadata."""
        docs: dict[str, dict[str, Any]] = {}
        for name, info in cls.model_fields.items():
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            docs[name] = {"description": info.description or "", "unit": extra.get("unit")}
        return docs

    @classmethod
    def zeros(cls, n: int) -> np.ndarray:
        """``n`` rows of this schema, all zero."""
        return np.zeros(n, dtype=cls.dtype)


def dtype_of(schema: type[Schema] | np.dtype) -> np.dtype:
    """The numpy dtype of a schema class (or a dtype, passed through)."""
    if isinstance(schema, np.dtype):
        return schema
    if isinstance(schema, type) and issubclass(schema, Schema):
        return schema.dtype
    raise SchemaError(f"expected a sd.Schema subclass or numpy dtype, got {schema!r}")


_SCALARS: dict[np.dtype, Any] = {
    get_args(alias)[1].numpy_type: alias
    for alias in (i8, i16, i32, i64, u8, u16, u32, u64, f32, f64, bool_)
}


def schema_from_dtype(
    name: str, dtype: np.dtype, docs: dict[str, dict[str, Any]] | None = None
) -> type[Schema]:
    """Build a Schema class from a dtype (for merged kinds and stored data sets)."""
    from pydantic import create_model

    docs = docs or {}
    fields: dict[str, Any] = {}
    for fname in dtype.names or ():
        sub = dtype[fname]
        base, shape = (sub.base, sub.shape) if sub.shape else (sub, ())
        scalar = _SCALARS.get(np.dtype(base))
        if scalar is None:
            raise SchemaError(f"field {fname!r} of {name} has unsupported type {sub}")
        annotation = array(scalar, shape) if shape else scalar
        doc = docs.get(fname, {})
        fields[fname] = (annotation, field(doc.get("description", ""), unit=doc.get("unit")))
    model: type[Schema] = create_model(name, __base__=Schema, **fields)
    return model
