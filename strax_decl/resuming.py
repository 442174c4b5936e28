"""Resuming a data set a killed writer left: when the resolver may say "resume", and from where.

A writer killed while saving leaves its temporary directory with a final prefix (the chunks
up to its watermark, ``strax_storage.final_prefix``). A rerun with the same lineage that
holds the claim continues after it, if the rest computed from the watermark on is exactly
what an uninterrupted run would have made there, chunk boundaries included. That holds,
and the resolver plans a resume, when:

- the plugin has one output, runs with the plain runner (not an overlap window, whose
  output near a boundary depends on input before it) and is not a source, and does not
  declare ``resumable = False`` (state kept across chunks);
- every input is loaded from a complete data set (its chunks are fixed), all inputs have
  the same chunk boundaries (so its steps are the input chunks), and the watermark is one
  of them;
- the output is saved to one writable store, the one holding the dead writer's work.

Then its inputs are read from the watermark on, its output stream is the stored final
prefix followed by what is computed (downstream plugins see every chunk), and the saver
continues the dead writer's directory: the published data set is the one an uninterrupted
run publishes, byte for byte. Otherwise the data set is computed from the start, as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from strax_decl.chunk import Chunk
from strax_storage import DataKey, StorageError, Store
from strax_storage.catalog import RunFolder
from strax_storage.live_saver import ResumeFrom
from strax_storage.loader import DataSetReader

__all__ = ["ResumeFrom", "from_watermark", "resume_of"]


def resume_of(
    plugin: Any,
    steps: Mapping[str, Any],
    stores: list[Store],
    key: DataKey,
    folder: RunFolder | None = None,
) -> tuple[ResumeFrom | None, str]:
    """Where the computation of ``key`` by ``plugin`` may resume (None: it may not), and why.

    ``steps``: the plan's steps so far (the inputs' are there); ``stores``: the writable ones.
    """
    if len(stores) != 1:
        return None, ""
    try:
        point = stores[0].resume_point(key, folder)
    except StorageError:
        return None, ""
    if point is None:
        return None, ""
    why_not = _why_not(plugin, steps, point.watermark)
    if why_not:
        return None, f"a killed writer's final prefix is stored, but {why_not}: recomputed"
    k = point.prefix.n_chunks
    return point, (
        f"resume after chunk {k - 1} (watermark {point.watermark} ns, {point.prefix.n_rows} "
        "rows final) of a killed writer"
    )


def _why_not(plugin: Any, steps: Mapping[str, Any], watermark: int) -> str:
    if plugin.is_source:
        return f"plugin {plugin.name} is a source"
    if len(plugin.outputs) != 1:
        return f"plugin {plugin.name} has several outputs"
    if plugin._runner is not None:
        return f"plugin {plugin.name} is a {plugin._runner.__name__[: -len('Runner')]} plugin"
    if not plugin.resumable:
        return f"plugin {plugin.name} declares resumable = False"
    bounds: np.ndarray | None = None
    for dep in plugin.inputs:
        step = steps.get(dep)
        if step is None or step.action != "load" or step.store is None:
            return f"its input {dep} is not stored complete"
        reader = DataSetReader(step.store.backend, step.key, step.info)
        mine = np.concatenate([reader.starts, reader.ends[-1:]])
        if bounds is not None and not np.array_equal(bounds, mine):
            return "its inputs are chunked differently"
        bounds = mine
    if bounds is None or watermark not in set(bounds.tolist()):
        return "its watermark is not a chunk boundary of its inputs"
    return ""


def from_watermark(chunks: Iterator[Chunk], watermark: int) -> Iterator[Chunk]:
    """The chunks of an input from the watermark on (a chunk boundary of every input)."""
    for chunk in chunks:
        if chunk.start >= watermark:
            yield chunk
