"""Odd files in a store (a FIFO, an oversized ``zarr.json``) give clear errors naming the
path; they never hang a listing, a load or a claim, nor break the listing of the store."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import KEY, RECORDS, ROWS_PER_CHUNK, make_chunks, save

from strax_storage import DataCorrupted, DataKey, StorageError, Store, open_store
from strax_storage.layout import METADATA_LIMIT

OTHER = DataKey(KEY.run_id, KEY.data_type, "otherhash2")


def finishing(call: Callable[[], Any], timeout: float = 10.0) -> Any:
    """``call()``'s result or exception, asserting it returns within ``timeout`` seconds."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as e:
            box["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "hung"
    if "error" in box:
        raise box["error"]
    return box.get("value")


@pytest.fixture
def two(tmp_path: Path) -> Store:
    store = open_store(tmp_path, rows_per_chunk=ROWS_PER_CHUNK)
    save(store, make_chunks(RECORDS, [5, 12]))
    store.saver(OTHER, RECORDS, {}).save_from(make_chunks(RECORDS, [3]))
    return store


def test_a_fifo_as_zarr_json_never_hangs_ls_or_load(two: Store, tmp_path: Path) -> None:
    doc = tmp_path / KEY.path / "zarr.json"
    doc.unlink()
    os.mkfifo(doc)
    infos = finishing(lambda: two.list())
    by_key = {i.key: i for i in infos}
    assert by_key[OTHER].status == "complete"
    assert by_key[KEY].status == "failed" and "not a regular file" in (by_key[KEY].corrupted or "")
    with pytest.raises(DataCorrupted, match=re.escape(str(doc))):
        finishing(lambda: two.find(KEY))
    with pytest.raises(DataCorrupted, match=re.escape(str(doc))):
        finishing(lambda: list(two.load(KEY)))


def test_a_fifo_as_a_chunk_file_is_corruption(two: Store, tmp_path: Path) -> None:
    chunk = tmp_path / KEY.path / "area" / "c" / "1"
    chunk.unlink()
    os.mkfifo(chunk)
    with pytest.raises(DataCorrupted, match=rf"not a regular file.*{re.escape(str(chunk))}"):
        finishing(lambda: two.load_array(KEY))


def test_a_fifo_as_a_claim_file_is_a_clear_error(two: Store, tmp_path: Path) -> None:
    fresh = DataKey(KEY.run_id, "peaks", "abc234def")
    claim = tmp_path / KEY.run_id / f".claim-{fresh.dirname}"
    os.mkfifo(claim)
    with pytest.raises(StorageError, match=rf"{re.escape(str(claim))} .*not a regular file"):
        finishing(lambda: two.claim(fresh))


def test_an_oversized_zarr_json_is_corruption_and_ls_still_lists(
    two: Store, tmp_path: Path
) -> None:
    doc = tmp_path / KEY.path / "zarr.json"
    with open(doc, "r+b") as f:
        f.truncate(METADATA_LIMIT + 1)  # sparse: no 16 MB written
    infos = finishing(lambda: two.list())
    by_key = {i.key: i for i in infos}
    assert by_key[OTHER].status == "complete"
    assert "more than the" in (by_key[KEY].corrupted or "")
    with pytest.raises(DataCorrupted, match=rf"bytes, more than .*{re.escape(str(doc))}"):
        two.find(KEY)
