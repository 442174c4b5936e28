"""Chunk bytes exactly as Zarr's codec pipeline ``bytes -> zstd -> crc32c`` writes them.

The savers and loaders encode and decode Zarr chunks themselves instead of going through
``zarr.Array.__setitem__``/``__getitem__``: Zarr's own array path reaches only ~0.6-0.7x of raw
zstd on this workload (DESIGN.md), mostly per-call overhead. The bytes are identical to what
Zarr produces for the codecs declared in the array metadata (little-endian raw bytes, one zstd
frame with the content size, a 4-byte little-endian CRC32C of the frame), so plain Zarr, xarray
and dask read the arrays unchanged; tests check that.

zstandard and crc32c release the GIL, so a small thread pool (``pool``) gives real parallelism.
Compressor/decompressor contexts are not thread-safe and are kept one per thread.
"""

from __future__ import annotations

import threading
from typing import Final

import crc32c
import numpy as np
import zstandard

from strax_storage.errors import ChecksumMismatch

__all__ = ["DEFAULT_LEVEL", "ChecksumMismatch", "decode", "encode", "scratch"]

DEFAULT_LEVEL: Final = 1
"""zstd level: level 1 writes ~20% faster than 3 for ~5% less compression (bench)."""

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    c = cache.get(level)
    if c is None:
        c = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if d is None:
        d = _local.decompressor = zstandard.ZstdDecompressor()
    return d


def scratch(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A per-thread reusable buffer (contents undefined) to gather one chunk before compressing.

    Reusing it avoids page-faulting a fresh multi-MB allocation for every chunk (~5% of write time).
    """
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf: np.ndarray | None = getattr(_local, "scratch", None)
    if buf is None or buf.nbytes < nbytes:
        buf = _local.scratch = np.empty(max(nbytes, 1), dtype=np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


def encode(data: np.ndarray, level: int) -> tuple[bytes, bytes]:
    """Encode one full chunk (C-contiguous, little-endian): returns (zstd frame, crc32c trailer).

    Returned as two pieces so a file writer can write them without concatenating.
    """
    frame = _compressor(level).compress(data.data)
    return frame, crc32c.crc32c(frame).to_bytes(4, "little")


def decode(blob: bytes | memoryview, nbytes: int) -> bytes:
    """Verify the CRC32C trailer and decompress; the result has exactly ``nbytes`` bytes.

    Raises ChecksumMismatch (a short chunk, a flipped byte, a wrong size) so that the caller can
    name the data set and file in a DataCorrupted.
    """
    view = memoryview(blob)
    if len(view) < 5:
        raise ChecksumMismatch(f"chunk is truncated ({len(view)} bytes)")
    frame = view[:-4]
    stored = int.from_bytes(view[-4:], "little")
    actual = crc32c.crc32c(frame)
    if stored != actual:
        raise ChecksumMismatch(f"CRC32C mismatch (stored {stored:#010x}, computed {actual:#010x})")
    try:
        raw = _decompressor().decompress(frame, max_output_size=nbytes)
    except zstandard.ZstdError as e:
        raise ChecksumMismatch(f"zstd cannot decode the chunk: {e}") from None
    if len(raw) != nbytes:
        raise ChecksumMismatch(f"chunk decodes to {len(raw)} bytes, expected {nbytes}")
    return raw
