"""Bad input raises a clear error and never leaves a data set that looks complete."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import KEY, PEAKS, RECORDS, ROWS_PER_CHUNK, make_chunks, make_rows, save

from strax_storage import (
    Chunk,
    ChunkLawViolation,
    DataExistsError,
    DataNotFound,
    SaverClosedError,
    StorageError,
    Store,
    open_store,
)


class Boom(RuntimeError):
    pass


def test_exception_inside_the_context_marks_the_data_set_failed(store: Store) -> None:
    chunks = make_chunks(RECORDS, [5, 9, 4])
    with pytest.raises(Boom, match="upstream died"), store.saver(KEY, RECORDS, {}) as saver:
        saver.send(chunks[0])
        saver.send(chunks[1])
        raise Boom("upstream died")

    assert store.find(KEY) is None
    assert store.status(KEY) == "failed"
    [info] = store.list()
    assert info.key == KEY and info.status == "failed"
    assert info.exception is not None
    assert "Boom: upstream died" in info.exception
    assert "Traceback" in info.exception
    assert info.attrs["strax_decl"]["complete"] is False
    with pytest.raises(DataNotFound, match="no complete data set run_1/records-abc234def"):
        store.load(KEY)
    with pytest.raises(DataNotFound):
        store.load_array(KEY)


def test_save_from_marks_failed_when_the_iterable_raises(store: Store) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield from make_chunks(RECORDS, [3, 3])
        raise Boom("source broke")

    with pytest.raises(Boom):
        store.saver(KEY, RECORDS, {}).save_from(chunks())
    assert store.status(KEY) == "failed"
    assert "source broke" in (store.info(KEY).exception or "")


def test_a_failed_data_set_is_replaced_by_the_next_save(store: Store) -> None:
    saver = store.saver(KEY, RECORDS, {})
    saver.fail(Boom("first attempt"))
    saver.fail(Boom("again"))  # idempotent
    assert store.status(KEY) == "failed"
    save(store, make_chunks(RECORDS, [4]))
    assert store.status(KEY) == "complete"
    assert [i.status for i in store.list()] == ["complete"]


def test_failed_write_never_replaces_complete_data(store: Store) -> None:
    save(store, make_chunks(RECORDS, [4]))
    with pytest.raises(Boom), store.saver(KEY, RECORDS, {}, overwrite=True) as saver:
        saver.send(make_chunks(RECORDS, [2])[0])
        raise Boom("late failure")
    if store.backend.in_place:
        # written in place: the old data set was deleted when the new write started
        assert store.status(KEY) == "failed"
    else:
        assert store.status(KEY) == "complete"
        assert len(store.load_array(KEY)) == 4


def test_existing_complete_data_set_needs_overwrite(store: Store) -> None:
    save(store, make_chunks(RECORDS, [2]))
    with pytest.raises(DataExistsError, match="run_1/records-abc234def already exists"):
        store.saver(KEY, RECORDS, {})


def _saver_with(store: Store, dtype: np.dtype = RECORDS):  # type: ignore[no-untyped-def]
    return store.saver(KEY, dtype, {})


def test_wrong_dtype_is_rejected_and_fails_the_data_set(store: Store) -> None:
    saver = _saver_with(store)
    with pytest.raises(
        TypeError, match=r"data set run_1/records-abc234def chunk 0: rows have dtype"
    ):
        saver.send(make_chunks(PEAKS, [3])[0])
    assert store.status(KEY) == "failed"
    assert store.find(KEY) is None


def test_chunks_that_do_not_touch_are_rejected(store: Store) -> None:
    saver = _saver_with(store)
    a, _, c = make_chunks(RECORDS, [2, 2, 2])
    saver.send(a)
    with pytest.raises(ChunkLawViolation, match=r"chunk 1: .* does not touch the previous chunk"):
        saver.send(c)
    assert store.status(KEY) == "failed"


def test_unsorted_rows_are_rejected(store: Store) -> None:
    rows = make_rows(RECORDS, 5, 0, 100)[::-1].copy()
    with pytest.raises(ChunkLawViolation, match="chunk 0: rows are not sorted by time"):
        _saver_with(store).send(Chunk(0, 100, rows))
    assert store.find(KEY) is None


def test_rows_outside_the_chunk_are_rejected(store: Store) -> None:
    rows = make_rows(RECORDS, 5, 0, 100)
    with pytest.raises(ChunkLawViolation, match="before the chunk start"):
        _saver_with(store).send(Chunk(int(rows["time"][0]) + 1, 200, rows))
    store.remove(KEY)
    with pytest.raises(ChunkLawViolation, match="after the chunk end"):
        _saver_with(store).send(Chunk(0, int(rows["time"][-1]) + 1, rows))


def test_negative_duration_rows_are_rejected(store: Store) -> None:
    rows = make_rows(RECORDS, 3, 0, 100)
    rows["dt"][1] = -1
    with pytest.raises(ChunkLawViolation, match="negative duration"):
        _saver_with(store).send(Chunk(0, 100, rows))


def test_send_after_close_or_fail_is_a_clear_error(store: Store) -> None:
    chunk = make_chunks(RECORDS, [2])[0]
    saver = _saver_with(store)
    saver.close()
    with pytest.raises(
        SaverClosedError, match=r"cannot send: the saver of data set .* is already closed"
    ):
        saver.send(chunk)
    other = store.saver(KEY, RECORDS, {}, overwrite=True)
    other.fail(Boom("x"))
    with pytest.raises(SaverClosedError, match="already failed"):
        other.send(chunk)
    with pytest.raises(SaverClosedError, match="cannot close"):
        other.close()


def test_send_rejects_non_chunks(store: Store) -> None:
    with pytest.raises(TypeError, match=r"expected a storage\.Chunk"):
        _saver_with(store).send(make_rows(RECORDS, 2, 0, 10))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("dtype", "message"),
    [
        (np.dtype("<i8"), "not a structured dtype"),
        (np.dtype([("x", "<i8")]), "has no 'time' field"),
        (np.dtype([("time", "<f8"), ("endtime", "<i8")]), "expected a scalar integer"),
        (np.dtype([("time", "<i8"), ("length", "<i4")]), "neither an 'endtime' field"),
        (np.dtype([("time", "<i8"), ("endtime", "<i8"), ("d", "M8[ns]")]), "only bool, integer"),
        (np.dtype([("time", "<i8"), ("endtime", "<i8"), ("o", "O")]), "only bool, integer"),
        (
            np.dtype([("time", "<i8"), ("endtime", "<i8"), ("n", [("a", "<i4")])]),
            "only bool, integer",
        ),
        (np.dtype([("time", "<i8"), ("endtime", "<i8"), ("_index", "<i4")]), "reserved"),
        (np.dtype([("time", "<i8"), ("endtime", "<i8"), ("a b", "<i4")]), "not storable"),
    ],
)
def test_unstorable_dtypes_are_rejected_up_front(
    store: Store, dtype: np.dtype, message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        store.saver(KEY, dtype, {})
    assert store.status(KEY) == "absent"


@pytest.mark.parametrize("metadata", [{"x": np.int64(3)}, {"x": float("nan")}, {"x": object()}])
def test_metadata_must_be_plain_json(store: Store, metadata: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(TypeError, match="metadata is not plain JSON"):
        store.saver(KEY, RECORDS, metadata)


def test_readonly_store_refuses_changes(tmp_path: Path) -> None:
    save(open_store(tmp_path, rows_per_chunk=ROWS_PER_CHUNK), make_chunks(RECORDS, [3]))
    ro = open_store(tmp_path, readonly=True)
    assert ro.readonly
    assert len(ro.load_array(KEY)) == 3
    with pytest.raises(StorageError, match="read-only"):
        ro.saver(KEY, RECORDS, {}, overwrite=True)
    with pytest.raises(StorageError, match="read-only"):
        ro.remove(KEY)


def test_bad_time_ranges(store: Store) -> None:
    save(store, make_chunks(RECORDS, [3]))
    with pytest.raises(ValueError, match="after its end"):
        store.load(KEY, (10, 5))
    with pytest.raises(TypeError, match="pair"):
        store.load(KEY, (1, 2, 3))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="integers"):
        store.load_array(KEY, (1.5, 2))  # type: ignore[arg-type]


def test_keys_must_be_datakeys(store: Store) -> None:
    with pytest.raises(TypeError, match=r"expected a storage\.DataKey"):
        store.find(("run_1", "records", "abc"))  # type: ignore[arg-type]


def test_missing_data_sets(store: Store) -> None:
    assert store.find(KEY) is None
    assert store.status(KEY) == "absent"
    with pytest.raises(DataNotFound, match="no data set run_1/records-abc234def"):
        store.info(KEY)
    with pytest.raises(DataNotFound):
        store.remove(KEY)
    with pytest.raises(DataNotFound, match="it is absent"):
        store.load(KEY)
