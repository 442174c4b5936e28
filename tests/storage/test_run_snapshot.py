"""The run snapshot (``run_snapshot``): a cold scan reads one file instead of every run
folder, and gives what listing every folder gives; a changed folder is listed again; a
damaged snapshot is ignored; read-only stores write none."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from strax_storage import open_store, run_scan, run_snapshot
from strax_storage.run_snapshot import SNAPSHOT

N = 80  # more than run_scan.SNAPSHOT_MIN


def _forget() -> None:
    """As a new process: nothing of the store remembered."""
    run_scan._entry_cache.clear()
    run_scan._doc_cache.clear()
    run_snapshot._loaded.clear()


def _age(root: Path) -> None:
    """Make every run folder older than ``FRESH_NS`` (as a store written a while ago)."""
    old = time.time() - 60
    for p in root.iterdir():
        if p.is_dir() and not p.name.startswith("."):
            os.utime(p, (old, old))


def _store(root: Path):  # type: ignore[no-untyped-def]
    store = open_store(root)
    for i in range(N):
        store.define_run(f"r{i:03d}", {"name": f"r{i:03d}", "start": i, "tags": ["a"]})
    store.tag_run("r007", "later")
    (root / "r009" / "peaks-abcdef").mkdir()
    _age(root)
    return store


def _as_listed(store) -> list:  # type: ignore[no-untyped-def]
    """A scan that lists every folder (no snapshot, nothing remembered)."""
    path = Path(store.backend.root) / SNAPSHOT
    saved = path.read_bytes() if path.exists() else None
    path.unlink(missing_ok=True)
    _forget()
    try:
        return list(run_scan.scan(store.backend))
    finally:
        if saved is not None:
            path.write_bytes(saved)
        _forget()


def test_a_full_scan_writes_the_snapshot_and_the_next_cold_scan_reads_it(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _forget()
    first = list(run_scan.scan(store.backend))
    assert (tmp_path / SNAPSHOT).exists()
    raw = json.loads((tmp_path / SNAPSHOT).read_text())
    assert raw["format"] == "strax_decl.run_snapshot" and len(raw["runs"]) == N
    _forget()
    assert list(run_scan.scan(store.backend)) == first == _as_listed(store)
    by_run = {e.run_id: e for e in first}
    assert by_run["r007"].tags == ("a", "later")
    assert by_run["r009"].dirnames == {"peaks-abcdef"}


def test_a_changed_folder_is_listed_again(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _forget()
    run_scan.scan(store.backend)  # writes the snapshot
    store.tag_run("r003", "new")  # changes r003's folder: its snapshot entry is stale
    (tmp_path / "r004" / "records-abcdef").mkdir()
    store.define_run("r999", {"name": "r999"})  # not in the snapshot at all
    _forget()
    got = {e.run_id: e for e in run_scan.scan(store.backend)}
    assert "new" in got["r003"].tags
    assert "records-abcdef" in got["r004"].dirnames
    assert got["r999"].doc == {"name": "r999"}
    assert list(got.values()) == _as_listed(store)


@pytest.mark.parametrize(
    "content",
    [
        b"{",
        b'{"format": "other", "runs": {}}',
        b'{"format": "strax_decl.run_snapshot", "runs": {"r001": [1, 2, 3]}}',
        b'{"format": "strax_decl.run_snapshot", "runs": {"r001": ["x", 2, 3, {}, null, [], {}]}}',
    ],
)
def test_a_damaged_snapshot_is_ignored(tmp_path: Path, content: bytes) -> None:
    store = _store(tmp_path)
    expected = _as_listed(store)
    (tmp_path / SNAPSHOT).write_bytes(content)
    _forget()
    assert list(run_scan.scan(store.backend)) == expected


def test_an_entry_of_another_folder_is_not_used(tmp_path: Path) -> None:
    """A snapshot entry whose folder signature does not match (e.g. the run folder was
    replaced) is not used, whatever it says."""
    store = _store(tmp_path)
    _forget()
    run_scan.scan(store.backend)
    raw = json.loads((tmp_path / SNAPSHOT).read_text())
    raw["runs"]["r001"][0] += 1  # another inode
    raw["runs"]["r001"][3] = {"name": "forged"}
    (tmp_path / SNAPSHOT).write_text(json.dumps(raw))
    _forget()
    got = {e.run_id: e for e in run_scan.scan(store.backend)}
    assert got["r001"].doc == {"name": "r001", "start": 1, "tags": ["a"]}


def test_a_read_only_store_writes_no_snapshot(tmp_path: Path) -> None:
    _store(tmp_path)
    _forget()
    ro = open_store(tmp_path, readonly=True)
    assert len(run_scan.scan(ro.backend)) == N
    assert not (tmp_path / SNAPSHOT).exists()


def test_a_store_without_many_new_folders_writes_none(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    for i in range(5):
        store.define_run(f"r{i}", {"name": f"r{i}"})
    _age(tmp_path)
    _forget()
    assert len(run_scan.scan(store.backend)) == 5
    assert not (tmp_path / SNAPSHOT).exists()
