"""Who this process is, and whether a process that recorded itself still runs.

Writers record ``process_identity()`` in the claims they take and in the data sets they write;
readers ask ``identity_alive`` whether that writer still runs before trusting its data set as
"being written" (a killed writer's leftovers are failed). On this host a pid alone is not
enough: a dead writer's pid may be reused, so the process start time (from ``/proc``) is
recorded and compared too.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

__all__ = ["identity_alive", "is_this_process", "process_identity"]

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
