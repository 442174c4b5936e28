"""What the fork server of ``run_pool``'s worker processes prepares once, before it forks.

Imported by the fork server (``run_pool.PRELOAD``): the modules every run needs, and the
compiled chunk-law kernels (numba: its first call in a process costs about a second, loading
the compiled code and starting LLVM). A worker forked from the server inherits all of it, so
its first run starts at once instead of paying that second itself. Nothing here starts a
thread: the server must stay single-threaded to fork safely.
"""

from __future__ import annotations

import contextlib

import numpy as np
import zarr  # noqa: F401  # imported by the first store read otherwise
from numcodecs import blosc  # noqa: F401  # imported by the first Blosc chunk otherwise

import strax_decl.context
import strax_decl.spec  # noqa: F401
from strax_storage.chunk import Chunk, check_chunk, safe_split_point

__all__ = ["warm_up"]


def warm_up() -> None:
    """Compile (or load) the kernels the chunk laws use, for the usual field types."""
    for dtype in (
        [("time", np.int64), ("endtime", np.int64)],
        [("time", np.int64), ("length", np.int32), ("dt", np.int16)],
    ):
        rows = np.ones(2, dtype=dtype)
        rows["time"] = [1, 2]
        if "endtime" in (rows.dtype.names or ()):
            rows["endtime"] = [2, 3]
        chunk = Chunk(0, 10, rows)
        check_chunk(chunk, where="warm-up")
        safe_split_point(chunk, 5)


# Only a head start: an exception here would end the fork server (it ignores ImportError only).
with contextlib.suppress(Exception):
    warm_up()
