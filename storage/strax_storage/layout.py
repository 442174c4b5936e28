"""The on-disk layout of one data set: Zarr metadata documents, chunk keys and attributes.

``<run_id>/<data_type>-<lineage_hash>/`` is one Zarr v3 group:

- one array per field, shape ``(rows, *sub_shape)``, ``dimension_names`` ``["row", ...]``, a
  regular grid of ``rows_per_chunk`` rows (the same for every field so row slices align),
  codecs ``bytes(little) -> zstd -> crc32c`` (the checksum makes a flipped byte detectable);
  every chunk is written, including all-zero ones (a missing chunk file is always an error);
- a subgroup ``_index`` with 1-D int64 arrays ``start``, ``end``, ``first_row``, ``n_rows``
  (dimension ``chunk``): one entry per strax chunk, mapping chunks and time ranges to rows;
- group attributes, written last, under the single key ``"strax_decl"`` (see ``ATTRS_KEY``):
  format, key, status/complete/exception, dtype, counts, time span, compressor, timestamps,
  and the caller's metadata dict.

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
from typing import Any, Final

import numpy as np
from zarr.codecs import BytesCodec, Crc32cCodec, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.group import GroupMetadata
from zarr.core.metadata import ArrayV3Metadata
from zarr.dtype import parse_data_type

from strax_storage.dtypes import INDEX_GROUP, FieldSpec

__all__ = [
    "ATTRS_KEY",
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_FIELDS",
    "INDEX_GROUP",
    "array_metadata",
    "chunk_key",
    "field_layout",
    "group_metadata",
    "index_layout",
    "index_metadata",
    "metadata_json",
    "metadata_key",
]

ATTRS_KEY: Final = "strax_decl"
"""The one group-attribute key everything of ours lives under (no clash with user attrs)."""
FORMAT: Final = "strax_decl.storage"
FORMAT_VERSION: Final = 1
"""Bumped on any incompatible layout change; readers refuse versions they do not know."""
INDEX_FIELDS: Final = ("start", "end", "first_row", "n_rows")
METADATA_FILE: Final = "zarr.json"


def metadata_key(path: str) -> str:
    """The key of the Zarr metadata document of the group or array at ``path`` ("" = root)."""
    return f"{path}/{METADATA_FILE}" if path else METADATA_FILE


@functools.lru_cache(maxsize=256)
def _zarr_dtype(dtype: np.dtype) -> Any:
    """Zarr's data type object for a numpy dtype (cached: Zarr's registry lookup takes ~1 ms)."""
    return parse_data_type(dtype, zarr_format=3)


def codecs(level: int) -> list[Any]:
    return [BytesCodec(endian="little"), ZstdCodec(level=level, checksum=False), Crc32cCodec()]


def array_metadata(
    spec: FieldSpec,
    n_rows: int,
    rows_per_chunk: int,
    level: int,
    attributes: dict[str, Any] | None = None,
) -> ArrayV3Metadata:
    """Zarr metadata of one field array holding ``n_rows`` rows."""
    return ArrayV3Metadata(
        shape=(n_rows, *spec.shape),
        data_type=_zarr_dtype(spec.stored),
        chunk_grid={
            "name": "regular",
            "configuration": {"chunk_shape": [rows_per_chunk, *spec.shape]},
        },
        chunk_key_encoding={"name": "default", "configuration": {"separator": "/"}},
        fill_value=0,
        codecs=codecs(level),
        attributes=attributes or {},
        dimension_names=spec.dimension_names,
    )


def index_metadata(n_chunks: int, level: int) -> ArrayV3Metadata:
    """Zarr metadata of one chunk-index array: int64, all entries in a single Zarr chunk."""
    return ArrayV3Metadata(
        shape=(n_chunks,),
        data_type=_zarr_dtype(np.dtype("<i8")),
        chunk_grid={"name": "regular", "configuration": {"chunk_shape": [max(n_chunks, 1)]}},
        chunk_key_encoding={"name": "default", "configuration": {"separator": "/"}},
        fill_value=0,
        codecs=codecs(level),
        attributes={},
        dimension_names=["chunk"],
    )


def group_metadata(attributes: dict[str, Any]) -> GroupMetadata:
    return GroupMetadata(attributes=attributes, zarr_format=3)


def metadata_json(meta: ArrayV3Metadata | GroupMetadata) -> bytes:
    """The exact ``zarr.json`` bytes Zarr writes for ``meta``."""
    buffers = meta.to_buffer_dict(default_buffer_prototype())
    return buffers[METADATA_FILE].to_bytes()


def layout_view(meta: ArrayV3Metadata) -> dict[str, Any]:
    """The parts of an array's metadata that decide how its bytes are read (for comparisons)."""
    doc = json.loads(metadata_json(meta))
    return {k: doc.get(k) for k in _LAYOUT_KEYS}


@functools.lru_cache(maxsize=1024)
def field_layout(spec: FieldSpec, n_rows: int, rows_per_chunk: int, level: int) -> dict[str, Any]:
    """``layout_view`` of a field array (cached: loading checks it for every field)."""
    return layout_view(array_metadata(spec, n_rows, rows_per_chunk, level))


@functools.lru_cache(maxsize=1024)
def index_layout(n_chunks: int, level: int) -> dict[str, Any]:
    """``layout_view`` of a chunk-index array (cached)."""
    return layout_view(index_metadata(n_chunks, level))


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
