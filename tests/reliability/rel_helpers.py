"""Helpers of the reliability tests: a forking launcher, tree snapshots, results.

(A module of its own, not ``conftest``: other test directories do ``from conftest import``,
which picks whichever ``conftest`` module was imported last.)"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


class Launcher:
    """Talks to ``rel_launcher.py``: fork a job, kill it, reap it."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "rel_launcher.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.live: set[int] = set()

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the launcher died (exit {self.proc.wait()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def spawn(self, job: dict[str, Any]) -> int:
        pid = int(self._ask({"op": "spawn", "job": job})["pid"])
        self.live.add(pid)
        return pid

    def reap(self, pid: int) -> int:
        status = int(self._ask({"op": "reap", "pid": pid})["status"])
        self.live.discard(pid)
        return status

    def kill(self, pid: int) -> int:
        os.kill(pid, signal.SIGKILL)
        return self.reap(pid)

    def close(self) -> None:
        for pid in list(self.live):  # only children this launcher started
            with contextlib.suppress(ProcessLookupError, RuntimeError):
                self.kill(pid)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def read_result(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def snapshot(top: Path, *skip: Path) -> dict[str, tuple[int, int, float]]:
    """Every entry under ``top`` (without following links, skipping the trees ``skip``):
    mode, size, mtime. Used to show that nothing outside a store root was touched."""
    out: dict[str, tuple[int, int, float]] = {}
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        here = Path(dirpath)
        if any(here == s or s in here.parents for s in skip):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = here / name
            if p in skip:
                continue
            st = p.lstat()
            out[str(p)] = (st.st_mode, st.st_size, st.st_mtime)
    return out


def launched() -> Iterator[Launcher]:
    """Body of the ``launcher`` fixture of the modules that fork runs (this directory has no
    ``conftest.py``: other test directories ``from conftest import`` names and would pick up
    this one)."""
    launcher = Launcher()
    try:
        yield launcher
    finally:
        launcher.close()
