"""Claims: at most one writer per data set, across threads, processes and hosts.

Before writing a data set, a writer *claims* its key; whoever holds the claim is the only one
who may write it, and everyone else waits for it to complete (``Store.wait_complete``) or
gives up. ::

    claim = store.claim(key)            # None if someone else holds it
    if claim is None:
        info = store.wait_complete(key)   # WriterGone if the holder stops without completing
    else:
        with claim:
            ...write the data set...

Where the claim lives, per kind of store:

- **local path**: a file ``<run_id>/.claim-<data_type>-<lineage_hash>`` next to the data set,
  created atomically with ``os.open(O_CREAT | O_EXCL)``, holding plain JSON (pid, host, process
  start time, a random token, creation time; never a pickle). Its modification time is the
  holder's heartbeat: a daemon thread touches every claim this process holds every
  ``stale_after / 5`` seconds. Works across processes on one host and, as far as the file
  system's ``O_EXCL`` is atomic (local disks, NFSv3+), across hosts.
- **memory://**: an in-process lock table (a memory store lives in one process).
- **fsspec URLs**: the same JSON object, best effort: object stores have no exclusive create,
  so two writers starting within the same instant may both believe they hold the claim (the
  data set then ends up written twice with the same contents; the ``complete`` attribute,
  written last, still decides what readers see). The heartbeat is a field in the JSON.

A claim is *stale*, and is broken by the next claimant, if its holder is a process on this host
that no longer runs (pid gone, a zombie, or the pid now belongs to a process started later), or
if its heartbeat is older than ``stale_after`` seconds (a holder on another host, or a stopped
one). The claim records its holder's ``stale_after`` and that is the limit everyone applies to
it (up to ``MAX_STALE_AFTER``, a day), so stores opened with different limits never break each
other's live claims. A claim file that cannot be read (its creator died between creating and
writing it, or someone edited it) is stale after ``UNREADABLE_GRACE`` seconds. Breaking is
serialised by a second exclusive file (``.claim-...break``) and only removes the exact claim
judged stale.

Clocks: heartbeats are compared with this host's clock; hosts sharing a store need roughly
synchronised clocks (well within ``stale_after``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
import weakref
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final

from zarr.storage import MemoryStore

from strax_storage.backend import Backend
from strax_storage.errors import StorageError
from strax_storage.keys import DataKey

__all__ = [
    "CLAIM_PREFIX",
    "DEFAULT_STALE_AFTER",
    "MAX_STALE_AFTER",
    "Claim",
    "ClaimHeld",
    "ClaimInfo",
    "ClaimTimeout",
    "Claims",
    "WriterGone",
    "identity_alive",
    "process_identity",
]

log = logging.getLogger(__name__)

CLAIM_PREFIX: Final = ".claim-"
"""Prefix of a claim file next to the data set it claims (never parsed as a data set)."""
CLAIM_FORMAT: Final = "strax_decl.claim"
DEFAULT_STALE_AFTER: Final = 600.0
"""Seconds without a heartbeat after which a claim is stale (the heartbeat runs every 1/5)."""
MAX_STALE_AFTER: Final = 86_400.0
"""The longest ``stale_after`` allowed, and believed from a claim record: a corrupt or
hostile claim file cannot keep a dead writer's claim alive for longer than a day."""
UNREADABLE_GRACE: Final = 5.0
"""Seconds after which a claim file holding no readable claim is considered stale."""
BREAK_LOCK_STALE: Final = 10.0
"""Seconds after which a leftover break lock (its breaker died) is removed."""


# --------------------------------------------------------------------------- errors


class ClaimHeld(StorageError):
    """Another writer holds the claim on a data set (raised when the caller will not wait)."""

    def __init__(self, message: str, key: DataKey, holder: ClaimInfo | None) -> None:
        super().__init__(message)
        self.key = key
        self.holder = holder


class WriterGone(StorageError):
    """The data set waited for is not complete and nobody (alive) is writing it any more."""

    def __init__(self, message: str, key: DataKey) -> None:
        super().__init__(message)
        self.key = key


class ClaimTimeout(StorageError, TimeoutError):
    """Waiting for another writer to complete a data set took longer than the timeout."""

    def __init__(self, message: str, key: DataKey, holder: ClaimInfo | None) -> None:
        super().__init__(message)
        self.key = key
        self.holder = holder


# --------------------------------------------------------------------------- processes

_identity_lock = threading.Lock()
_identity: tuple[int, dict[str, Any]] | None = None


def _process_start(pid: int) -> tuple[int, str] | None:
    """(start time in clock ticks since boot, state letter) of ``pid``; None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may contain spaces
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return int(fields[19]), fields[0]  # starttime is field 22, state field 3
    except (IndexError, ValueError):
        return None


def process_identity() -> dict[str, Any]:
    """This process: ``{"pid", "host", "pid_start"}`` (``pid_start`` None without /proc)."""
    global _identity
    pid = os.getpid()
    with _identity_lock:
        if _identity is None or _identity[0] != pid:  # recomputed after a fork
            start = _process_start(pid)
            _identity = (
                pid,
                {"pid": pid, "host": socket.gethostname(), "pid_start": start and start[0]},
            )
        return dict(_identity[1])


def _pid_running(pid: int, pid_start: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except (OverflowError, ValueError, OSError):
        return False
    proc = _process_start(pid)
    if proc is None:
        return True  # no /proc: trust kill(0)
    start, state = proc
    if state in ("Z", "X"):
        return False  # a zombie (killed, not yet reaped) or dead
    return pid_start is None or start == pid_start


def identity_alive(ident: object) -> bool | None:
    """Whether the process described by ``ident`` (as ``process_identity``) still runs.

    None if that cannot be known (another host, or no usable identity).
    """
    if not isinstance(ident, dict):
        return None
    pid, host, start = ident.get("pid"), ident.get("host"), ident.get("pid_start")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not isinstance(host, str):
        return None
    if host != socket.gethostname():
        return None
    return _pid_running(pid, start if isinstance(start, int) else None)


def is_this_process(ident: object) -> bool:
    me = process_identity()
    return (
        isinstance(ident, dict)
        and ident.get("pid") == me["pid"]
        and ident.get("host") == me["host"]
    )


# --------------------------------------------------------------------------- claim records


@dataclass(frozen=True)
class ClaimInfo:
    """Who holds a claim, read from the store. ``stale``: it may be broken (see module doc)."""

    key: DataKey
    location: str
    pid: int | None = None
    host: str | None = None
    pid_start: int | None = None
    token: str | None = None
    created: float | None = None
    heartbeat: float | None = None
    stale: bool = False
    why_stale: str = ""
    raw: bytes = b""

    @property
    def ours(self) -> bool:
        """Held by this process (any thread)."""
        return is_this_process({"pid": self.pid, "host": self.host})

    def describe(self) -> str:
        """``pid 123 on host h since 2024-...`` (and why it is stale, if it is)."""
        who = (
            f"pid {self.pid} on host {self.host}"
            if self.pid is not None
            else "an unknown writer (unreadable claim)"
        )
        if self.created is not None:
            try:
                since = datetime.fromtimestamp(self.created, UTC).isoformat(timespec="seconds")
            except (ValueError, OverflowError, OSError):
                since = repr(self.created)
            who += f" since {since}"
        if self.stale:
            who += f" (stale: {self.why_stale})"
        return who


def _checked_limit(stale_after: object) -> float:
    """``stale_after`` as float seconds, if it is in ``(0, MAX_STALE_AFTER]``."""
    if (
        isinstance(stale_after, bool)
        or not isinstance(stale_after, int | float)
        or not (0 < stale_after <= MAX_STALE_AFTER)
    ):
        raise ValueError(
            "stale_after must be a number of seconds above 0 and at most "
            f"{MAX_STALE_AFTER:g} (a day), not {stale_after!r}"
        )
    return float(stale_after)


def _record(key: DataKey, stale_after: float) -> dict[str, Any]:
    now = time.time()
    return {
        "format": CLAIM_FORMAT,
        "key": str(key),
        **process_identity(),
        "token": uuid.uuid4().hex,
        "created": now,
        "created_utc": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
        "heartbeat": now,
        "stale_after": stale_after,  # the holder's promise: a heartbeat every stale_after / 5
    }


def _encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True).encode()


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: object) -> float | None:
    """A finite number as float, else None (a NaN heartbeat must not look fresh forever)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        out = float(value)
    except OverflowError:
        return None
    return out if math.isfinite(out) else None


def judge(
    key: DataKey,
    raw: bytes,
    mtime: float | None,
    location: str,
    stale_after: float,
    now: float | None = None,
) -> ClaimInfo:
    """Parse a claim's bytes and decide whether it is stale.

    The limit is the holder's own ``stale_after`` when the claim records it (it beats every
    fifth of that, whatever limit the one asking uses), else ``stale_after``.
    """
    now = time.time() if now is None else now
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("format") != CLAIM_FORMAT:
            raise ValueError("not a claim record")
    except (ValueError, UnicodeDecodeError):
        age = now - mtime if mtime is not None else float("inf")
        stale = age > UNREADABLE_GRACE
        return ClaimInfo(
            key,
            location,
            stale=stale,
            raw=raw,
            why_stale=f"unreadable claim, {age:.0f} s old" if stale else "",
        )
    info = ClaimInfo(
        key,
        location,
        pid=_int(doc.get("pid")),
        host=doc.get("host") if isinstance(doc.get("host"), str) else None,
        pid_start=_int(doc.get("pid_start")),
        token=doc.get("token") if isinstance(doc.get("token"), str) else None,
        created=_float(doc.get("created")),
        heartbeat=mtime if mtime is not None else _float(doc.get("heartbeat")),
        raw=raw,
    )
    why = ""
    alive = identity_alive(doc)
    if alive is False:
        why = f"process {info.pid} on host {info.host} is not running"
    else:
        beat = info.heartbeat if info.heartbeat is not None else info.created
        age = now - beat if beat is not None else float("inf")
        promised = _float(doc.get("stale_after"))
        limit = (
            min(promised, MAX_STALE_AFTER) if promised is not None and promised > 0 else stale_after
        )
        if age > limit:
            why = f"no heartbeat for {age:.0f} s (limit {limit:g} s)"
    return replace(info, stale=True, why_stale=why) if why else info


# --------------------------------------------------------------------------- where claims live


class _Table(ABC):
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


class _FileTable(_Table):
    """Claims as small JSON files/objects next to the data sets (local: O_EXCL; fsspec)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.has_mtime = not backend.in_place  # local files: the mtime is the heartbeat

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
        mine = _encode({**process_identity(), "created": time.time()})
        while not self.backend.create_exclusive(lock, mine):
            lock_time = self._lock_time(lock)
            if lock_time is None or time.time() - lock_time > BREAK_LOCK_STALE:
                self.backend.delete(lock)  # its breaker died
            elif not wait or time.monotonic() > deadline:
                return False
            else:
                time.sleep(0.01)
        try:
            if self.backend.read(k) != raw:
                return False
            self.backend.delete(k)
            return True
        finally:
            self.backend.delete(lock)

    def _lock_time(self, lock: str) -> float | None:
        """When the break lock ``lock`` was taken (None: it is gone, or unreadable)."""
        if self.has_mtime:
            return self.backend.mtime(lock)
        raw = self.backend.read(lock)
        try:
            doc = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        return _float(doc.get("created")) if isinstance(doc, dict) else None

    def beat(self, key: DataKey, raw: bytes) -> bytes | None:
        k = self._key(key)
        if self.backend.read(k) != raw:
            return None
        if self.has_mtime:
            self.backend.touch(k)
            return raw
        doc = json.loads(raw)
        doc["heartbeat"] = time.time()
        new = _encode(doc)
        self.backend.write(k, [new])
        return new


_memory_lock = threading.Lock()
_memory_claims: dict[tuple[str, DataKey], tuple[bytes, float]] = {}


class _MemoryTable(_Table):
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


# --------------------------------------------------------------------------- heartbeat


class _Heartbeat:
    """One daemon thread per process refreshing every live claim of this process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.claims: weakref.WeakSet[Claim] = weakref.WeakSet()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.pid = 0

    def add(self, claim: Claim) -> None:
        with self.lock:
            if self.pid != os.getpid():  # forked: the parent's claims are not ours to refresh
                self.claims = weakref.WeakSet()
            self.claims.add(claim)
            if self.thread is None or self.pid != os.getpid() or not self.thread.is_alive():
                self.pid = os.getpid()
                self.wake = threading.Event()
                self.thread = threading.Thread(
                    target=self.run, name="storage-claim-heartbeat", daemon=True
                )
                self.thread.start()
            else:
                self.wake.set()  # a new claim may need a shorter interval

    def discard(self, claim: Claim) -> None:
        with self.lock:
            self.claims.discard(claim)

    def run(self) -> None:
        while True:
            interval, wake = self.beat_all()
            wake.wait(max(0.02, min(interval, 60.0)))
            wake.clear()

    def beat_all(self) -> tuple[float, threading.Event]:
        """Refresh the claims that are due; the interval until the next round. (A function of
        its own, so no strong reference to a claim outlives it: unreleased claims can be
        garbage collected, which releases them.)"""
        with self.lock:
            claims = list(self.claims)
            wake = self.wake
        interval = min((c.stale_after for c in claims), default=5.0) / 5
        for claim in claims:
            if time.time() - claim.last_beat >= interval * 0.9:
                try:
                    claim.refresh()
                except Exception:  # never let the heartbeat thread die
                    log.exception("could not refresh the claim on %s", claim.key)
        return interval, wake


_heartbeat = _Heartbeat()


# --------------------------------------------------------------------------- claims


class Claim:
    """A held claim on one data set. Release it (or use it as a context manager) when done.

    While held, a background thread keeps its heartbeat fresh. A claim left unreleased is
    released when it is garbage collected; one whose process dies is broken by the next
    claimant (see ``strax_storage.claims``).
    """

    def __init__(self, table: _Table, key: DataKey, raw: bytes, stale_after: float) -> None:
        self.key = key
        self.stale_after = stale_after
        self.token: str = json.loads(raw)["token"]
        self.location = table.location(key)
        self.last_beat = time.time()
        self._table = table
        self._raw = raw
        self._lock = threading.Lock()
        self._released = False
        self._lost = False
        self._raw_box = [raw]  # shared with the finalizer, which must not reference self
        self._pid = os.getpid()
        self._finalizer = weakref.finalize(
            self, _release_quietly, table, key, self._raw_box, self._pid
        )
        _heartbeat.add(self)

    @property
    def released(self) -> bool:
        return self._released

    def held(self) -> bool:
        """Whether the store still records this claim as ours (False once broken/released)."""
        if self._released:
            return False
        got = self._table.read(self.key)
        return got is not None and got[0] == self._raw

    def refresh(self) -> None:
        """Record a heartbeat now (done automatically by a background thread)."""
        with self._lock:
            if self._released or self._lost:
                return
            new = self._table.beat(self.key, self._raw)
            self.last_beat = time.time()
            if new is None:
                self._lost = True
                _heartbeat.discard(self)
                log.warning(
                    "the claim on %s (%s) was broken by another writer", self.key, self.location
                )
                return
            self._raw = new
            self._raw_box[0] = new

    def release(self) -> None:
        """Give the claim up (idempotent). Never deletes a claim that is no longer ours."""
        with self._lock:
            if self._released:
                return
            self._released = True
            _heartbeat.discard(self)
            self._finalizer.detach()
            if os.getpid() == self._pid:  # never a parent's claim from a forked child
                self._table.delete_if(self.key, self._raw, wait=True)

    def __enter__(self) -> Claim:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<Claim {self.key} {state} at {self.location}>"


def _release_quietly(table: _Table, key: DataKey, raw_box: list[bytes], pid: int) -> None:
    if os.getpid() != pid:
        return  # a forked child exiting: the claim belongs to its parent
    with contextlib.suppress(Exception):
        table.delete_if(key, raw_box[0], wait=True)


class Claims:
    """The claims of one store (built by ``Store``; use ``Store.claim`` and friends)."""

    def __init__(self, backend: Backend, stale_after: float = DEFAULT_STALE_AFTER) -> None:
        self.stale_after = _checked_limit(stale_after)
        self.backend = backend
        self.table: _Table = (
            _MemoryTable(backend.url)
            if isinstance(backend.zarr_store, MemoryStore)
            else _FileTable(backend)
        )

    def holder(self, key: DataKey, stale_after: float | None = None) -> ClaimInfo | None:
        """The current claim on ``key`` (live or stale), None if there is none."""
        got = self.table.read(key)
        if got is None:
            return None
        raw, mtime = got
        return judge(key, raw, mtime, self.table.location(key), stale_after or self.stale_after)

    def claim(self, key: DataKey, stale_after: float | None = None) -> Claim | None:
        """Take the claim on ``key``; None if someone else (alive) holds it."""
        limit = self.stale_after if stale_after is None else _checked_limit(stale_after)
        for _ in range(5):
            raw = _encode(_record(key, limit))
            if self.table.create(key, raw):
                return Claim(self.table, key, raw, limit)
            info = self.holder(key, limit)
            if info is None:
                continue  # released meanwhile: try again
            if not info.stale:
                return None
            log.info("breaking the stale claim on %s held by %s", key, info.describe())
            self.table.delete_if(key, info.raw)
        return None
