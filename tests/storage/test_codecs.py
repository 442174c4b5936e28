"""Codecs per field: the measured default, the caller's choice, plain-Zarr interop, old stores."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import crc32c
import numpy as np
import pytest
import zarr
from conftest import KEY, PEAKS, RECORDS, ROWS_PER_CHUNK, concat, make_chunks, save

import strax_decl as sd
from strax_storage import DataCorrupted, DataKey, open_store
from strax_storage.codec import Codec, decode, encode
from strax_storage.codec_choice import auto_codec, field_codecs
from strax_storage.dtypes import field_specs
from strax_storage.errors import ChecksumMismatch
from strax_storage.layout import FORMAT_VERSION

FIXTURES = Path(__file__).parent / "data"


class Pulse(sd.Schema):
    time: sd.i64
    endtime: sd.i64
    area: sd.f32


def codec_doc(group: Path, field: str) -> dict[str, object]:
    codecs = json.loads((group / field / "zarr.json").read_text())["codecs"]
    assert [c["name"] for c in codecs][::2] == ["bytes", "crc32c"]
    middle: dict[str, object] = codecs[1]
    return middle


def test_default_is_bitshuffled_blosc_zstd_for_integers_and_zstd_for_scalar_floats(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path, rows_per_chunk=ROWS_PER_CHUNK)
    save(store, make_chunks(RECORDS, [5, 0, 12, 3]))
    group = tmp_path / KEY.path
    for field, typesize in (("time", 8), ("length", 4), ("dt", 2), ("channel", 2), ("data", 2)):
        doc = codec_doc(group, field)
        assert doc["name"] == "blosc"
        assert doc["configuration"] == {
            "typesize": typesize,
            "cname": "zstd",
            "clevel": 1,
            "shuffle": "bitshuffle",
            "blocksize": 0,
        }
    assert codec_doc(group, "area") == {
        "name": "zstd",
        "configuration": {"level": 1, "checksum": False},
    }
    ours = store.info(KEY).attrs["strax_decl"]
    assert ours["format_version"] == FORMAT_VERSION == 3
    assert ours["compressor"]["fields"]["data"] == {
        "codec": "blosc",
        "cname": "zstd",
        "clevel": 1,
        "shuffle": "bitshuffle",
    }
    assert ours["compressor"]["fields"]["area"] == {"codec": "zstd", "level": 1}
    # float sub-arrays get bit shuffle too (faster and smaller than zstd on waveforms)
    assert auto_codec(field_specs(PEAKS)[3]) == Codec("blosc", 1, "zstd", "bitshuffle")


def test_plain_zarr_and_xarray_read_blosc_fields(tmp_path: Path) -> None:
    store = open_store(tmp_path, rows_per_chunk=ROWS_PER_CHUNK)
    chunks = make_chunks(RECORDS, [5, 0, 12, 3])
    save(store, chunks)
    expected = concat(chunks, RECORDS)
    np.testing.assert_array_equal(store.load_array(KEY), expected)
    for name in RECORDS.names or ():
        arr = zarr.open_array(tmp_path / KEY.path / name, mode="r")
        np.testing.assert_array_equal(arr[:], expected[name])
    xr = pytest.importorskip("xarray")
    ds = xr.open_zarr(tmp_path / KEY.path, consolidated=False)
    for name in RECORDS.names or ():
        np.testing.assert_array_equal(ds[name].values, expected[name])


@pytest.mark.parametrize("codec", [None, "zstd:3", "blosc-lz4-shuffle:5", "blosc-zstd-noshuffle"])
def test_chunk_files_are_the_bytes_zarr_writes(tmp_path: Path, codec: str | None) -> None:
    store = open_store(tmp_path / "ours", rows_per_chunk=ROWS_PER_CHUNK)
    chunks = make_chunks(PEAKS, [9, 12])
    store.saver(KEY, PEAKS, {}, codec=codec).save_from(chunks)
    expected = concat(chunks, PEAKS)
    for name in PEAKS.names or ():
        ours = tmp_path / "ours" / KEY.path / name
        theirs = tmp_path / "zarr" / name
        theirs.mkdir(parents=True)
        shutil.copy(ours / "zarr.json", theirs / "zarr.json")  # the same metadata...
        zarr.open_array(theirs, mode="r+")[:] = expected[name]  # ... written by zarr
        files = sorted(p.relative_to(ours) for p in (ours / "c").rglob("*") if p.is_file())
        assert files == sorted(
            p.relative_to(theirs) for p in (theirs / "c").rglob("*") if p.is_file()
        )
        for f in files:
            assert (ours / f).read_bytes() == (theirs / f).read_bytes(), (name, f)


def test_codec_choice_per_field_and_levels(tmp_path: Path) -> None:
    store = open_store(tmp_path, rows_per_chunk=ROWS_PER_CHUNK, zstd_level=2)
    chunks = make_chunks(RECORDS, [5, 12])
    choice = {"data": "blosc-lz4-shuffle:5", "time": "zstd", "area": "blosc-zstd:3"}
    store.saver(KEY, RECORDS, {}, codec=choice).save_from(chunks)
    group = tmp_path / KEY.path
    assert codec_doc(group, "time") == {
        "name": "zstd",
        "configuration": {"level": 2, "checksum": False},
    }
    assert codec_doc(group, "data")["configuration"] == {
        "typesize": 2,
        "cname": "lz4",
        "clevel": 5,
        "shuffle": "shuffle",
        "blocksize": 0,
    }
    assert codec_doc(group, "area")["configuration"]["clevel"] == 3  # type: ignore[index]
    assert codec_doc(group, "length")["name"] == "blosc"  # not named: the default
    np.testing.assert_array_equal(store.load_array(KEY), concat(chunks, RECORDS))
    # the index arrays stay zstd at the store's level
    index = json.loads((group / "_index" / "start" / "zarr.json").read_text())
    assert index["codecs"][1] == {"name": "zstd", "configuration": {"level": 2, "checksum": False}}


@pytest.mark.parametrize(
    ("choice", "message"),
    [
        ("gzip", "unknown codec"),
        ("blosc-brotli", "unknown codec"),
        ("zstd:x", "must be an integer"),
        ("zstd:40", r"\[-7, 22\]"),
        ("blosc-zstd:12", r"\[0, 9\]"),
        ("auto:1", "takes no level"),
        ({"nope": "zstd"}, "does not have"),
    ],
)
def test_bad_codec_choices_are_refused_before_writing(
    tmp_path: Path, choice: object, message: str
) -> None:
    store = open_store(tmp_path, rows_per_chunk=ROWS_PER_CHUNK)
    with pytest.raises(ValueError, match=message):
        store.saver(KEY, RECORDS, {}, codec=choice)  # type: ignore[arg-type]
    assert store.status(KEY) == "absent"
    with pytest.raises(TypeError):
        store.saver(KEY, RECORDS, {}, codec=3)  # type: ignore[arg-type]


def test_blosc_refuses_items_bigger_than_its_header_holds() -> None:
    text = np.dtype([("time", "<i8"), ("endtime", "<i8"), ("name", "<U100")])  # 400 B items
    assert [c.kind for c in field_codecs(field_specs(text), None, 1)] == ["blosc", "blosc", "zstd"]
    with pytest.raises(ValueError, match="at most 255 bytes"):
        field_codecs(field_specs(text), "blosc-zstd", 1)


def test_damaged_and_swapped_blosc_chunks_are_detected(tmp_path: Path) -> None:
    store = open_store(tmp_path, rows_per_chunk=ROWS_PER_CHUNK)
    save(store, make_chunks(RECORDS, [5, 12]))
    chunk = tmp_path / KEY.path / "data" / "c" / "1" / "0"
    assert codec_doc(tmp_path / KEY.path, "data")["name"] == "blosc"
    raw = bytearray(chunk.read_bytes())
    raw[20] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    with pytest.raises(DataCorrupted, match="CRC32C mismatch"):
        store.load_array(KEY)
    # a whole (valid) chunk file from another data set of the same dtype: the digests catch it
    other = DataKey(KEY.run_id, KEY.data_type, "otherhash2")
    store.saver(other, RECORDS, {}).save_from(make_chunks(RECORDS, [5, 12], seed=3))
    chunk.write_bytes((tmp_path / other.path / "data" / "c" / "1" / "0").read_bytes())
    with pytest.raises(DataCorrupted, match="does not belong here"):
        store.load_array(KEY)


def test_decode_refuses_a_blosc_header_that_lies() -> None:
    data = np.arange(1000, dtype="<i2")
    codec = Codec("blosc", 1, "zstd", "bitshuffle")
    frame, crc = encode(data, codec)
    assert decode(frame + crc, data.nbytes, codec) == data.tobytes()
    with pytest.raises(ChecksumMismatch, match="header says"):
        decode(frame + crc, data.nbytes * 2, codec)
    short = frame[:12]
    with pytest.raises(ChecksumMismatch, match="truncated"):
        decode(short + crc32c.crc32c(short).to_bytes(4, "little"), data.nbytes, codec)


def test_a_format_version_2_store_written_before_codecs_still_loads(tmp_path: Path) -> None:
    """``data/format_v2`` was written by the code of format version 2 (every field zstd)."""
    root = tmp_path / "store"
    shutil.copytree(FIXTURES / "format_v2", root)
    expected = np.load(root / "expected.npy")
    store = open_store(root, readonly=True)
    info = store.find(KEY)
    assert info is not None and info.attrs["strax_decl"]["format_version"] == 2
    assert "fields" not in info.attrs["strax_decl"]["compressor"]
    np.testing.assert_array_equal(store.load_array(KEY), expected)
    loaded = list(store.load(KEY))
    assert [len(c) for c in loaded] == [5, 0, 12, 3]
    # and its digests are still checked
    chunk = root / KEY.path / "time" / "c" / "1"
    chunk.write_bytes((root / KEY.path / "time" / "c" / "0").read_bytes())
    with pytest.raises(DataCorrupted, match="does not belong here"):
        store.load_array(KEY)


def test_a_store_naming_no_codec_for_a_field_is_corrupt_not_misread(tmp_path: Path) -> None:
    store = open_store(tmp_path, rows_per_chunk=ROWS_PER_CHUNK)
    save(store, make_chunks(RECORDS, [5, 12]))
    doc_path = tmp_path / KEY.path / "zarr.json"
    doc = json.loads(doc_path.read_text())
    del doc["attributes"]["strax_decl"]["compressor"]["fields"]["data"]
    doc_path.write_text(json.dumps(doc))
    with pytest.raises(DataCorrupted, match="each field's codec"):
        store.load_array(KEY)


def test_sd_output_codec_reaches_the_store_and_stays_out_of_the_lineage(tmp_path: Path) -> None:
    def pulses_plugin(codec: object) -> type[sd.Plugin]:
        class Pulses(sd.Plugin):
            version = "1"

            class Outputs(sd.Outputs):
                pulses: Pulse = sd.output(codec=codec)

            def source(self, run_id: str) -> Iterator[sd.Chunk]:
                rows = np.zeros(10, Pulse.dtype)
                rows["time"] = np.arange(10) * 10
                rows["endtime"] = rows["time"] + 5
                rows["area"] = np.arange(10)
                yield sd.Chunk(0, 100, rows)

        return Pulses

    plain = sd.Context(storage=str(tmp_path / "a"), plugins=[pulses_plugin(None)])
    chosen = sd.Context(
        storage=str(tmp_path / "b"),
        plugins=[pulses_plugin({"time": "zstd:5", "area": "blosc-lz4"})],
    )
    assert plain.key_for("r1", "pulses") == chosen.key_for("r1", "pulses")  # same lineage
    for ctx in (plain, chosen):
        ctx.make("r1", "pulses")
    key = chosen.key_for("r1", "pulses")
    fields = chosen.stores[0].info(key).attrs["strax_decl"]["compressor"]["fields"]
    assert fields["time"] == {"codec": "zstd", "level": 5}
    assert fields["area"]["cname"] == "lz4" and fields["endtime"]["shuffle"] == "bitshuffle"
    np.testing.assert_array_equal(chosen.get_array("r1", "pulses"), plain.get_array("r1", "pulses"))
    with pytest.raises(ValueError, match=r"sd.output\(codec=...\): unknown codec 'gzip'"):
        pulses_plugin("gzip")


def test_every_numeric_kind_round_trips_and_reads_in_zarr(tmp_path: Path) -> None:
    dtype = np.dtype(
        [
            ("time", "<i8"),
            ("endtime", "<i8"),
            ("flag", "?"),
            ("small", "u1"),
            ("signed", "i1", (3,)),
            ("wide", ">u4"),
            ("z", "<c8", (2,)),
            ("x", "<f8"),
        ]
    )
    store = open_store(tmp_path, rows_per_chunk=ROWS_PER_CHUNK)
    chunks = make_chunks(dtype, [5, 0, 12, 3])
    store.saver(KEY, dtype, {}).save_from(chunks)
    expected = concat(chunks, dtype)
    loaded = store.load_array(KEY)
    assert loaded.dtype == dtype
    np.testing.assert_array_equal(loaded, expected)
    for name in dtype.names or ():
        np.testing.assert_array_equal(
            zarr.open_array(tmp_path / KEY.path / name, mode="r")[:], expected[name]
        )
        want = "zstd" if name == "x" else "blosc"  # only the scalar float gets plain zstd
        assert codec_doc(tmp_path / KEY.path, name)["name"] == want
