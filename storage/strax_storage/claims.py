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

What the holder is doing is recorded too (``doing``, e.g. ``"iter_chunks of peaks, run
r1"``, set with ``with claims.doing(...):`` around taking the claim; and its command line),
so whoever waits for it can be told who holds the data set, since when, and why.

A claim lives exactly as long as its holder: the heartbeat refreshes only claims that are
still referenced and not released, in the process that took them (not in a forked child).
A claim left unreleased is released when garbage collected, and at the latest when the
interpreter exits (an ``atexit`` hook that runs before modules are torn down; it also
stops the heartbeat), so a process that ends normally leaves no claim and no break lock.

Clocks: heartbeats are compared with this host's clock; hosts sharing a store need roughly
synchronised clocks (well within ``stale_after``).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final

from strax_storage.backend import Backend
from strax_storage.claim_tables import (
    CLAIM_PREFIX,
    FileTable,
    MemoryTable,
    Table,
    encode_record,
    finite_float,
)
from strax_storage.keys import DataKey
from strax_storage.process import identity_alive, is_this_process, process_identity

__all__ = [
    "CLAIM_PREFIX",
    "DEFAULT_STALE_AFTER",
    "MAX_STALE_AFTER",
    "UNREADABLE_GRACE",
    "Claim",
    "ClaimInfo",
    "Claims",
    "doing",
]

log = logging.getLogger(__name__)

CLAIM_FORMAT: Final = "strax_decl.claim"
DEFAULT_STALE_AFTER: Final = 600.0
"""Seconds without a heartbeat after which a claim is stale (the heartbeat runs every 1/5)."""
MAX_STALE_AFTER: Final = 86_400.0
"""The longest ``stale_after`` allowed, and believed from a claim record: a corrupt or
hostile claim file cannot keep a dead writer's claim alive for longer than a day."""
UNREADABLE_GRACE: Final = 5.0
"""Seconds after which a claim file holding no readable claim is considered stale."""

_doing: ContextVar[str | None] = ContextVar("strax_storage_claim_doing", default=None)


@contextlib.contextmanager
def doing(what: str) -> Iterator[None]:
    """Record ``what`` (e.g. ``"make peaks of run r1"``) in the claims taken meanwhile in
    this thread (or task), for whoever finds them held."""
    token = _doing.set(what)
    try:
        yield
    finally:
        _doing.reset(token)


def _command() -> str | None:
    argv = getattr(sys, "argv", None)
    if not argv:
        return None
    text = " ".join(str(a) for a in argv)
    return text if len(text) <= 200 else text[:197] + "..."


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
    doing: str | None = None
    """What the holder recorded it was doing (e.g. ``iter_chunks of peaks, run r1``)."""
    command: str | None = None
    """The holder's command line (truncated)."""
    stale: bool = False
    why_stale: str = ""
    raw: bytes = b""

    @property
    def ours(self) -> bool:
        """Held by this process (any thread)."""
        return is_this_process({"pid": self.pid, "host": self.host})

    def describe(self) -> str:
        """``pid 123 on host h (make peaks of run r1; command: python3 x.py) since
        2024-...`` (and why it is stale, if it is)."""
        who = (
            f"pid {self.pid} on host {self.host}"
            if self.pid is not None
            else "an unknown writer (unreadable claim)"
        )
        what = [part for part in (self.doing, self.command and f"command: {self.command}") if part]
        if what:
            who += f" ({'; '.join(what)})"
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
        "doing": _doing.get(),
        "command": _command(),
    }


def _text(value: object) -> str | None:
    """A recorded string, made safe to print on one line (a claim file is anyone's)."""
    if not isinstance(value, str) or not value:
        return None
    text = " ".join(value.split())[:200]
    return "".join(c if c.isprintable() else "?" for c in text)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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
        created=finite_float(doc.get("created")),
        heartbeat=mtime if mtime is not None else finite_float(doc.get("heartbeat")),
        doing=_text(doc.get("doing")),
        command=_text(doc.get("command")),
        raw=raw,
    )
    why = ""
    alive = identity_alive(doc)
    if alive is False:
        why = f"process {info.pid} on host {info.host} is not running"
    else:
        beat = info.heartbeat if info.heartbeat is not None else info.created
        age = now - beat if beat is not None else float("inf")
        promised = finite_float(doc.get("stale_after"))
        limit = (
            min(promised, MAX_STALE_AFTER) if promised is not None and promised > 0 else stale_after
        )
        if age > limit:
            why = f"no heartbeat for {age:.0f} s (limit {limit:g} s)"
    return replace(info, stale=True, why_stale=why) if why else info


# --------------------------------------------------------------------------- heartbeat


class _Heartbeat:
    """One daemon thread per process refreshing every live claim of this process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.claims: weakref.WeakSet[Claim] = weakref.WeakSet()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.pid = 0
        self.stopped = False  # at interpreter exit: never touch a claim file again

    def add(self, claim: Claim) -> None:
        with self.lock:
            if self.stopped:
                return
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
        while not self.stopped:
            interval, wake = self.beat_all()
            wake.wait(max(0.02, min(interval, 60.0)))
            wake.clear()

    def stop(self) -> list[Claim]:
        """Stop for good (at exit); the claims it was refreshing."""
        with self.lock:
            self.stopped = True
            claims = list(self.claims) if self.pid == os.getpid() else []
            self.claims = weakref.WeakSet()
            self.wake.set()
            thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)  # it may be touching a claim file right now
        return claims

    def beat_all(self) -> tuple[float, threading.Event]:
        """Refresh the claims that are due; the interval until the next round. (A function of
        its own, so no strong reference to a claim outlives it: unreleased claims can be
        garbage collected, which releases them.)"""
        with self.lock:
            claims = [] if self.stopped else list(self.claims)
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

    def __init__(self, table: Table, key: DataKey, raw: bytes, stale_after: float) -> None:
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
        self._finalizer.atexit = False  # at exit, _release_at_exit releases it in order
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
        """Give the claim up (idempotent). Never deletes a claim that is no longer ours.
        Interrupted (a second Ctrl-C), it can be called again and finishes the job."""
        with self._lock:
            if self._released:
                return
            _heartbeat.discard(self)
            if os.getpid() == self._pid:  # never a parent's claim from a forked child
                self._table.delete_if(self.key, self._raw, wait=True)
            self._released = True
            self._finalizer.detach()

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


def _release_quietly(table: Table, key: DataKey, raw_box: list[bytes], pid: int) -> None:
    if os.getpid() != pid:
        return  # a forked child exiting: the claim belongs to its parent
    with contextlib.suppress(Exception):
        table.delete_if(key, raw_box[0], wait=True)


def _release_at_exit() -> None:
    """At interpreter exit, before modules are torn down: stop the heartbeat and release
    every claim this process still holds (one left unreleased by its user, or held by a
    stream nobody closed; ``strax_decl`` closes its streams first, so they stop writing
    before their claims go)."""
    for claim in _heartbeat.stop():
        with contextlib.suppress(Exception):
            claim.release()


atexit.register(_release_at_exit)


class Claims:
    """The claims of one store (built by ``Store``; use ``Store.claim`` and friends)."""

    def __init__(self, backend: Backend, stale_after: float = DEFAULT_STALE_AFTER) -> None:
        self.stale_after = _checked_limit(stale_after)
        self.backend = backend
        self.table: Table = (
            MemoryTable(backend.url) if backend.claims_kept == "process" else FileTable(backend)
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
            raw = encode_record(_record(key, limit))
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
