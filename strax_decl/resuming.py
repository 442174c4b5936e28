"""Resuming a data set a killed or stopped writer left: when the resolver may say "resume",
from where, and which stopped writes are worth keeping for it (``keeps_prefix``).

A writer killed while saving leaves its temporary directory with a final prefix (the chunks
up to its watermark, ``strax_storage.final_prefix``); so does a run stopped on purpose, for
the data sets ``keeps_prefix`` accepts (``partial``, ``Saver.suspend``). A ``time_range``
inside such a prefix is read from it (``covering_prefix``), computing nothing. A rerun with
the same lineage that holds the claim continues after it, if the rest computed from the
watermark on is exactly what an uninterrupted run would have made there, chunk boundaries
included. That holds, and the resolver plans a resume, when:

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

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from strax_decl.chunk import Chunk
from strax_storage import DataKey, StorageError, Store
from strax_storage.catalog import RunFolder
from strax_storage.live_saver import ResumeFrom
from strax_storage.loader import DataSetReader
from strax_storage.partial import PrefixReader

__all__ = ["ResumeFrom", "covering_prefix", "from_watermark", "keeps_prefix", "resume_of"]


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
        return None, f"an earlier writer's final prefix is stored, but {why_not}: recomputed"
    k = point.prefix.n_chunks
    return point, (
        f"resume after chunk {k - 1} (watermark {point.watermark} ns, {point.prefix.n_rows} "
        "rows final) of a killed or stopped writer"
    )


def _why_not(plugin: Any, steps: Mapping[str, Any], watermark: int) -> str:
    why, bounds = _inputs_fixed(plugin, steps)
    if why:
        return why
    if bounds is None or watermark not in set(bounds.tolist()):
        return "its watermark is not a chunk boundary of its inputs"
    return ""


def keeps_prefix(plugin: Any, steps: Mapping[str, Any]) -> bool:
    """Whether a stopped write of ``plugin``'s output is worth keeping as a ``partial``
    data set: a rerun with the same plan resumes it (its watermark is the end of an input
    chunk, as every output chunk of the plain runner is). ``steps``: the plan's."""
    return not _inputs_fixed(plugin, steps)[0]


def _inputs_fixed(plugin: Any, steps: Mapping[str, Any]) -> tuple[str, np.ndarray | None]:
    """Why ``plugin`` cannot continue from a chunk boundary of its inputs ("" if it can),
    and those boundaries."""
    if plugin.is_source:
        return f"plugin {plugin.name} is a source", None
    if len(plugin.outputs) != 1:
        return f"plugin {plugin.name} has several outputs", None
    if plugin._runner is not None:
        kind = plugin._runner.__name__[: -len("Runner")]
        return f"plugin {plugin.name} is a {kind} plugin", None
    if not plugin.resumable:
        return f"plugin {plugin.name} declares resumable = False", None
    bounds: np.ndarray | None = None
    for dep in plugin.inputs:
        step = steps.get(dep)
        if step is None or step.action != "load" or step.store is None:
            return f"its input {dep} is not stored complete", None
        reader = DataSetReader(step.store.backend, step.key, step.info)
        mine = np.concatenate([reader.starts, reader.ends[-1:]])
        if bounds is not None and not np.array_equal(bounds, mine):
            return "its inputs are chunked differently", None
        bounds = mine
    return "", bounds


def covering_prefix(
    stores: Sequence[Store], key: DataKey, time_range: tuple[int, int]
) -> PrefixReader | None:
    """A reader of the final prefix of ``key`` (not complete: being written, or left by a
    killed or stopped writer) if its watermark reaches the end of ``time_range``: every row
    inside the range is final there, so a request for the range reads it, computing and
    claiming nothing (None: no such prefix)."""
    for store in stores:
        found = store.progress(key)
        if found is not None and found.watermark is not None and found.watermark >= time_range[1]:
            try:
                return PrefixReader(store.backend, key, found)
            except StorageError:  # unreadable attributes: computed, as without a prefix
                return None
    return None


def from_watermark(chunks: Iterator[Chunk], watermark: int) -> Iterator[Chunk]:
    """The chunks of an input from the watermark on (a chunk boundary of every input)."""
    for chunk in chunks:
        if chunk.start >= watermark:
            yield chunk
