"""Corrections: calibration values that change from run to run, versioned.

A *correction* (``electron_lifetime``, ``pmt_gains``) has *versions*; a version holds values
valid for named runs or for time intervals (the run's start time decides). A *global version*
pins one version of every correction at once (XENON's "global versions"), so a context says
``global_version="v3"`` and every per-run option taken from a correction follows it.

Versions are append-only: a value, once written for a run or an interval of a version, is never
changed or overlapped within that version (an update is a new version). So a lineage that
names a correction and its version names one value per run for ever, and a data set stored
under it never silently goes stale.

The embedded backend is one SQLite file (``CorrectionsTable``): no server, safe for several
processes (SQLite's own locking), readable with any SQLite tool. Other backends implement
``CorrectionsSource``. Values are JSON (numbers, strings, lists such as per-channel gains);
the option that takes them validates them with its pydantic type.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from strax_decl.errors import StraxDeclError

__all__ = [
    "CorrectionConflict",
    "CorrectionNotFound",
    "CorrectionsSource",
    "CorrectionsTable",
    "Entry",
    "open_corrections",
]


class CorrectionNotFound(StraxDeclError, LookupError):
    """No value of a correction for a run (or no such correction, version or global version)."""


class CorrectionConflict(StraxDeclError, ValueError):
    """A value that would change or overlap what a version (or global version) already holds."""


@dataclass(frozen=True)
class Entry:
    """One stored value: for ``run_id``, or for runs starting in ``[start, end)`` (ns)."""

    name: str
    version: str
    value: Any
    run_id: str | None = None
    start: int | None = None
    end: int | None = None

    def describe(self) -> str:
        where = f"run {self.run_id}" if self.run_id is not None else f"[{self.start}, {self.end})"
        return f"{self.name} {self.version} {where}: {self.value!r}"


@runtime_checkable
class CorrectionsSource(Protocol):
    """What per-run options need from a corrections backend."""

    location: str

    def version_for(self, name: str, global_version: str) -> str:
        """The version of correction ``name`` that ``global_version`` pins."""
        ...

    def value(self, name: str, version: str, run_id: str, run_start: int | None) -> Any:
        """The value of ``name`` ``version`` for the run: by run id first, else by start time."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS corrections (
    name TEXT NOT NULL, version TEXT NOT NULL, run_id TEXT, t_start INTEGER, t_end INTEGER,
    value TEXT NOT NULL, created TEXT NOT NULL DEFAULT (datetime('now')),
    CHECK ((run_id IS NULL) = (t_start IS NOT NULL AND t_end IS NOT NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS corrections_by_run ON corrections (name, version, run_id)
    WHERE run_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS corrections_by_time ON corrections (name, version, t_start);
CREATE TABLE IF NOT EXISTS global_versions (
    tag TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL, PRIMARY KEY (tag, name)
);
"""


def _check_text(what: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 200 or not value.isprintable():
        raise ValueError(f"{what} must be a non-empty printable string, got {value!r}")
    return value


def _to_json(name: str, value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"correction {name}: value {value!r:.100} is not plain JSON ({e})") from e


class CorrectionsTable:
    """Corrections in one SQLite file (created on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as e:
            raise StraxDeclError(f"cannot open the corrections table {self.path}: {e}") from e
        try:
            yield db
        finally:
            db.close()

    # ------------------------------------------------------------------ writing
    def add(
        self,
        name: str,
        version: str,
        value: Any,
        *,
        runs: Sequence[str] = (),
        start: int | None = None,
        end: int | None = None,
    ) -> None:
        """Store ``value`` of ``name`` ``version`` for ``runs``, or for runs starting in
        ``[start, end)`` (ns; ``end=None``: for ever). Refuses to change or overlap a value
        this version already holds (make a new version instead), and run values once the
        version holds intervals (a run's own value wins, so it could change a run's value)."""
        _check_text("correction name", name)
        _check_text("correction version", version)
        text = _to_json(name, value)
        if isinstance(runs, str):
            raise TypeError(
                f"correction {name} {version}: runs must be a list of run ids, got the string "
                f"{runs!r}; write runs=[{runs!r}]"
            )
        if bool(runs) == (start is not None):
            raise ValueError(f"correction {name} {version}: give either runs or start (not both)")
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")  # one writer at a time: the overlap check holds
            try:
                if runs:
                    # A run's own value wins over an interval: added to a version that has
                    # intervals, it could change what that version already gives the run.
                    interval = db.execute(
                        "SELECT t_start, t_end FROM corrections WHERE name = ? AND version = ? "
                        "AND run_id IS NULL LIMIT 1",
                        (name, version),
                    ).fetchone()
                    if interval:
                        raise CorrectionConflict(
                            f"correction {name} {version} already holds values by time interval "
                            f"(e.g. [{interval[0]}, {interval[1]})); a run's own value added now "
                            "could change what this version gives that run: add run values "
                            "before intervals, or add a new version"
                        )
                    for run in runs:
                        _check_text("run id", run)
                        self._refuse_existing(db, name, version, run)
                        db.execute(
                            "INSERT INTO corrections (name, version, run_id, value) "
                            "VALUES (?, ?, ?, ?)",
                            (name, version, run, text),
                        )
                else:
                    t0, t1 = _interval(name, version, start, end)
                    clash = db.execute(
                        "SELECT t_start, t_end FROM corrections WHERE name = ? AND version = ? "
                        "AND run_id IS NULL AND t_start < ? AND t_end > ?",
                        (name, version, t1, t0),
                    ).fetchone()
                    if clash:
                        raise CorrectionConflict(
                            f"correction {name} {version} already holds a value for "
                            f"[{clash[0]}, {clash[1]}), which overlaps [{t0}, {t1}); versions "
                            "are append-only: add a new version"
                        )
                    db.execute(
                        "INSERT INTO corrections (name, version, t_start, t_end, value) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (name, version, t0, t1, text),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    @staticmethod
    def _refuse_existing(db: sqlite3.Connection, name: str, version: str, run: str) -> None:
        row = db.execute(
            "SELECT value FROM corrections WHERE name = ? AND version = ? AND run_id = ?",
            (name, version, run),
        ).fetchone()
        if row is not None:
            raise CorrectionConflict(
                f"correction {name} {version} already holds {row[0]} for run {run}; versions "
                "are append-only: add a new version"
            )

    def tag(self, global_version: str, versions: Mapping[str, str]) -> None:
        """Define ``global_version`` as these versions of these corrections (append-only:
        a correction's version under a tag is never changed; new corrections may be added)."""
        _check_text("global version", global_version)
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                for name, version in versions.items():
                    _check_text("correction name", name)
                    _check_text("correction version", version)
                    row = db.execute(
                        "SELECT version FROM global_versions WHERE tag = ? AND name = ?",
                        (global_version, name),
                    ).fetchone()
                    if row is not None and row[0] != version:
                        raise CorrectionConflict(
                            f"global version {global_version} already pins {name} to "
                            f"{row[0]}; global versions are append-only: define a new one"
                        )
                    known = db.execute(
                        "SELECT 1 FROM corrections WHERE name = ? AND version = ? LIMIT 1",
                        (name, version),
                    ).fetchone()
                    if known is None:
                        raise CorrectionNotFound(
                            f"global version {global_version}: correction {name} has no "
                            f"version {version} in {self.location}"
                        )
                    db.execute(
                        "INSERT OR IGNORE INTO global_versions VALUES (?, ?, ?)",
                        (global_version, name, version),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ reading
    def version_for(self, name: str, global_version: str) -> str:
        with self._db() as db:
            row = db.execute(
                "SELECT version FROM global_versions WHERE tag = ? AND name = ?",
                (global_version, name),
            ).fetchone()
            if row is None:
                tags = [r[0] for r in db.execute("SELECT DISTINCT tag FROM global_versions")]
                raise CorrectionNotFound(
                    f"global version {global_version!r} pins no version of correction {name!r} "
                    f"in {self.location} (global versions: {', '.join(sorted(tags)) or 'none'})"
                )
        return str(row[0])

    def value(self, name: str, version: str, run_id: str, run_start: int | None) -> Any:
        with self._db() as db:
            row = db.execute(
                "SELECT value FROM corrections WHERE name = ? AND version = ? AND run_id = ?",
                (name, version, run_id),
            ).fetchone()
            if row is None and run_start is not None:
                row = db.execute(
                    "SELECT value FROM corrections WHERE name = ? AND version = ? AND "
                    "run_id IS NULL AND t_start <= ? AND t_end > ?",
                    (name, version, run_start, run_start),
                ).fetchone()
            if row is None:
                known = db.execute(
                    "SELECT 1 FROM corrections WHERE name = ? AND version = ? LIMIT 1",
                    (name, version),
                ).fetchone()
        if row is not None:
            return json.loads(row[0])
        if known is None:
            raise CorrectionNotFound(
                f"correction {name!r} has no version {version!r} in {self.location}"
            )
        when = "its start time is unknown" if run_start is None else f"it starts at {run_start}"
        raise CorrectionNotFound(
            f"correction {name!r} {version} in {self.location} has no value for run "
            f"{run_id!r} ({when})"
        )

    def entries(self, name: str | None = None) -> list[Entry]:
        """Every stored value (of ``name``), for listing."""
        query = "SELECT name, version, value, run_id, t_start, t_end FROM corrections"
        args: tuple[str, ...] = ()
        if name is not None:
            query, args = query + " WHERE name = ?", (name,)
        with self._db() as db:
            rows = db.execute(query + " ORDER BY name, version, t_start, run_id", args).fetchall()
        return [Entry(n, v, json.loads(val), r, s, e) for n, v, val, r, s, e in rows]

    def global_versions(self) -> dict[str, dict[str, str]]:
        """``{tag: {correction: version}}``."""
        out: dict[str, dict[str, str]] = {}
        with self._db() as db:
            for tag, name, version in db.execute(
                "SELECT tag, name, version FROM global_versions ORDER BY tag, name"
            ):
                out.setdefault(tag, {})[name] = version
        return out

    def __repr__(self) -> str:
        return f"CorrectionsTable({self.location!r})"


_FOREVER = 2**63 - 1


def _interval(name: str, version: str, start: int | None, end: int | None) -> tuple[int, int]:
    t1 = _FOREVER if end is None else end
    for t in (start, t1):
        if isinstance(t, bool) or not isinstance(t, int) or not -_FOREVER - 1 <= t <= _FOREVER:
            raise ValueError(
                f"correction {name} {version}: times must be integers (ns) in the int64 range, "
                f"got {t!r}"
            )
    assert start is not None
    if start >= t1:
        raise ValueError(f"correction {name} {version}: start {start} is not before end {t1}")
    return start, t1


def open_corrections(source: str | Path | CorrectionsSource | None) -> CorrectionsSource | None:
    """A corrections source from a path to an SQLite file (created if missing) or as given."""
    if source is None or isinstance(source, CorrectionsSource):
        return source
    return CorrectionsTable(source)
