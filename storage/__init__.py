"""Chunk store: time-chunked structured arrays in Zarr v3, keyed by (run, data type, lineage hash).

A standalone layer: it imports nothing from ``strax_decl``.
"""

from storage.chunk import Chunk, ChunkLawViolation, check_chunk, endtimes, time_fields_problem

__all__ = ["Chunk", "ChunkLawViolation", "check_chunk", "endtimes", "time_fields_problem"]
