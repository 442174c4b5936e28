"""Waiting for another writer's data set to complete (``Store.wait_complete``)."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from strax_storage.claims import ClaimInfo
from strax_storage.errors import ClaimTimeout, StorageError, WriterGone
from strax_storage.info import DataSetInfo, Status
from strax_storage.keys import DataKey

if TYPE_CHECKING:  # pragma: no cover
    from strax_storage.store import Store

__all__ = ["wait_complete"]


def wait_complete(store: Store, key: DataKey, timeout: float | None, poll: float) -> DataSetInfo:
    """Wait until the data set under ``key`` is complete and return its info.

    Raises WriterGone as soon as it is not complete and nobody is writing it any more (its
    claimant died or failed, or there never was one): the caller may then claim it and
    write it itself. ClaimTimeout (a TimeoutError) after ``timeout`` seconds.
    """
    for name, value in (("timeout", timeout), ("poll", poll)):
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise ValueError(f"{name} must be a non-negative number of seconds, not {value!r}")
    deadline = None if timeout is None else time.monotonic() + timeout
    last: ClaimInfo | None = None
    while True:
        info = store.find(key)
        if info is not None:
            return info
        holder = store.claims.holder(key)
        if holder is not None:
            last = holder
        if holder is None or holder.stale:
            # writers publish before they release: look once more, then conclude
            info = store.find(key)
            if info is not None:
                return info
            status = store.status(key)
            if status != "writing":
                raise WriterGone(_gone_message(store, key, status, last), key)
        if deadline is not None and time.monotonic() >= deadline:
            who = f" by {last.describe()}" if last is not None else ""
            raise ClaimTimeout(
                f"data set {key} in {store.url} is still being written{who} after {timeout:g} s",
                key,
                last,
            )
        pause = poll if deadline is None else min(poll, max(0.0, deadline - time.monotonic()))
        time.sleep(pause)


def _gone_message(store: Store, key: DataKey, status: Status, holder: ClaimInfo | None) -> str:
    detail = ""
    if status == "failed":
        try:
            exc = store.info(key).exception
        except StorageError:
            exc = None
        if exc:
            detail = f": {exc.strip().splitlines()[-1]}"
    who = f"its writer ({holder.describe()})" if holder is not None else "nobody"
    return (
        f"data set {key} in {store.url} is {status}{detail}, and {who} is no longer writing "
        "it; claim it to write it"
    )
