"""What the store reports about one data set, read from its group attributes alone.

Listing and ``status`` must stay cheap and must work on broken data sets too (so users can see
*why* something is not a cache hit), so they read only the group's ``zarr.json``; they never
open arrays. A data set whose metadata cannot be read is reported as ``failed`` with the reason.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from strax_storage.keys import DataKey
from strax_storage.layout import ATTRS_KEY, FORMAT

if TYPE_CHECKING:  # pragma: no cover - numpy is imported when a dtype is first asked for,
    # so listing a store (``strax-decl ls``) imports none
    import numpy as np

__all__ = ["DataSetInfo", "Status", "corrupted_info", "info_from_group_json", "status_of"]

Status = Literal["absent", "writing", "partial", "failed", "complete"]
"""``partial``: a write stopped on purpose (an interrupt, an early stop, a time range covered)
that kept its final prefix for a later writer to resume; never loaded as a whole."""


@dataclass(frozen=True)
class DataSetInfo:
    """One stored data set as recorded in its attributes.

    ``nbytes`` is the uncompressed size of the rows, ``stored_bytes`` the size of the chunk
    files (None if not known yet). ``metadata`` is the caller's dict given to ``Store.saver``;
    ``attrs`` the group's full attribute dict. ``location`` says where it is (for messages).
    """

    key: DataKey
    status: Status
    n_rows: int = 0
    n_chunks: int = 0
    start: int | None = None
    end: int | None = None
    nbytes: int = 0
    stored_bytes: int | None = None
    dtype_json: Any = field(default=None, repr=False)
    """The row dtype as recorded (``dtypes.dtype_to_json``); ``dtype`` is it as numpy's."""
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)
    attrs: dict[str, Any] = field(default_factory=dict, repr=False)
    exception: str | None = field(default=None, repr=False)
    created: str | None = None
    location: str = ""
    corrupted: str | None = field(default=None, repr=False)
    """Why a data set at its final path is damaged (its ``zarr.json`` missing, unreadable,
    oversized or not a file), naming the file; None if it is not known to be. Such a data set
    has status ``failed``, but it is not a failed write: it was published, then damaged."""

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @functools.cached_property
    def dtype(self) -> np.dtype | None:
        """The row dtype (None if none is recorded or it is unreadable), made on first use:
        building it imports numpy, which a listing never needs."""
        if self.dtype_json is None:
            return None
        from strax_storage.dtypes import dtype_from_json

        try:
            return dtype_from_json(self.dtype_json)
        except ValueError:
            return None


def corrupted_info(key: DataKey, location: str, why: str) -> DataSetInfo:
    """The info of a published data set whose group metadata is damaged: ``failed``, with
    ``corrupted`` (and the exception) naming the file."""
    what = f"data set {key} is corrupted: {why} ({location}/zarr.json)"
    return DataSetInfo(
        key, "failed", exception=f"DataCorrupted: {what}", location=location, corrupted=what
    )


def status_of(ours: dict[str, Any]) -> Status:
    """Status recorded in our attribute dict: complete only if both flags say so."""
    if ours.get("complete") is True and ours.get("status") == "complete":
        return "complete"
    if ours.get("complete") is False and ours.get("status") == "writing":
        return "writing"
    if ours.get("complete") is False and ours.get("status") == "partial":
        return "partial"
    return "failed"


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def info_from_group_json(
    key: DataKey, raw: bytes | None, location: str, *, writing: bool = False
) -> DataSetInfo:
    """Build the info of ``key`` from the bytes of its group ``zarr.json`` (None: missing).

    ``writing`` marks a local temporary directory: whatever its attributes say, it is not done.
    At the final path (not ``writing``), missing or unreadable metadata is corruption (see
    ``DataSetInfo.corrupted``): only a finished write is ever published there.
    """
    if raw is None:
        if writing:
            return DataSetInfo(key, "writing", location=location)
        return corrupted_info(key, location, "the group metadata (zarr.json) is missing")
    try:
        doc = json.loads(raw)
        attrs = doc.get("attributes") or {}
        ours = attrs[ATTRS_KEY]
        if not isinstance(ours, dict) or ours.get("format") != FORMAT:
            raise ValueError(f"attribute {ATTRS_KEY!r} is not a {FORMAT} record")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        why = f"unreadable group metadata (zarr.json): {type(e).__name__}: {e}"
        if writing:
            return DataSetInfo(key, "writing", exception=why, location=location)
        return corrupted_info(key, location, why)
    recorded = status_of(ours)
    status: Status = "writing" if writing and recorded not in ("failed", "partial") else recorded
    metadata = ours.get("metadata")
    exception = ours.get("exception")
    created = ours.get("created")
    return DataSetInfo(
        key=key,
        status=status,
        n_rows=_int_or_none(ours.get("n_rows")) or 0,
        n_chunks=_int_or_none(ours.get("n_chunks")) or 0,
        start=_int_or_none(ours.get("start")),
        end=_int_or_none(ours.get("end")),
        nbytes=_int_or_none(ours.get("nbytes")) or 0,
        stored_bytes=_int_or_none(ours.get("stored_bytes")),
        dtype_json=ours.get("dtype"),
        metadata=metadata if isinstance(metadata, dict) else {},
        attrs=attrs,
        exception=exception if isinstance(exception, str) else None,
        created=created if isinstance(created, str) else None,
        location=location,
    )
