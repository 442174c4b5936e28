"""Where the claims of one store are kept: files (or objects) next to the data sets, or an
in-process table. ``strax_storage.claims`` decides what a claim means (who, stale or not);
a table only stores claim records atomically where it can. The backend declares which table
fits it (``Backend.claims_kept``).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from abc import ABC, abstractmethod
from typing import Any, Final

from strax_storage.backend import Backend
from strax_storage.keys import DataKey
from strax_storage.process import identity_alive, is_this_process, process_identity

__all__ = [
    "BREAK_LOCK_STALE",
    "CLAIM_PREFIX",
    "FileTable",
    "MemoryTable",
    "Table",
    "encode_record",
    "finite_float",
]

CLAIM_PREFIX: Final = ".claim-"
"""Prefix of a claim file next to the data set it claims (never parsed as a data set)."""
BREAK_LOCK_STALE: Final = 10.0
"""Seconds after which a leftover break lock is removed when its breaker cannot be checked
(another host, an unreadable lock); one whose breaker on this host died is removed at once."""
BREAK_LOCK_BACKOFF_MAX: Final = 0.2
"""The longest pause between two attempts to take a busy break lock (doubling from 1 ms)."""


def encode_record(record: dict[str, Any]) -> bytes:
    """A claim record's bytes; keys sorted, since claims are compared byte for byte."""
    return json.dumps(record, sort_keys=True).encode()


def finite_float(value: object) -> float | None:
    """A finite number as float, else None (a NaN heartbeat must not look fresh forever)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        out = float(value)
    except OverflowError:
        return None
    return out if math.isfinite(out) else None


class Table(ABC):
    """Where the claims of one store are kept."""

    @abstractmethod
    def location(self, key: DataKey) -> str: ...

    @abstractmethod
    def create(self, key: DataKey, raw: bytes) -> bool: ...

    @abstractmethod
    def read(self, key: DataKey) -> tuple[bytes, float | None] | None: ...

    @abstractmethod
    def delete_if(self, key: DataKey, raw: bytes, *, wait: bool = False) -> bool:
        """Delete the claim if its bytes are still ``raw``; True if deleted.

        ``wait``: if a breaker is busy with this claim, wait for it (used by ``release``).
        """

    @abstractmethod
    def beat(self, key: DataKey, raw: bytes) -> bytes | None:
        """Record a heartbeat if the claim is still ``raw``; its (new) bytes, None if lost."""


class FileTable(Table):
    """Claims as small JSON files/objects next to the data sets (local: O_EXCL; fsspec)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.has_mtime = backend.has_mtime  # then the mtime is the heartbeat

    def _key(self, key: DataKey) -> str:
        return f"{key.run_id}/{CLAIM_PREFIX}{key.dirname}"

    def location(self, key: DataKey) -> str:
        return self.backend.where(self._key(key))

    def create(self, key: DataKey, raw: bytes) -> bool:
        return self.backend.create_exclusive(self._key(key), raw)

    def read(self, key: DataKey) -> tuple[bytes, float | None] | None:
        k = self._key(key)
        raw = self.backend.read(k)
        if raw is None:
            return None
        return raw, self.backend.mtime(k) if self.has_mtime else None

    def delete_if(self, key: DataKey, raw: bytes, *, wait: bool = False) -> bool:
        k = self._key(key)
        lock = f"{k}.break"
        deadline = time.monotonic() + BREAK_LOCK_STALE + 1.0
        claim_id = hashlib.sha256(raw).hexdigest()[:16]
        mine = encode_record({**process_identity(), "created": time.time(), "for": claim_id})
        pause = 0.0
        created = False
        try:
            while not (created := self.backend.create_exclusive(lock, mine)):
                if self._lock_abandoned(lock, claim_id):
                    self.backend.delete(lock)  # its breaker died (or was us, interrupted)
                elif not wait or time.monotonic() > deadline:
                    return False
                else:  # a live breaker holds it for a moment: back off, do not spin
                    pause = min(BREAK_LOCK_BACKOFF_MAX, max(0.001, 2 * pause))
                    time.sleep(pause)
            if self.backend.read(k) != raw:
                return False
            self.backend.delete(k)
            return True
        finally:
            if created:
                self.backend.delete(lock)

    def _lock_abandoned(self, lock: str, claim_id: str) -> bool:
        """Is the break lock ``lock`` gone, unreadable, older than BREAK_LOCK_STALE, held by
        a process on this host that no longer runs, or left by this process's own attempt
        on the same claim (``claim_id``) that an interrupt cut short?"""
        lock_time = self._lock_time(lock)
        if lock_time is None or time.time() - lock_time > BREAK_LOCK_STALE:
            return True
        raw = self.backend.read(lock)
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            return False  # being written right now (or damaged: stale after the limit)
        if isinstance(doc, dict) and doc.get("for") == claim_id and is_this_process(doc):
            return True  # a release of this very claim is retried only after it stopped
        return identity_alive(doc) is False

    def _lock_time(self, lock: str) -> float | None:
        """When the break lock ``lock`` was taken (None: it is gone, or unreadable)."""
        if self.has_mtime:
            return self.backend.mtime(lock)
        raw = self.backend.read(lock)
        try:
            doc = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        return finite_float(doc.get("created")) if isinstance(doc, dict) else None

    def beat(self, key: DataKey, raw: bytes) -> bytes | None:
        k = self._key(key)
        if self.backend.read(k) != raw:
            return None
        if self.has_mtime:
            self.backend.touch(k)
            return raw
        doc = json.loads(raw)
        doc["heartbeat"] = time.time()
        new = encode_record(doc)
        self.backend.write(k, [new])
        return new


_memory_lock = threading.Lock()
_memory_claims: dict[tuple[str, DataKey], tuple[bytes, float]] = {}


class MemoryTable(Table):
    """In-process lock table for ``memory://`` stores (keyed by the store's URL)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def location(self, key: DataKey) -> str:
        return f"{self.url}/{key.run_id}/{CLAIM_PREFIX}{key.dirname} (in-process)"

    def create(self, key: DataKey, raw: bytes) -> bool:
        with _memory_lock:
            if (self.url, key) in _memory_claims:
                return False
            _memory_claims[(self.url, key)] = (raw, time.time())
            return True

    def read(self, key: DataKey) -> tuple[bytes, float | None] | None:
        with _memory_lock:
            entry = _memory_claims.get((self.url, key))
        return None if entry is None else (entry[0], entry[1])

    def delete_if(self, key: DataKey, raw: bytes, *, wait: bool = False) -> bool:
        with _memory_lock:
            entry = _memory_claims.get((self.url, key))
            if entry is None or entry[0] != raw:
                return False
            del _memory_claims[(self.url, key)]
            return True

    def beat(self, key: DataKey, raw: bytes) -> bytes | None:
        with _memory_lock:
            entry = _memory_claims.get((self.url, key))
            if entry is None or entry[0] != raw:
                return None
            _memory_claims[(self.url, key)] = (raw, time.time())
            return raw
