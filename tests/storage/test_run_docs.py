"""Run documents and tags in the store: written once, exclusive per-tag records, checked
names, the cheap scan; concurrent writers in real processes."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from strax_storage import Chunk, DataExistsError, DataKey, StorageError, open_store
from strax_storage.run_docs import RUN_DOC
from strax_storage.run_scan import complete, scan

DOC = {"name": "r1", "start": 1, "end": 5, "mode": "calib", "tags": ["a", "_b"]}


def test_a_run_document_is_written_once(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    assert store.define_run("r1", DOC) is True
    assert store.define_run("r1", DOC) is False  # the same document again: nothing to do
    with pytest.raises(DataExistsError, match="already has a different run document"):
        store.define_run("r1", {**DOC, "mode": "other"})
    assert store.run_doc("r1") == DOC
    raw = json.loads((tmp_path / "r1" / RUN_DOC).read_text())  # plain JSON, no pickle
    assert raw == {"format": "strax_decl.run", "doc": DOC}
    assert [p.name for p in (tmp_path / "r1").iterdir()] == [RUN_DOC]  # no temporary left
    assert store.run_doc("r2") is None


def test_documents_must_be_plain_json(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    with pytest.raises(TypeError, match="plain JSON"):
        store.define_run("r1", {"when": object()})
    with pytest.raises(TypeError, match="plain JSON"):
        store.define_run("r1", {"x": float("nan")})


@pytest.mark.parametrize("run", ["../x", ".hidden", "a/b", "", "x" * 65, "__zarr"])
def test_run_ids_are_checked_before_any_path(tmp_path: Path, run: str) -> None:
    store = open_store(tmp_path / "s")
    with pytest.raises(ValueError):
        store.define_run(run, DOC)
    with pytest.raises(ValueError):
        store.tag_run(run, "t")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("tag", ["../x", ".t", "a/b", "a b", "", "é"])
def test_tags_are_checked_before_any_path(tmp_path: Path, tag: str) -> None:
    store = open_store(tmp_path)
    store.define_run("r1", DOC)
    with pytest.raises(ValueError, match="invalid tag"):
        store.tag_run("r1", tag)


def test_tags_added_and_removed_by_records(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.define_run("r1", DOC)
    assert store.tag_run("r1", "new") is True
    assert store.tag_run("r1", "new") is False
    assert store.tag_run("r1", "a") is False  # the document has it
    assert store.run_doc("r1")["tags"] == ["a", "_b", "new"]
    assert store.tag_run("r1", "a", remove=True) is True  # a tag of the document: a record
    assert store.tag_run("r1", "a", remove=True) is False
    assert store.tag_run("r1", "new", remove=True) is True
    assert store.run_doc("r1")["tags"] == ["_b"]
    assert store.tag_run("r1", "a") is True  # back again
    assert store.run_doc("r1")["tags"] == ["a", "_b"]
    names = sorted(p.name for p in (tmp_path / "r1").iterdir())
    assert names == [RUN_DOC]  # added-then-removed leaves nothing behind
    # a run without a document can be tagged too (its document may come later)
    assert store.tag_run("r9", "x") is True
    assert [(e.run_id, e.doc, e.tags) for e in scan(store.backend, ["r9"])] == [
        ("r9", None, ("x",))
    ]


def test_memory_store(tmp_path: Path) -> None:
    store = open_store("memory://")
    assert store.define_run("r1", DOC) is True
    with pytest.raises(DataExistsError):
        store.define_run("r1", {**DOC, "end": 9})
    store.tag_run("r1", "t")
    assert store.run_doc("r1")["tags"] == ["a", "_b", "t"]


def test_readonly_store_refuses(tmp_path: Path) -> None:
    open_store(tmp_path).define_run("r1", DOC)
    ro = open_store(tmp_path, readonly=True)
    assert ro.run_doc("r1") == DOC
    with pytest.raises(StorageError, match="read-only"):
        ro.define_run("r2", DOC)
    with pytest.raises(StorageError, match="read-only"):
        ro.tag_run("r1", "x")


def test_an_unreadable_document_is_reported_not_fatal(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.define_run("r1", DOC)
    (tmp_path / "r2").mkdir()
    (tmp_path / "r2" / RUN_DOC).write_text("{broken")
    entries = {e.run_id: e for e in store.scan_runs()}
    assert entries["r1"].doc == DOC
    assert entries["r2"].doc is None and "unreadable run document" in (entries["r2"].error or "")


def _save(store, key: DataKey) -> None:
    dtype = np.dtype([("time", np.int64), ("length", np.int32), ("dt", np.int16)])
    rows = np.zeros(2, dtype)
    rows["time"] = [0, 10]
    rows["length"], rows["dt"] = 1, 1
    with store.saver(key, dtype, {"plugin": "X"}) as saver:
        saver.send(Chunk(0, 20, rows))


def test_scan_knows_data_sets_by_name_and_complete_reads_status(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    key = DataKey("r1", "peaks", "abcdef")
    _save(store, key)
    store.define_run("r1", DOC)
    [entry] = store.scan_runs()
    assert entry.dirnames == frozenset({key.dirname}) and entry.tags == ("a", "_b")
    assert complete(store.backend, "r1", "peaks", "abcdef") is True
    assert complete(store.backend, "r1", "peaks", "abcdef") is True  # remembered
    store.mark_failed(key, "damaged on purpose")  # rewrites zarr.json: the answer changes
    assert complete(store.backend, "r1", "peaks", "abcdef") is False
    store.remove(key)
    assert complete(store.backend, "r1", "peaks", "abcdef") is False
    assert complete(store.backend, "r1", "other", "abcdef") is False
    with pytest.raises(ValueError):
        complete(store.backend, "..", "peaks", "abcdef")


# ------------------------------------------------------------------ real processes


def _add_tags(root: str, worker: int, n: int, start: mp.synchronize.Event) -> None:
    store = open_store(root)
    start.wait()
    for i in range(n):
        assert store.tag_run("r1", f"w{worker}_t{i}")
        store.tag_run("r1", "shared")  # every process adds this one too


def test_concurrent_tag_additions_from_8_processes_lose_none(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.define_run("r1", DOC)
    ctx = mp.get_context("fork")
    start = ctx.Event()
    n = 25
    procs = [ctx.Process(target=_add_tags, args=(str(tmp_path), w, n, start)) for w in range(8)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    tags = set(store.run_doc("r1")["tags"])
    expected = {f"w{w}_t{i}" for w in range(8) for i in range(n)} | {"a", "_b", "shared"}
    assert tags == expected


def _define(root: str, worker: int, start: mp.synchronize.Event, results: mp.Queue) -> None:
    store = open_store(root)
    start.wait()
    try:
        results.put((worker, store.define_run("r1", {**DOC, "by": worker})))
    except DataExistsError:
        results.put((worker, "exists"))


def test_concurrent_definitions_from_8_processes_one_wins(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_define, args=(str(tmp_path), w, start, results)) for w in range(8)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
    outcomes = dict(results.get(timeout=10) for _ in procs)
    winners = [w for w, r in outcomes.items() if r is True]
    assert len(winners) == 1 and sorted(outcomes.values(), key=str).count("exists") == 7
    assert open_store(tmp_path).run_doc("r1")["by"] == winners[0]


def test_the_fast_status_agrees_with_the_catalog(tmp_path: Path) -> None:
    """``complete`` on a local store reads less than ``catalog.final_info`` but must agree
    with it: complete, failed, copied under another run, damaged, missing, a link."""
    import shutil

    from strax_storage.catalog import final_info

    store = open_store(tmp_path)
    good, failed = DataKey("r1", "peaks", "abcdef"), DataKey("r2", "peaks", "abcdef")
    _save(store, good)
    _save(store, failed)
    store.mark_failed(failed, "on purpose")
    copied = DataKey("r3", "peaks", "abcdef")
    shutil.copytree(tmp_path / good.path, tmp_path / copied.path)  # names r1 inside
    damaged = DataKey("r4", "peaks", "abcdef")
    shutil.copytree(tmp_path / good.path, tmp_path / damaged.path)
    (tmp_path / damaged.path / "zarr.json").write_text('{"attributes": ')
    missing = DataKey("r5", "peaks", "abcdef")
    shutil.copytree(tmp_path / good.path, tmp_path / missing.path)
    (tmp_path / missing.path / "zarr.json").unlink()
    linked = DataKey("r6", "peaks", "abcdef")
    (tmp_path / "r6").mkdir()
    (tmp_path / linked.path).symlink_to(tmp_path / good.path)
    expected = {good: True, failed: False, copied: False, damaged: False, missing: False}
    expected[linked] = False
    for key, ok in expected.items():
        try:
            info = final_info(store.backend, key)
            catalog_says = info is not None and info.status == "complete"
        except StorageError:
            catalog_says = False
        assert catalog_says is ok, key
        assert complete(store.backend, key.run_id, key.data_type, key.lineage_hash) is ok, key
