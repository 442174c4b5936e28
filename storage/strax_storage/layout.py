"""The on-disk layout of one data set: Zarr metadata documents, chunk keys and attributes.

``<run_id>/<data_type>-<lineage_hash>/`` is one Zarr v3 group:

- one array per field, shape ``(rows, *sub_shape)``, ``dimension_names`` ``["row", ...]``, a
  regular grid of ``rows_per_chunk`` rows (the same for every field so row slices align),
  codecs ``bytes(little) -> zstd -> crc32c`` or ``bytes(little) -> blosc -> crc32c`` per field
  (``codec_choice``; the checksum makes a flipped byte detectable);
  every chunk is written, including all-zero ones (a missing chunk file is always an error);
- a subgroup ``_index`` with 1-D int64 arrays ``start``, ``end``, ``first_row``, ``n_rows``
  (dimension ``chunk``): one entry per strax chunk, mapping chunks and time ranges to rows;
- group attributes, written last, under the single key ``"strax_decl"`` (see ``ATTRS_KEY``):
  format, key, status/complete/exception, dtype, counts, time span, compressor (with each
  field's codec, format version 3), timestamps, and the caller's metadata dict.

``xarray.open_zarr(group)`` sees the field arrays as variables on dimension ``row`` and ignores
the ``_index`` subgroup. The root and each run directory are plain Zarr groups too, so the whole
store can be browsed with ``zarr.open_group(root)``.

Every ``zarr.json`` is produced by Zarr's own metadata classes (``ArrayV3Metadata``,
``GroupMetadata``) and written as bytes by the backend, like the chunks. (``zarr.create_hierarchy``
writes the same documents but first probes for existing nodes and hops through Zarr's event
loop per node: ~60 ms per data set, which matters when a pipeline saves many small ones.)
"""

from __future__ import annotations

import functools
import json
import warnings
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # pragma: no cover - Zarr, numpy and the codecs are imported where a
    # document is made, so reading attributes (listing a store) imports none of them
    import numpy as np
    from zarr.core.group import GroupMetadata
    from zarr.core.metadata import ArrayV3Metadata

    from strax_storage.codec import Codec
    from strax_storage.dtypes import FieldSpec

__all__ = [
    "ATTRS_KEY",
    "DIGESTS",
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_FIELDS",
    "INDEX_GROUP",
    "METADATA_LIMIT",
    "array_documents",
    "array_metadata",
    "chunk_key",
    "compressor_attrs",
    "field_layout",
    "fixed_attrs",
    "group_metadata",
    "index_layout",
    "index_metadata",
    "metadata_json",
    "metadata_key",
    "read_field_codecs",
]

ATTRS_KEY: Final = "strax_decl"
"""The one group-attribute key everything of ours lives under (no clash with user attrs)."""
FORMAT: Final = "strax_decl.storage"
FORMAT_VERSION: Final = 3
"""Bumped on any layout change; readers refuse versions they do not know. Version 2 adds
the chunk digests (``DIGESTS``); version 3 a codec per field (``compressor.fields`` in the
attributes: Blosc or zstd), which a version-2 reader would take for damage. Data sets of
versions 1 and 2 (every field zstd) still load."""
INDEX_FIELDS: Final = ("start", "end", "first_row", "n_rows")
DIGESTS: Final = "digests"
"""Index array: the CRC32C of every field's every Zarr chunk file (the 4-byte trailer the file
must end with), Zarr-chunk major, fields in the attributes' order. A chunk file is thereby
bound to its data set, field and position: a file swapped in from elsewhere is detected."""
INDEX_GROUP: Final = "_index"
"""The subgroup of a data set holding its chunk index (no field may have this name)."""
METADATA_FILE: Final = "zarr.json"
METADATA_LIMIT: Final = 16 * 2**20
"""The largest ``zarr.json`` read (bytes): ours are kilobytes; a bigger one is damage."""


def metadata_key(path: str) -> str:
    """The key of the Zarr metadata document of the group or array at ``path`` ("" = root)."""
    return f"{path}/{METADATA_FILE}" if path else METADATA_FILE


@functools.lru_cache(maxsize=256)
def _zarr_dtype(dtype: np.dtype) -> Any:
    """Zarr's data type object for a numpy dtype (cached: Zarr's registry lookup takes ~1 ms)."""
    from zarr.dtype import parse_data_type

    return parse_data_type(dtype, zarr_format=3)


def codecs(codec: Codec | int, typesize: int = 1) -> list[Any]:
    """Zarr's codec list for ``codec`` (an int: zstd at that level) on items of ``typesize``."""
    from zarr.codecs import (
        BloscCname,
        BloscCodec,
        BloscShuffle,
        BytesCodec,
        Crc32cCodec,
        ZstdCodec,
    )

    from strax_storage.codec import ZSTD, Codec

    if isinstance(codec, int):
        codec = Codec(ZSTD, codec)
    if codec.kind == ZSTD:
        middle: Any = ZstdCodec(level=codec.level, checksum=False)
    else:
        middle = BloscCodec(
            typesize=typesize,
            cname=BloscCname(codec.cname),
            clevel=codec.level,
            shuffle=BloscShuffle(codec.shuffle),
            blocksize=0,
        )
    return [BytesCodec(endian="little"), middle, Crc32cCodec()]


def array_metadata(
    spec: FieldSpec,
    n_rows: int,
    rows_per_chunk: int,
    codec: Codec,
    attributes: dict[str, Any] | None = None,
) -> ArrayV3Metadata:
    """Zarr metadata of one field array holding ``n_rows`` rows, compressed with ``codec``."""
    from zarr.core.metadata import ArrayV3Metadata

    return ArrayV3Metadata(
        shape=(n_rows, *spec.shape),
        data_type=_zarr_dtype(spec.stored),
        chunk_grid={
            "name": "regular",
            "configuration": {"chunk_shape": [rows_per_chunk, *spec.shape]},
        },
        chunk_key_encoding={"name": "default", "configuration": {"separator": "/"}},
        fill_value="" if spec.stored.kind == "U" else 0,  # text: Zarr's fixed_length_utf32
        codecs=codecs(codec, spec.stored.itemsize),
        attributes=attributes or {},
        dimension_names=spec.dimension_names,
    )


def index_metadata(n_chunks: int, level: int, dimension: str = "chunk") -> ArrayV3Metadata:
    """Zarr metadata of one chunk-index array: int64, all entries in a single Zarr chunk."""
    import numpy as np
    from zarr.core.metadata import ArrayV3Metadata

    return ArrayV3Metadata(
        shape=(n_chunks,),
        data_type=_zarr_dtype(np.dtype("<i8")),
        chunk_grid={"name": "regular", "configuration": {"chunk_shape": [max(n_chunks, 1)]}},
        chunk_key_encoding={"name": "default", "configuration": {"separator": "/"}},
        fill_value=0,
        codecs=codecs(level),
        attributes={},
        dimension_names=[dimension],
    )


def group_metadata(attributes: dict[str, Any]) -> GroupMetadata:
    from zarr.core.group import GroupMetadata

    return GroupMetadata(attributes=attributes, zarr_format=3)


def metadata_json(meta: ArrayV3Metadata | GroupMetadata) -> bytes:
    """The exact ``zarr.json`` bytes Zarr writes for ``meta``."""
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.dtype.common import UnstableSpecificationWarning

    with warnings.catch_warnings():
        # Zarr warns that its fixed_length_utf32 (text fields) has no final v3 spec yet; we
        # know, and docs/storage.md says so once instead of every data set warning.
        warnings.simplefilter("ignore", UnstableSpecificationWarning)
        buffers = meta.to_buffer_dict(default_buffer_prototype())
    return buffers[METADATA_FILE].to_bytes()


def layout_view(meta: ArrayV3Metadata) -> dict[str, Any]:
    """The parts of an array's metadata that decide how its bytes are read (for comparisons)."""
    doc = json.loads(metadata_json(meta))
    return {k: doc.get(k) for k in _LAYOUT_KEYS}


@functools.lru_cache(maxsize=1024)
def field_layout(spec: FieldSpec, n_rows: int, rows_per_chunk: int, codec: Codec) -> dict[str, Any]:
    """``layout_view`` of a field array (cached: loading checks it for every field)."""
    return layout_view(array_metadata(spec, n_rows, rows_per_chunk, codec))


@functools.lru_cache(maxsize=1024)
def index_layout(n_chunks: int, level: int, dimension: str = "chunk") -> dict[str, Any]:
    """``layout_view`` of a chunk-index array (cached)."""
    return layout_view(index_metadata(n_chunks, level, dimension))


_LAYOUT_KEYS = (
    "shape",
    "data_type",
    "chunk_grid",
    "chunk_key_encoding",
    "codecs",
    "fill_value",
    "node_type",
    "zarr_format",
)


def chunk_key(array_path: str, ndim: int, z: int) -> str:
    """Key of row-chunk ``z`` of an array with ``ndim`` dimensions (default v3 encoding)."""
    return f"{array_path}/c/{z}" + "/0" * (ndim - 1)


def index_path(group_path: str, name: str) -> str:
    return f"{group_path}/{INDEX_GROUP}/{name}"


def array_documents(
    path: str,
    specs: list[FieldSpec],
    n_rows: int,
    rows_per_chunk: int,
    level: int,
    n_chunks: int,
    field_docs: object,
    field_codecs: list[Codec],
) -> list[tuple[str, bytes]]:
    """``(key, zarr.json bytes)`` of every field array, the index group and its arrays, of a
    data set at ``path`` holding ``n_rows`` rows in ``n_chunks`` strax chunks. Field ``i`` is
    compressed with ``field_codecs[i]``, the index arrays with zstd at ``level``.
    ``field_docs``: ``{field: {"description": ..., "unit": ...}}`` (array attributes)."""
    out = []
    for spec, codec in zip(specs, field_codecs, strict=True):
        doc = field_docs.get(spec.name) if isinstance(field_docs, dict) else None
        attributes = dict(doc) if isinstance(doc, dict) else None
        if spec.title and not (attributes or {}).get("description"):
            attributes = {**(attributes or {}), "description": spec.title}  # strax's titles
        meta = array_metadata(spec, n_rows, rows_per_chunk, codec, attributes=attributes)
        out.append((metadata_key(f"{path}/{spec.name}"), metadata_json(meta)))
    out.append((metadata_key(f"{path}/{INDEX_GROUP}"), metadata_json(group_metadata({}))))
    index_doc = metadata_json(index_metadata(n_chunks, level))
    out += [(metadata_key(index_path(path, name)), index_doc) for name in INDEX_FIELDS]
    n_digests = -(-n_rows // rows_per_chunk) * len(specs)
    digest_doc = metadata_json(index_metadata(n_digests, level, "field_chunk"))
    out.append((metadata_key(index_path(path, DIGESTS)), digest_doc))
    return out


def compressor_attrs(level: int, fields: dict[str, Codec]) -> dict[str, Any]:
    """The ``compressor`` attribute: the index arrays' zstd level and each field's codec."""
    from strax_storage.codec import ZSTD

    names = sorted({str(c) for c in fields.values()})
    return {
        "codecs": ["bytes", " | ".join(names) or ZSTD, "crc32c"],
        "zstd_level": level,
        "checksum": "crc32c",
        "fields": {name: codec.to_json() for name, codec in fields.items()},
    }


def read_field_codecs(compressor: object, version: int, names: list[str]) -> list[Codec]:
    """The codec of each field in ``names`` from a ``compressor`` attribute written by format
    ``version`` (before 3: zstd at its ``zstd_level``). ValueError if it is unreadable."""
    from strax_storage.codec import ZSTD, Codec

    level = compressor.get("zstd_level") if isinstance(compressor, dict) else None
    if isinstance(level, bool) or not isinstance(level, int):
        raise ValueError(f"its compressor attribute is unreadable: {compressor!r}")
    assert isinstance(compressor, dict)
    if version < 3:
        return [Codec(ZSTD, level)] * len(names)
    fields = compressor.get("fields")
    if not isinstance(fields, dict) or set(fields) != set(names):
        raise ValueError(f"its compressor attribute does not name each field's codec: {fields!r}")
    return [Codec.from_json(fields[name]) for name in names]


def fixed_attrs(level: int, fields: dict[str, Codec]) -> dict[str, Any]:
    """The group attributes every data set written now has, whatever its rows: ``level`` is
    the zstd level of the index arrays, ``fields`` each field's codec."""
    import zarr

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package": "strax_storage",
        "zarr_version": zarr.__version__,
        "compressor": compressor_attrs(level, fields),
        "index": {"group": INDEX_GROUP, "arrays": list(INDEX_FIELDS)},
        "digests": {
            "array": f"{INDEX_GROUP}/{DIGESTS}",
            "of": "the crc32c trailer of each field's Zarr chunk, chunk-major, fields in order",
        },
    }
