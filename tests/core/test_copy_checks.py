"""``ctx.copy`` and ``strax-decl copy`` on real Zarr stores in tmp_path: a damaged source is
refused without leaving a complete copy behind, ``recompress`` is what the copy's Zarr
metadata records, and the command line's ``--recompress`` / ``--rechunk-mb`` copy loads
equal to the source."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

import strax_decl as sd
from strax_decl.testing import PLUGINS
from strax_storage import DataCorrupted, DataNotFound, open_store

ENTRY = shutil.which("strax-decl", path=str(Path(sys.executable).parent))
CMD = [ENTRY] if ENTRY else [sys.executable, "-m", "strax_decl"]

SMALL = {"n_chunks": 3, "rows_per_chunk": 20}


@pytest.fixture
def source(tmp_path: Path) -> sd.Context:
    """Records of run r1 stored in ``a``, one Zarr chunk per strax chunk (20 rows)."""
    ctx = sd.Context(open_store(str(tmp_path / "a"), rows_per_chunk=20), plugins=PLUGINS)
    ctx = ctx.new_context(config=SMALL)
    ctx.define_run("r1", start=0, end=10_000, mode="toy")
    ctx.make("r1", "records")
    return ctx


def group_dir(ctx: sd.Context, root: Path, data_type: str = "records") -> Path:
    return root / ctx.key_for("r1", data_type).path


def test_a_damaged_source_is_refused_and_leaves_no_complete_copy(tmp_path, source):
    """A flipped byte in the last Zarr chunk of one field: the copy has written the chunks
    before it when the load finds the damage. DataCorrupted names the file; the destination
    holds nothing complete (the write is recorded ``failed`` under the final name, which
    refuses to load; no temporary directory stays), and a copy from the repaired source
    then succeeds without ``overwrite``."""
    key = source.key_for("r1", "records")
    damaged = group_dir(source, tmp_path / "a") / "area" / "c" / "2"
    good = damaged.read_bytes()
    raw = bytearray(good)
    raw[len(raw) // 2] ^= 0x10
    damaged.write_bytes(bytes(raw))
    dest_root = tmp_path / "b"
    dest = open_store(str(dest_root), rows_per_chunk=20)  # chunks reach the disk at once
    with pytest.raises(DataCorrupted, match=r"CRC32C mismatch.*area/c/2") as caught:
        source.copy("r1", "records", to=dest)
    assert caught.value.key == key
    assert dest.find(key) is None and dest.status(key) != "complete"
    info = dest.info(key)
    assert info.status == "failed" and "DataCorrupted" in (info.exception or "")
    assert info.n_rows == 40  # the two chunks before the damage were written, not published
    with pytest.raises(DataNotFound, match="it is failed"):
        dest.load_array(key)
    final = dest_root / key.path  # the failure is recorded under the final name; no temp dir
    assert sorted(p.name for p in (dest_root / "r1").iterdir()) == [final.name, "zarr.json"]
    reader = sd.Context(str(dest_root), plugins=PLUGINS).new_context(config=SMALL)
    assert reader.plan("r1", "records").to_load == []  # never loaded: computed again
    damaged.write_bytes(good)  # the source repaired: the failed copy does not block
    copied = source.copy("r1", "records", to=dest)
    assert copied.status == "complete"
    np.testing.assert_array_equal(
        reader.get_array("r1", "records"), source.get_array("r1", "records")
    )


def codecs_of(array_dir: Path) -> list[dict]:
    return json.loads((array_dir / "zarr.json").read_text())["codecs"]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("zstd:9", {"name": "zstd", "configuration": {"level": 9, "checksum": False}}),
        ("blosc-lz4-shuffle:5", {"name": "blosc", "cname": "lz4", "clevel": 5}),
    ],
)
def test_recompress_is_what_the_copys_zarr_metadata_names(tmp_path, source, choice, expected):
    """Every field array of the copy records the requested codec and level in its
    ``zarr.json`` (read as plain JSON), the source keeps its own, and plain Zarr reads the
    same values from both."""
    src_dir = group_dir(source, tmp_path / "a")
    before = codecs_of(src_dir / "time")
    info = source.copy("r1", "records", to=str(tmp_path / "b"), recompress=choice)
    assert info.status == "complete" and info.n_rows == 60
    dest_dir = group_dir(source, tmp_path / "b")
    src_group = zarr.open_group(str(src_dir), mode="r", zarr_format=3)
    dest_group = zarr.open_group(str(dest_dir), mode="r", zarr_format=3)
    fields = list(source.data_info("records")["field"])
    assert fields and "data" in fields
    for name in fields:
        codecs = codecs_of(dest_dir / name)
        compressors = [c for c in codecs if c["name"] not in ("bytes", "crc32c")]
        assert len(compressors) == 1, codecs
        found = compressors[0]
        if expected["name"] == "zstd":
            assert found == expected, (name, codecs)
        else:
            config = found["configuration"]
            assert found["name"] == "blosc", (name, codecs)
            assert (config["cname"], config["clevel"]) == (expected["cname"], expected["clevel"])
            assert config["shuffle"] == "shuffle"
        assert codecs[-1]["name"] == "crc32c"  # the checksum stays
        np.testing.assert_array_equal(dest_group[name][:], src_group[name][:])
    assert codecs_of(src_dir / "time") == before  # the source is untouched
    reader = sd.Context(str(tmp_path / "b"), plugins=PLUGINS).new_context(config=SMALL)
    np.testing.assert_array_equal(
        reader.get_array("r1", "records"), source.get_array("r1", "records")
    )


def test_cli_copy_recompress_and_rechunk(tmp_path, source):
    """``strax-decl copy -s A r1 records --to B --recompress zstd:7 --rechunk-mb 0.001`` in
    a subprocess: exit 0, the copy is re-compressed, combined toward 1 kB chunks (from 720 B
    ones), and loads equal to the source."""
    store, shared = str(tmp_path / "a"), str(tmp_path / "b")
    args = ["copy", "-s", store, "r1", "records", "--to", shared]
    done = subprocess.run(
        [*CMD, *args, "--recompress", "zstd:7", "--rechunk-mb", "0.001"],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr
    assert "copied r1/records" in done.stdout
    key = source.key_for("r1", "records")
    src_info = source.stores[0].find(key)
    dest_info = open_store(shared).find(key)
    assert src_info is not None and dest_info is not None
    assert src_info.n_chunks == 3 and dest_info.n_chunks == 2  # 720 B + 720 B, then 720 B
    assert dest_info.metadata["lineage"] == src_info.metadata["lineage"]
    area = codecs_of(Path(shared) / key.path / "area")
    assert {"name": "zstd", "configuration": {"level": 7, "checksum": False}} in area
    reader = sd.Context(shared, plugins=PLUGINS).new_context(config=SMALL)
    assert reader.plan("r1", "records").to_load == ["records"]
    np.testing.assert_array_equal(
        reader.get_array("r1", "records"), source.get_array("r1", "records")
    )
    assert reader.run_metadata("r1")["mode"] == "toy"  # the run document went along
