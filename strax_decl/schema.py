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

from collections.abc import Iterator, Mapping, Sequence
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
    "dtype_difference",
    "dtype_of",
    "f32",
    "f64",
    "field",
    "i8",
    "i16",
    "i32",
    "i64",
    "same_layout",
    "schema_from_dtype",
    "str_",
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


def str_(length: int) -> Any:
    """A fixed-length unicode field of at most ``length`` characters, e.g. ``sd.str_(30)``.

    Its numpy type is ``<U{length}`` (UTF-32, as numpy holds text); the store keeps it as
    Zarr's ``fixed_length_utf32`` data type, which zarr and xarray read back as ``<U{length}``.
    Longer values are cut to ``length`` characters when assigned, as numpy does.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
        raise SchemaError(f"sd.str_() needs a positive integer length, got {length!r}")
    return Annotated[str, DType(np.dtype(f"<U{length}"))]


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

    @classmethod
    def from_dtype(
        cls, dtype: Any, name: str = "Row", docs: dict[str, dict[str, Any]] | None = None
    ) -> type[Schema]:
        """A Schema class for a numpy dtype, e.g. a strax dtype with titles.

        A strax-style titled field ``(("comment", "name"), type)`` becomes field ``name`` with
        the description ``comment`` (``docs`` ``{field: {"description", "unit"}}`` wins over a
        title). The schema's own dtype has no titles (descriptions are kept as field docs, and
        stored with the data); ``titled_dtype()`` gives the strax form back.
        """
        return schema_from_dtype(name, np.dtype(dtype), docs)

    @classmethod
    def titled_dtype(cls) -> np.dtype:
        """This schema's dtype in strax's form: each field's description as its title."""
        docs = cls.field_docs()
        descr: list[Any] = []
        for name in cls.dtype.names or ():
            sub = cls.dtype[name]
            title = docs.get(name, {}).get("description") or None
            label: Any = (title, name) if title and title != name else name
            descr.append((label, sub.base, sub.shape) if sub.shape else (label, sub))
        return np.dtype(descr)

    @classmethod
    def derive(
        cls,
        name: str | None = None,
        *,
        fields: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        add: type[Schema] | Mapping[str, Any] | Sequence[type[Schema]] | None = None,
    ) -> type[Schema]:
        """A new schema from this one: its fields (all, the subset ``fields``, or all but
        ``exclude``), in this schema's order, then the fields of ``add``.

        ``add``: a schema (often an ``abstract`` one holding only new fields), several, or a
        mapping ``{field: annotation}`` / ``{field: (annotation, sd.field(...))}``. An added
        field that this schema has already replaces it in place (``{"data": sd.array(sd.i16,
        n)}`` changes a waveform's length); from a schema it must have the same type (time
        fields shared by every schema are kept once). Descriptions and units go along.
        """
        own = cls.dtype.names or ()
        unknown = [f for f in (*(fields or ()), *exclude) if f not in own]
        if unknown:
            raise SchemaError(
                f"schema {cls.__name__} has no field(s) {', '.join(map(repr, unknown))} "
                f"(fields: {', '.join(own)})"
            )
        keep = [f for f in own if (fields is None or f in fields) and f not in exclude]
        entries: dict[str, Any] = {f: cls.dtype[f] for f in keep}
        docs = {f: d for f, d in cls.field_docs().items() if f in entries}
        for extra_name, sub, doc, replaces in _added_fields(cls.__name__, add):
            if extra_name in entries and not replaces and entries[extra_name] != sub:
                raise SchemaError(
                    f"schema {cls.__name__}: field {extra_name!r} is {entries[extra_name]} "
                    f"here but {sub} in the added schema; name it in a mapping to replace it"
                )
            entries[extra_name] = sub
            if doc.get("description") or doc.get("unit") or extra_name not in docs:
                docs[extra_name] = doc
        descr = [(f, t.base, t.shape) if t.shape else (f, t) for f, t in entries.items()]
        return schema_from_dtype(name or f"Derived{cls.__name__}", np.dtype(descr), docs)


def _added_fields(schema: str, add: Any) -> Iterator[tuple[str, np.dtype, dict[str, Any], bool]]:
    """``(field, dtype, docs, replaces)`` of what ``Schema.derive(add=...)`` adds."""
    if add is None:
        return
    if isinstance(add, type) and issubclass(add, Schema):
        add_docs = add.field_docs()
        for f in add.dtype.names or ():
            yield f, add.dtype[f], add_docs.get(f, {}), False
        return
    if isinstance(add, Mapping):
        for f, spec in add.items():
            annotation, info = spec if isinstance(spec, tuple) else (spec, None)
            marker = _marker_of(annotation)
            if marker is None:
                raise SchemaError(
                    f"schema {schema}: added field {f!r} needs a numpy type such as sd.f32 or "
                    f"sd.array(sd.i16, 110), got {annotation!r}"
                )
            sub = np.dtype((marker.numpy_type, marker.shape)) if marker.shape else marker.numpy_type
            doc: dict[str, Any] = {"description": "", "unit": None}
            if isinstance(info, FieldInfo):
                extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
                doc = {"description": info.description or "", "unit": extra.get("unit")}
            yield f, np.dtype(sub), doc, True
        return
    if isinstance(add, Sequence) and not isinstance(add, str):
        for one in add:
            yield from _added_fields(schema, one)
        return
    raise SchemaError(
        f"schema {schema}: add= takes a sd.Schema, several, or a mapping {{field: type}}, "
        f"got {add!r}"
    )


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


def _scalar_annotation(base: np.dtype) -> Any:
    if base.kind == "U" and base.byteorder in "<=|" and base.itemsize:
        return str_(base.itemsize // 4)
    return _SCALARS.get(np.dtype(base))


def schema_from_dtype(
    name: str, dtype: np.dtype, docs: dict[str, dict[str, Any]] | None = None
) -> type[Schema]:
    """Build a Schema class from a dtype (for merged kinds, stored data sets, strax dtypes).

    Field titles (strax's ``(("comment", "name"), type)``) become descriptions unless
    ``docs`` gives one.
    """
    from pydantic import create_model

    docs = docs or {}
    fields: dict[str, Any] = {}
    for fname in dtype.names or ():
        entry = dtype.fields[fname] if dtype.fields else (dtype[fname], 0)
        sub = entry[0]
        title = entry[2] if len(entry) > 2 and isinstance(entry[2], str) else ""
        base, shape = (sub.base, sub.shape) if sub.shape else (sub, ())
        scalar = _scalar_annotation(base)
        if scalar is None:
            raise SchemaError(
                f"field {fname!r} of {name} has unsupported type {sub} (supported: bool, "
                "integers, floats, fixed-length unicode, and fixed-size sub-arrays of them, in "
                "native byte order)"
            )
        annotation = array(scalar, shape) if shape else scalar
        doc = docs.get(fname, {})
        description = doc.get("description") or title
        fields[fname] = (annotation, field(description, unit=doc.get("unit")))
    model: type[Schema] = create_model(name, __base__=Schema, **fields)
    return model


def same_layout(got: np.dtype, expected: np.dtype) -> bool:
    """Whether rows of ``got`` are rows of ``expected`` byte for byte: same field names in the
    same order, types, shapes, offsets and item size; titles may differ (strax's titles)."""
    if got == expected:
        return True
    if got.names != expected.names or got.itemsize != expected.itemsize:
        return False
    assert got.fields is not None and expected.fields is not None
    return all(got.fields[n][:2] == expected.fields[n][:2] for n in got.names or ())


def dtype_difference(got: np.dtype, expected: np.dtype) -> str:
    """The field-by-field difference between two row dtypes, for error messages."""
    g_names, e_names = list(got.names or ()), list(expected.names or ())
    lines: list[str] = []
    missing = [n for n in e_names if n not in g_names]
    extra = [n for n in g_names if n not in e_names]
    if missing:
        lines.append(f"missing field(s) {', '.join(map(repr, missing))}")
    if extra:
        lines.append(f"undeclared field(s) {', '.join(map(repr, extra))}")
    for n in e_names:
        if n in g_names and got[n] != expected[n]:
            lines.append(f"field {n!r} is {got[n]}, expected {expected[n]}")
    if not lines:
        shared = [n for n in g_names if n in e_names]
        if shared != [n for n in e_names if n in g_names]:
            lines.append(f"fields in another order: {', '.join(g_names)}")
        elif got.itemsize != expected.itemsize or any(
            got.fields[n][1] != expected.fields[n][1]  # type: ignore[index]
            for n in shared
        ):
            sizes = f"itemsize {got.itemsize} vs {expected.itemsize}"
            lines.append(f"other offsets or padding ({sizes})")
    return "; ".join(lines) or "titles only"
