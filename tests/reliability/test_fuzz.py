"""Fuzzing (hypothesis) names, metadata, hand-edited attributes and claim files.

Whatever the input: nothing is written outside the store root, no wrong rows are returned,
and only the documented errors are raised: ValueError/TypeError for bad names and metadata;
DataNotFound, DataCorrupted or another StorageError for store operations.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rel_helpers import snapshot

from strax_storage import Chunk, DataKey, StorageError, Store, open_store

NAME_ERRORS = (ValueError, TypeError)
STORE_ERRORS = (StorageError,)  # DataNotFound, DataCorrupted, ClaimHeld, ... are subclasses

DTYPE = np.dtype([("time", "<i8"), ("endtime", "<i8"), ("area", "<f4"), ("w", "<i2", (3,))])
GOOD = DataKey("run_1", "peaks", "abc234")

TRICKY = [
    "..",
    ".",
    "../..",
    "/",
    "a/b",
    "a\\b",
    "\x00",
    "a\x00b",
    "é",
    "ß",
    "😀",
    "\u202e",
    " ",
    "a b",
    "-",
    "a-b",
    "zarr.json",
    "__x",
    ".tmp-x",
    ".claim-x",
    "c",
    "_index",
    "x" * 64,
    "x" * 65,
    "run_1",
    "peaks",
    "abc234",
    "CON",
    "nul",
    "~",
    "$HOME",
    "%s",
    "a\nb",
]
names = st.one_of(st.sampled_from(TRICKY), st.text(max_size=70), st.from_regex(r"[a-z2-7_]{1,70}"))

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
non_json = st.one_of(
    st.binary(max_size=4),
    st.tuples(st.integers()).map(set),
    st.builds(object),
    st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2),
)

FUZZ = settings(
    max_examples=int(os.environ.get("STRAX_DECL_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def area(tmp_path: Path) -> Iterator[tuple[Path, Store]]:
    """A store root inside a watched directory; the directory around it must never change."""
    root = tmp_path / "store"
    (tmp_path / "precious.txt").write_text("x")
    before = snapshot(tmp_path, root)
    yield root, open_store(root, rows_per_chunk=4)
    assert snapshot(tmp_path, root) == before
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            assert not p.is_symlink()
            assert root.resolve() in p.resolve().parents


def chunks(n: int = 10) -> list[Chunk]:
    rows = np.zeros(n, DTYPE)
    rows["time"] = np.arange(n) * 10
    rows["endtime"] = rows["time"] + 5
    rows["area"] = np.arange(n)
    rows["w"] = np.arange(3 * n).reshape(n, 3)
    return [Chunk(0, 50, rows[: n // 2]), Chunk(50, 10 * n, rows[n // 2 :])]


def documented(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except STORE_ERRORS:
        return None


def everything(store: Store, key: DataKey) -> Any:
    """Every read-side store operation on ``key``; returns the loaded rows (or None)."""
    documented(lambda: store.status(key))
    documented(lambda: store.find(key))
    documented(lambda: store.info(key))
    documented(lambda: store.list())
    documented(lambda: store.list(run_id=key.run_id, data_type=key.data_type))
    documented(lambda: store.claim_holder(key))
    documented(lambda: store.wait_complete(key, timeout=0))
    documented(lambda: list(store.load(key, time_range=(10, 70))))
    documented(lambda: store.zarr_group(key))
    return documented(lambda: store.load_array(key))


@FUZZ
@given(run_id=names, data_type=names, lineage=names)
def test_any_names(area: tuple[Path, Store], run_id: str, data_type: str, lineage: str) -> None:
    _root, store = area
    try:
        key = DataKey(run_id, data_type, lineage)
    except NAME_ERRORS:
        for call in (
            lambda: store.list(run_id=run_id),
            lambda: store.list(data_type=data_type),
        ):
            with contextlib.suppress(NAME_ERRORS):
                call()
        return
    documented(lambda: store.saver(key, DTYPE, {"x": 1}).save_from(chunks()))
    rows = everything(store, key)
    if rows is not None:
        assert rows.tobytes() == np.concatenate([c.data for c in chunks()]).tobytes()
    claim = documented(lambda: store.claim(key))
    if claim is not None:
        claim.release()
    documented(lambda: store.remove(key))
    assert store.status(key) == "absent"


@FUZZ
@given(metadata=st.dictionaries(st.text(max_size=10), st.one_of(json_values, non_json), max_size=5))
def test_any_metadata(area: tuple[Path, Store], metadata: dict[str, Any]) -> None:
    _, store = area
    try:
        saver = store.saver(GOOD, DTYPE, metadata, overwrite=True)
    except NAME_ERRORS:
        with pytest.raises((TypeError, ValueError)):
            json.dumps(metadata, allow_nan=False)
        return
    saver.save_from(chunks())
    assert store.info(GOOD).metadata == json.loads(json.dumps(metadata))


def _any_edit(doc: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    doc["attributes"]["strax_decl"][field] = value
    return doc


ATTR_FIELDS = [
    "format",
    "format_version",
    "run_id",
    "data_type",
    "lineage_hash",
    "status",
    "complete",
    "dtype",
    "fields",
    "n_rows",
    "n_chunks",
    "start",
    "end",
    "rows_per_chunk",
    "compressor",
    "index",
    "metadata",
    "writer",
    "exception",
    "created",
    "no_such_field",
]


@pytest.fixture
def saved(area: tuple[Path, Store]) -> tuple[Path, Store, bytes, np.ndarray]:
    root, store = area
    store.saver(GOOD, DTYPE, {}).save_from(chunks())
    return root, store, (root / GOOD.path / "zarr.json").read_bytes(), store.load_array(GOOD)


@FUZZ
@given(field=st.sampled_from(ATTR_FIELDS), value=json_values)
def test_hand_edited_attributes(
    saved: tuple[Path, Store, bytes, np.ndarray], field: str, value: Any
) -> None:
    root, store, original, rows = saved
    doc = _any_edit(json.loads(original), field, value)
    text = json.dumps(doc)  # Python writes NaN/Infinity: JSON a human might produce too
    (root / GOOD.path / "zarr.json").write_text(text)
    got = everything(store, GOOD)
    if got is not None:
        assert got.dtype == rows.dtype and got.tobytes() == rows.tobytes()
    (root / GOOD.path / "zarr.json").write_bytes(original)


@FUZZ
@given(raw=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())))
def test_arbitrary_bytes_as_group_or_array_metadata(
    saved: tuple[Path, Store, bytes, np.ndarray], raw: bytes
) -> None:
    root, store, _, rows = saved
    for rel in ("zarr.json", "area/zarr.json", "_index/n_rows/zarr.json", "time/c/0"):
        path = root / GOOD.path / rel
        keep = path.read_bytes()
        path.write_bytes(raw)
        got = everything(store, GOOD)
        if got is not None:
            assert got.tobytes() == rows.tobytes()
        path.write_bytes(keep)


@FUZZ
@given(
    raw=st.one_of(
        st.binary(max_size=100),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {
                "format": st.just("strax_decl.claim"),
                "pid": json_values,
                "host": json_values,
                "created": json_values,
                "token": json_values,
            }
        ).map(lambda d: json.dumps(d).encode()),
    )
)
def test_arbitrary_claim_files(area: tuple[Path, Store], raw: bytes) -> None:
    root, store = area
    path = root / GOOD.run_id / f".claim-{GOOD.dirname}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    holder = documented(lambda: store.claim_holder(GOOD))
    if holder is not None:
        holder.describe()
    claim = documented(lambda: store.claim(GOOD))
    if claim is not None:
        claim.release()
    documented(lambda: store.wait_complete(GOOD, timeout=0))
    documented(lambda: store.saver(GOOD, DTYPE, {}, overwrite=True).save_from(chunks()))
    if path.exists():
        path.unlink()


def test_fuzz_helpers_are_sane() -> None:
    assert math.isnan(float("nan"))
    top = Path(tempfile.mkdtemp(prefix="strax_decl_fuzz_"))
    try:
        store = open_store(top / "s", rows_per_chunk=4)
        store.saver(GOOD, DTYPE, {}).save_from(chunks())
        assert (
            everything(store, GOOD).tobytes()
            == np.concatenate([c.data for c in chunks()]).tobytes()
        )
    finally:
        shutil.rmtree(top)
