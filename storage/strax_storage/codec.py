"""Chunk bytes exactly as Zarr's codec pipelines ``bytes -> zstd -> crc32c`` and
``bytes -> blosc -> crc32c`` write them.

The savers and loaders encode and decode Zarr chunks themselves instead of going through
``zarr.Array.__setitem__``/``__getitem__``: Zarr's own array path reaches only ~0.6-0.7x of raw
zstd on this workload (DESIGN.md), mostly per-call overhead. The bytes are identical to what
Zarr produces for the codecs declared in the array metadata (little-endian raw bytes; one zstd
frame with the content size, or one Blosc buffer made by numcodecs, the library Zarr's
``BloscCodec`` calls, with the same cname, clevel, shuffle, typesize and automatic blocksize;
then a 4-byte little-endian CRC32C of that), so plain Zarr, xarray and dask read the arrays
unchanged; tests check that.

zstandard, numcodecs' Blosc (from a thread other than the main one: its context API) and crc32c
release the GIL, so a small thread pool (``pool``) gives real parallelism. Compressor and
decompressor contexts of zstandard are not thread-safe and are kept one per thread.

Which codec a field gets is decided in ``codec_choice``; this module only runs them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from strax_storage.errors import ChecksumMismatch

if TYPE_CHECKING:  # pragma: no cover - numpy, zstandard and crc32c are imported by the first
    # chunk encoded or decoded: the constants, ``Codec`` and the checks (which ``Store``
    # imports) cost a listing of the store (``strax-decl ls``) none of them
    import numpy as np
    import zstandard

__all__ = [
    "BLOSC_CNAMES",
    "BLOSC_SHUFFLES",
    "DEFAULT_LEVEL",
    "ZSTD",
    "ChecksumMismatch",
    "Codec",
    "check_zstd_level",
    "decode",
    "encode",
    "scratch",
]

DEFAULT_LEVEL: Final = 1
"""zstd level: level 1 writes ~20% faster than 3 for ~5% less compression (bench)."""

ZSTD: Final = "zstd"
BLOSC_CNAMES: Final = ("zstd", "lz4", "lz4hc", "blosclz", "zlib")
BLOSC_SHUFFLES: Final = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
"""Zarr's ``BloscShuffle`` names and the numbers Blosc uses for them."""


@dataclass(frozen=True, slots=True)
class Codec:
    """The compressor of one field array, between Zarr's ``bytes`` and ``crc32c`` codecs.

    ``kind`` ``"zstd"`` (``level`` is the zstd level) or ``"blosc"`` (``level`` is Blosc's
    clevel 0-9, ``cname`` the compressor inside Blosc, ``shuffle`` one of ``BLOSC_SHUFFLES``;
    the typesize is the field's item size).
    """

    kind: str
    level: int
    cname: str = ""
    shuffle: str = ""

    def __post_init__(self) -> None:
        level = self.level
        if isinstance(level, bool) or not isinstance(level, int):
            raise ValueError(f"codec level must be an integer, got {level!r}")
        if self.kind == ZSTD:
            if not -7 <= level <= 22 or self.cname or self.shuffle:
                raise ValueError(f"zstd takes a level in [-7, 22] and nothing else: {self!r}")
        elif self.kind == "blosc":
            if self.cname not in BLOSC_CNAMES:
                raise ValueError(f"blosc cname must be one of {BLOSC_CNAMES}, got {self.cname!r}")
            if self.shuffle not in BLOSC_SHUFFLES:
                raise ValueError(
                    f"blosc shuffle must be one of {sorted(BLOSC_SHUFFLES)}, got {self.shuffle!r}"
                )
            if not 0 <= level <= 9:
                raise ValueError(f"blosc clevel must be in [0, 9], got {level}")
        else:
            raise ValueError(f"unknown codec kind {self.kind!r} (zstd or blosc)")

    @property
    def name(self) -> str:
        """``zstd`` or ``blosc-<cname>-<shuffle>`` (what ``codec_choice.parse`` reads)."""
        return ZSTD if self.kind == ZSTD else f"blosc-{self.cname}-{self.shuffle}"

    def __str__(self) -> str:
        return f"{self.name}:{self.level}"

    def to_json(self) -> dict[str, Any]:
        """As recorded per field in the group attributes."""
        if self.kind == ZSTD:
            return {"codec": ZSTD, "level": self.level}
        return {
            "codec": "blosc",
            "cname": self.cname,
            "clevel": self.level,
            "shuffle": self.shuffle,
        }

    @classmethod
    def from_json(cls, doc: object) -> Codec:
        """Inverse of ``to_json``; ValueError on anything else."""
        if isinstance(doc, dict) and doc.get("codec") == ZSTD and set(doc) == {"codec", "level"}:
            return cls(ZSTD, doc["level"])
        blosc_keys = {"codec", "cname", "clevel", "shuffle"}
        if isinstance(doc, dict) and doc.get("codec") == "blosc" and set(doc) == blosc_keys:
            return cls("blosc", doc["clevel"], str(doc["cname"]), str(doc["shuffle"]))
        raise ValueError(f"not a codec description: {doc!r}")


def check_zstd_level(level: object) -> int:
    """``level`` if it is a zstd level (an integer in [-7, 22]), else ValueError."""
    if isinstance(level, bool) or not isinstance(level, int) or not -7 <= level <= 22:
        raise ValueError(f"zstd_level must be an integer in [-7, 22], got {level!r}")
    return level


_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    c = cache.get(level)
    if c is None:
        import zstandard

        c = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if d is None:
        import zstandard

        d = _local.decompressor = zstandard.ZstdDecompressor()
    return d


def scratch(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A per-thread reusable buffer (contents undefined) to gather one chunk before compressing.

    Reusing it avoids page-faulting a fresh multi-MB allocation for every chunk (~5% of write time).
    """
    import numpy as np

    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf: np.ndarray | None = getattr(_local, "scratch", None)
    if buf is None or buf.nbytes < nbytes:
        buf = _local.scratch = np.empty(max(nbytes, 1), dtype=np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


def encode(data: np.ndarray, codec: Codec | int) -> tuple[bytes, bytes]:
    """Encode one full chunk (C-contiguous, little-endian): returns (frame, crc32c trailer).

    ``codec`` an int: zstd at that level. Blosc's typesize is ``data.dtype.itemsize``, as Zarr
    sets it for the array's data type. Returned as two pieces so a file writer can write them
    without concatenating.
    """
    import crc32c

    if isinstance(codec, int):
        codec = Codec(ZSTD, codec)
    if codec.kind == ZSTD:
        frame = _compressor(codec.level).compress(data.data)
    else:
        from numcodecs import blosc  # imported by the first Blosc chunk, not by listing

        frame = blosc.compress(
            data.reshape(-1),
            codec.cname.encode(),
            codec.level,
            BLOSC_SHUFFLES[codec.shuffle],
            blosc.AUTOBLOCKS,
            data.dtype.itemsize,
        )
    return frame, crc32c.crc32c(frame).to_bytes(4, "little")


def decode(blob: bytes | memoryview, nbytes: int, codec: Codec | None = None) -> bytes:
    """Verify the CRC32C trailer and decompress; the result has exactly ``nbytes`` bytes.

    ``codec`` None: zstd (every codec's level is recorded in its stream). Raises
    ChecksumMismatch (a short chunk, a flipped byte, a wrong size) so that the caller can name
    the data set and file in a DataCorrupted.
    """
    import crc32c
    import zstandard

    view = memoryview(blob)
    if len(view) < 5:
        raise ChecksumMismatch(f"chunk is truncated ({len(view)} bytes)")
    frame = view[:-4]
    stored = int.from_bytes(view[-4:], "little")
    actual = crc32c.crc32c(frame)
    if stored != actual:
        raise ChecksumMismatch(f"CRC32C mismatch (stored {stored:#010x}, computed {actual:#010x})")
    if codec is None or codec.kind == ZSTD:
        try:
            raw = _decompressor().decompress(frame, max_output_size=nbytes)
        except zstandard.ZstdError as e:
            raise ChecksumMismatch(f"zstd cannot decode the chunk: {e}") from None
    else:
        raw = _blosc_decode(frame, nbytes)
    if len(raw) != nbytes:
        raise ChecksumMismatch(f"chunk decodes to {len(raw)} bytes, expected {nbytes}")
    return raw


def _blosc_decode(frame: memoryview, nbytes: int) -> bytes:
    from numcodecs import blosc

    # the header's sizes are checked before anything is allocated or decoded
    if len(frame) < blosc.MAX_OVERHEAD:
        raise ChecksumMismatch(f"blosc chunk is truncated ({len(frame)} bytes)")
    try:
        size, cbytes, _ = blosc._cbuffer_sizes(frame)
    except Exception as e:  # numcodecs raises plain errors on a bad header
        raise ChecksumMismatch(f"blosc cannot read the chunk header: {e}") from None
    if size != nbytes or cbytes != len(frame):
        raise ChecksumMismatch(
            f"blosc chunk header says {size} bytes in {cbytes}, expected {nbytes} in {len(frame)}"
        )
    try:
        return bytes(blosc.decompress(frame))
    except Exception as e:
        raise ChecksumMismatch(f"blosc cannot decode the chunk: {e}") from None
