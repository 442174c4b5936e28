"""Store.remove_run: a whole run goes (data sets, run document, tags, folder), never under a
live writer; on a real directory and on an in-memory store."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from strax_storage import ClaimHeld, DataKey, DataNotFound, RunRemoval, Store, open_store

DTYPE = np.dtype([("time", "<i8"), ("endtime", "<i8"), ("x", "<f4")])


def _save(store: Store, key: DataKey) -> None:
    from strax_storage import Chunk

    rows = np.zeros(3, DTYPE)
    rows["time"] = [0, 10, 20]
    rows["endtime"] = rows["time"] + 5
    with store.saver(key, DTYPE, {"plugin": "P"}) as saver:
        saver.send(Chunk(0, 100, rows))


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path) -> Store:
    where = str(tmp_path / "data") if request.param == "local" else f"memory://{uuid.uuid4().hex}"
    return open_store(where)


def _fill(store: Store) -> list[DataKey]:
    keys = [DataKey("r1", "peaks", "aaaa"), DataKey("r1", "events", "bbbb")]
    for key in keys:
        _save(store, key)
    _save(store, DataKey("r2", "peaks", "aaaa"))
    store.define_run("r1", {"start": 0, "end": 100, "tags": ["bad"]})
    store.tag_run("r1", "science")
    store.tag_run("r1", "bad", remove=True)  # an .untag- record
    return keys


def test_remove_run_removes_everything_of_the_run_only(store: Store) -> None:
    keys = _fill(store)
    assert store.run_doc("r1") is not None
    done = store.remove_run("r1")
    assert isinstance(done, RunRemoval)
    assert sorted(done.removed) == sorted(keys) and done.skipped == {}
    assert sorted(done.documents) == [".run.json", ".tag-science", ".untag-bad"]
    assert done.folder_removed
    assert store.list(run_id="r1") == [] and store.run_doc("r1") is None
    assert store.backend.children("r1") == []
    assert [e.run_id for e in store.scan_runs()] == ["r2"]  # the other run is untouched
    assert store.find(DataKey("r2", "peaks", "aaaa")) is not None
    with pytest.raises(DataNotFound, match="no run 'r1'"):
        store.remove_run("r1")


def test_a_live_writer_makes_remove_run_refuse_or_skip(store: Store) -> None:
    from strax_storage import Chunk

    keys = _fill(store)
    writing = DataKey("r1", "waveforms", "cccc")
    saver = store.saver(writing, DTYPE, {"plugin": "W"})  # holds the claim while it writes
    rows = np.zeros(1, DTYPE)
    rows["endtime"] = 1
    saver.send(Chunk(0, 10, rows))
    with pytest.raises(ClaimHeld, match=r"r1/waveforms-cccc by pid \d+.*nothing removed"):
        store.remove_run("r1")
    assert len(store.list(run_id="r1")) == 3 and store.run_doc("r1") is not None
    done = store.remove_run("r1", skip_writing=True)
    assert sorted(done.removed) == sorted(keys) and list(done.skipped) == [writing]
    assert "pid" in done.skipped[writing]
    assert not done.folder_removed and done.documents == ()
    assert store.run_doc("r1") is not None  # the run still has a writer: its document stays
    saver.send(Chunk(10, 20, np.zeros(0, DTYPE)))
    saver.close()  # the writer finishes undisturbed
    assert store.find(writing) is not None
    assert store.remove_run("r1").folder_removed
    assert store.run_doc("r1") is None and store.find(writing) is None


def test_a_claim_before_the_first_write_is_respected(tmp_path) -> None:
    """Locally a claim is a file in the run folder: seen even before any data is written."""
    store = open_store(str(tmp_path / "data"))
    _fill(store)
    claim = store.claim(DataKey("r1", "waveforms", "cccc"))
    assert claim is not None
    with pytest.raises(ClaimHeld, match="r1/waveforms-cccc"):
        store.remove_run("r1")
    claim.release()
    assert store.remove_run("r1").folder_removed
    assert not (tmp_path / "data" / "r1").exists()


def test_remove_run_rejects_bad_run_ids_and_readonly_stores(tmp_path) -> None:
    store = open_store(str(tmp_path / "data"))
    _save(store, DataKey("r1", "peaks", "aaaa"))
    with pytest.raises(ValueError, match="run_id"):
        store.remove_run("../r1")
    with pytest.raises(Exception, match="read-only"):
        open_store(str(tmp_path / "data"), readonly=True).remove_run("r1")
    assert store.find(DataKey("r1", "peaks", "aaaa")) is not None


@pytest.mark.parametrize("how", ["remove", "remove_run", "replace"])
def test_a_reader_streaming_a_removed_data_set_is_told_it_was_removed(
    store: Store, how: str
) -> None:
    """Removing (or replacing) a data set while a reader streams it is not corruption: the
    reader's next missing chunk file raises DataNotFound saying what happened."""
    from conftest import ROWS_PER_CHUNK, make_chunks

    from strax_storage import Chunk

    store = open_store(store.backend.url, rows_per_chunk=ROWS_PER_CHUNK)
    key = DataKey("r1", "records", "cccc")
    chunks = make_chunks(DTYPE, [20] * 40, seed=1)
    with store.saver(key, DTYPE, {"plugin": "P"}) as saver:
        for c in chunks:
            saver.send(c)
    stream = store.load(key)
    assert isinstance(next(stream), Chunk)
    if how == "remove":
        store.remove(key)
        said = "was removed while it was being read"
    elif how == "remove_run":
        store.remove_run("r1")
        said = "was removed while it was being read"
    else:
        store.remove(key)
        with store.saver(key, DTYPE, {"plugin": "P"}) as saver:
            for c in make_chunks(DTYPE, [20] * 40, seed=2):  # other rows, same layout
                saver.send(c)
        # chunk files the reader was already fetching may have been missed before the
        # new write came: then it was removed, as far as that reader could tell
        said = "was (removed|replaced by another write) while it was being read"
    with pytest.raises(DataNotFound, match=said) as caught:
        for _ in stream:
            pass
    assert "r1" in str(caught.value) and "records" in str(caught.value)
