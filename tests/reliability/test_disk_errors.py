"""Disk full, file too large, permission denied, a file where a directory should be, and
read-only stores: a clear error naming the path (with the real errno), no partial data set
marked complete, and computing still possible with saving disabled.

Real errors from the kernel, not simulated exceptions:

- EFBIG (errno 27): a child process with ``RLIMIT_FSIZE`` below the size of a chunk file
  (Python ignores SIGXFSZ, so ``write`` fails with EFBIG);
- ENOSPC (errno 28): chunk files opened on ``/dev/full``;
- EACCES (errno 13): a child process that dropped root for ``nobody`` writing into a
  directory owned by root (root itself ignores permission bits);
- ENOTDIR (errno 20): a regular file where the store root or a run directory should be.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rel_helpers import Launcher, launched, read_result, snapshot

import strax_decl as sd
from strax_decl.testing import TOY_PLUGINS
from strax_storage import StorageError, StorageIOError, open_store


@pytest.fixture(scope="module")
def launcher() -> Iterator[Launcher]:
    """A pre-imported process forking the runs of this module (see ``rel_launcher.py``)."""
    yield from launched()


RUN = "run_1"
TYPES = ["records", "peaks", "peak_basics", "big_peaks", "peak_extras"]
CONFIG = {"n_chunks": 10, "rows_per_chunk": 2000}
ROWS_PER_ZARR_CHUNK = 5000


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    ctx = sd.Context(storage=None, plugins=TOY_PLUGINS, config=CONFIG)
    return {t: ctx.get_array(RUN, t) for t in TYPES}


def context(storage: Any) -> sd.Context:
    return sd.Context(storage=storage, plugins=TOY_PLUGINS, config=CONFIG)


def check_nothing_partial_is_complete(path: Path, expected: dict[str, np.ndarray]) -> int:
    """Every complete data set is exactly right; returns how many are not complete."""
    ctx = context(open_store(path, readonly=True))
    store = ctx.stores[0]
    incomplete = 0
    for t in TYPES:
        key = ctx.key_for(RUN, t)
        if store.status(key) == "complete":
            np.testing.assert_array_equal(store.load_array(key), expected[t])
        else:
            incomplete += 1
    return incomplete


def check_computing_without_saving(path: Path, expected: dict[str, np.ndarray]) -> None:
    ctx = context(open_store(path, readonly=True))
    before = snapshot(path) if path.is_dir() else None
    plan = ctx.plan(RUN, TYPES)
    for t in plan.to_compute:
        assert plan.steps[t].save_reason in ("no writable store", "already stored"), plan
    for t in TYPES:
        np.testing.assert_array_equal(ctx.get_array(RUN, t), expected[t])
    if before is not None:
        assert snapshot(path) == before  # nothing written


def job(path: Path, result: Path, **extra: Any) -> dict[str, Any]:
    return {
        "store": str(path),
        "rows_per_chunk": ROWS_PER_ZARR_CHUNK,
        "config": CONFIG,
        "targets": TYPES,
        "result": str(result),
        **extra,
    }


def test_file_too_large_efbig(
    launcher: Launcher, tmp_path: Path, expected: dict[str, np.ndarray]
) -> None:
    path = tmp_path / "store"
    result = tmp_path / "result.json"
    pid = launcher.spawn(job(path, result, fsize=32 * 1024))  # metadata fits, chunks do not
    assert launcher.reap(pid) == 1
    got = read_result(result)
    assert got["type"] == "StorageIOError" and got["errno"] == errno.EFBIG, got
    assert "File too large [EFBIG, errno 27]" in got["error"]
    assert f"{path}/{RUN}/" in got["error"]  # names the file
    assert check_nothing_partial_is_complete(path, expected) >= 1
    failed = [i for i in open_store(path).list() if i.status == "failed"]
    assert any("EFBIG" in (i.exception or "") for i in failed), failed
    check_computing_without_saving(path, expected)
    # with room again, the next run replaces the failed data sets
    ctx = context(open_store(path, rows_per_chunk=ROWS_PER_ZARR_CHUNK))
    ctx.make(RUN, TYPES)
    assert check_nothing_partial_is_complete(path, expected) == 0


def test_disk_full_enospc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, expected: dict[str, np.ndarray]
) -> None:
    real_open = os.open

    def open_on_full_disk(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if "/c/" in str(path) and flags & os.O_WRONLY:  # chunk files land on /dev/full
            return real_open("/dev/full", os.O_WRONLY)
        return real_open(path, flags, *args, **kwargs)

    path = tmp_path / "store"
    ctx = context(open_store(path, rows_per_chunk=ROWS_PER_ZARR_CHUNK))
    monkeypatch.setattr(os, "open", open_on_full_disk)
    with pytest.raises(StorageIOError, match=r"No space left on device \[ENOSPC, errno 28\]") as e:
        ctx.make(RUN, TYPES)
    assert e.value.errno == errno.ENOSPC and isinstance(e.value, OSError)
    assert str(path) in str(e.value.filename)
    monkeypatch.undo()
    assert check_nothing_partial_is_complete(path, expected) >= 1
    check_computing_without_saving(path, expected)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user can traverse (pytest's tmp_path is private to root)."""
    top = Path(tempfile.mkdtemp(prefix="strax_decl_reliability_"))
    top.chmod(0o755)
    try:
        yield top
    finally:
        shutil.rmtree(top)


def test_permission_denied_eacces(
    launcher: Launcher, shared_dir: Path, expected: dict[str, np.ndarray]
) -> None:
    path = shared_dir / "store"
    path.mkdir(mode=0o755)  # owned by root: "nobody" may read but not write
    results = shared_dir / "results"
    results.mkdir(mode=0o777)
    results.chmod(0o777)
    nobody = 65534
    pid = launcher.spawn(job(path, results / "w.json", uid=nobody))
    launcher.reap(pid)
    got = read_result(results / "w.json")
    assert got["type"] == "StorageIOError" and got["errno"] == errno.EACCES, got
    assert "Permission denied [EACCES, errno 13]" in got["error"]
    assert str(path / RUN) in got["error"]
    assert sorted(os.listdir(path)) == []  # nothing was written
    # the same user computes fine with saving disabled (a read-only store)
    pid = launcher.spawn(job(path, results / "r.json", uid=nobody, readonly=True, digest=True))
    launcher.reap(pid)
    got = read_result(results / "r.json")
    assert got["ok"], got
    assert sorted(got["computed"]) == sorted(TYPES) and got["saved"] == []


def test_a_file_where_the_store_directory_should_be_enotdir(
    tmp_path: Path, expected: dict[str, np.ndarray]
) -> None:
    path = tmp_path / "store"
    path.write_text("not a directory")
    ctx = context(str(path))
    assert ctx.plan(RUN, "records").steps["records"].reason == "not stored"
    with pytest.raises(StorageIOError, match=r"Not a directory \[ENOTDIR, errno 20\]") as e:
        ctx.make(RUN, "records")
    assert e.value.errno == errno.ENOTDIR and str(path) in str(e.value)
    assert path.read_text() == "not a directory"
    check_computing_without_saving(path, expected)


def test_a_file_where_a_run_directory_should_be(tmp_path: Path) -> None:
    path = tmp_path / "store"
    path.mkdir()
    (path / RUN).write_text("junk")
    with pytest.raises(StorageIOError, match=rf"ENOTDIR.*{path / RUN}"):
        context(str(path)).make(RUN, "records")
    assert (path / RUN).read_text() == "junk"


def test_a_file_where_a_data_set_should_be_is_replaced(tmp_path: Path) -> None:
    ctx = context(str(tmp_path / "store"))
    key = ctx.key_for(RUN, "records")
    target = tmp_path / "store" / key.path
    target.parent.mkdir(parents=True)
    target.write_text("junk")
    assert ctx.stores[0].status(key) == "failed"
    assert "missing" in (ctx.stores[0].info(key).exception or "")
    ctx.make(RUN, "records")
    assert ctx.is_stored(RUN, "records") and target.is_dir()


def test_a_read_only_store_computes_and_writes_nothing(
    tmp_path: Path, expected: dict[str, np.ndarray]
) -> None:
    path = tmp_path / "store"
    context(str(path)).make(RUN, "records")
    ro = context(open_store(path, readonly=True))
    plan = ro.plan(RUN, TYPES)
    assert plan.steps["records"].action == "load"
    assert plan.steps["peaks"].save_reason == "no writable store"
    check_computing_without_saving(path, expected)
    with pytest.raises(StorageError, match="read-only"):
        ro.stores[0].remove(ro.key_for(RUN, "records"))
