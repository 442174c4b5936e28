"""Which row dtypes the store accepts, how they are split into Zarr arrays, and their JSON form.

A structured dtype is stored as one Zarr array per field (a sub-array field becomes extra
dimensions), because Zarr cannot store a structured dtype with sub-array fields as one array
and per-field arrays compress better. The declared dtype itself (names, titles, offsets, byte
order, itemsize) is kept as JSON in the group attributes so that loading gives back exactly the
dtype that was saved, not an approximation of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from strax_storage.layout import INDEX_GROUP
from strax_storage.names import validate_name

__all__ = [
    "INDEX_GROUP",
    "FieldSpec",
    "check_storable",
    "dtype_from_json",
    "dtype_to_json",
    "field_specs",
    "rows_per_chunk_for",
]

_STORABLE_KINDS = "biufcU"  # U: fixed-length unicode, stored as Zarr's fixed_length_utf32


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of the row dtype as it is stored: one Zarr array."""

    name: str
    declared: np.dtype  # base dtype as declared (any byte order)
    stored: np.dtype  # the same type, little-endian: what the Zarr 'bytes' codec holds
    shape: tuple[int, ...]  # sub-array shape, () for a scalar field
    title: str | None = None  # a strax-style field title: the array's default description

    @property
    def dimension_names(self) -> list[str]:
        """``["row"]``, ``["row", "<field>_sample"]``, or ``["row", "<field>_dim1", ...]``."""
        if not self.shape:
            return ["row"]
        if len(self.shape) == 1:
            return ["row", f"{self.name}_sample"]
        return ["row", *(f"{self.name}_dim{i + 1}" for i in range(len(self.shape)))]

    @property
    def row_nbytes(self) -> int:
        return int(self.stored.itemsize * int(np.prod(self.shape, dtype=np.int64)))


def check_storable(dtype: object, where: str) -> np.dtype:
    """Return ``dtype`` as np.dtype if the store can hold rows of it, else raise TypeError.

    Rules: a structured dtype with time fields (see ``chunk.time_fields_problem``); each field a
    bool/int/uint/float/complex or fixed-length unicode (``<U30``) scalar or fixed-size
    sub-array of one; field names valid path
    components (``names.validate_name('field', ...)``) and not ``_index``; titles are strings.
    """
    try:
        dt = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError as e:
        raise TypeError(f"{where}: {dtype!r} is not a numpy dtype ({e})") from None
    if dt.names is None or dt.fields is None:
        raise TypeError(f"{where}: dtype {dt} is not a structured dtype")
    from strax_storage.chunk import time_fields_problem  # numba: not needed to read a listing

    problem = time_fields_problem(dt)
    if problem is not None:
        raise TypeError(f"{where}: dtype {dt.descr} {problem}")
    for name in dt.names:
        try:
            validate_name("field", name)
        except ValueError as e:
            raise TypeError(f"{where}: field name is not storable: {e}") from None
        if name == INDEX_GROUP:
            raise TypeError(f"{where}: field name {name!r} is reserved for the chunk index")
        field = dt.fields[name]
        sub = field[0]
        if len(field) > 2 and not isinstance(field[2], str):
            raise TypeError(f"{where}: field {name!r} has a non-string title {field[2]!r}")
        base = sub.base
        if base.kind not in _STORABLE_KINDS or base.names is not None or not base.itemsize:
            raise TypeError(
                f"{where}: field {name!r} has dtype {sub}; only bool, integer, float, complex "
                "and fixed-length unicode fields (or fixed-size sub-arrays of them) can be stored"
            )
        if any(n <= 0 for n in sub.shape):
            raise TypeError(f"{where}: field {name!r} has an empty sub-array shape {sub.shape}")
    return dt


def field_specs(dtype: np.dtype) -> list[FieldSpec]:
    """The per-field arrays of a (storable) row dtype, in field order."""
    assert dtype.names is not None and dtype.fields is not None
    specs = []
    for name in dtype.names:
        entry = dtype.fields[name]
        sub = entry[0]
        base = sub.base
        stored = base.newbyteorder("<") if base.byteorder == ">" else base
        title = entry[2] if len(entry) > 2 else None
        specs.append(FieldSpec(name, base, np.dtype(stored), tuple(sub.shape), title))
    return specs


def rows_per_chunk_for(dtype: np.dtype, target_bytes: int) -> int:
    """Rows per Zarr chunk: the largest power of two whose rows take at most ``target_bytes``.

    One row count for all fields keeps row slices aligned across arrays. Clamped to
    [1024, 2**20] so small rows do not make huge chunks and big rows do not make tiny ones.
    """
    n = max(1, target_bytes // max(1, dtype.itemsize))
    power = 1 << (n.bit_length() - 1)
    return int(min(max(power, 1024), 1 << 20))


def dtype_to_json(dtype: np.dtype) -> dict[str, Any]:
    """Everything needed to rebuild ``dtype`` exactly, as plain JSON."""
    assert dtype.names is not None and dtype.fields is not None
    fields = []
    for name in dtype.names:
        entry = dtype.fields[name]
        sub = entry[0]
        fields.append(
            {
                "name": name,
                "dtype": sub.base.str,
                "shape": list(sub.shape),
                "offset": int(entry[1]),
                "title": entry[2] if len(entry) > 2 else None,
            }
        )
    return {"fields": fields, "itemsize": dtype.itemsize, "aligned": bool(dtype.isalignedstruct)}


def dtype_from_json(doc: Any) -> np.dtype:
    """Inverse of ``dtype_to_json``; raises ValueError on anything malformed."""
    try:
        fields = doc["fields"]
        names = [str(f["name"]) for f in fields]
        formats = [
            (np.dtype(f["dtype"]), tuple(int(n) for n in f["shape"]))
            if f["shape"]
            else np.dtype(f["dtype"])
            for f in fields
        ]
        return np.dtype(
            {
                "names": names,
                "formats": formats,
                "offsets": [int(f["offset"]) for f in fields],
                "titles": [f["title"] for f in fields],
                "itemsize": int(doc["itemsize"]),
            },
            align=bool(doc.get("aligned", False)),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"malformed dtype description {doc!r}: {e}") from None
