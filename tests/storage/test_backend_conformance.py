"""The Backend contract, run against every backend: local directory, Zarr memory, fsspec.

``BackendTests`` states what the store relies on from a backend (objects, trees, atomic and
exclusive writes, the capabilities it declares, refusal of unsafe keys); each subclass only
says how to build its backend. A new backend passes by subclassing it. Everything runs on real
stores: files in ``tmp_path``, Zarr's MemoryStore, fsspec's local and memory file systems.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.storage import FsspecStore, MemoryStore

from strax_storage import Chunk, DataKey, Store, UnsafePath
from strax_storage.backend import Backend, LocalBackend
from strax_storage.claims import Claims
from strax_storage.errors import BadObject
from strax_storage.zarr_backend import ZarrBackend

UNSAFE_KEYS = ["..", "../x", "a/../b", "./a", "a/./b", "a//b", "/a", "a/", "a\x00b"]
DT = np.dtype([("time", "<i8"), ("endtime", "<i8"), ("value", "<f8")])


class BackendTests:
    """The contract; subclasses define ``make(tmp_path)``."""

    def make(self, tmp_path: Path) -> Backend:
        raise NotImplementedError

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Backend:
        return self.make(tmp_path)

    # ---------------------------------------------------------------- capabilities
    def test_capabilities_are_declared_and_consistent(self, backend: Backend) -> None:
        assert isinstance(backend.supports_rename, bool)
        assert isinstance(backend.has_mtime, bool)
        assert backend.claims_kept in ("file", "process")
        assert backend.in_place is not backend.supports_rename
        assert not backend.readonly
        assert backend.url and "a/b" in backend.where("a/b")

    # ---------------------------------------------------------------- objects
    def test_read_of_a_missing_object_is_none(self, backend: Backend) -> None:
        assert backend.read("nothing/here") is None

    def test_write_joins_its_parts_and_replaces(self, backend: Backend) -> None:
        backend.write("a/b/c", [b"x", bytearray(b"y"), memoryview(b"z")])
        assert backend.read("a/b/c") == b"xyz"
        backend.write("a/b/c", [b"new"])
        assert backend.read("a/b/c") == b"new"
        backend.write("a/b/empty", [])
        assert backend.read("a/b/empty") == b""

    def test_write_atomic_creates_and_replaces(self, backend: Backend) -> None:
        backend.write_atomic("run/zarr.json", b"{}")
        assert backend.read("run/zarr.json") == b"{}"
        backend.write_atomic("run/zarr.json", b'{"a": 1}')
        assert backend.read("run/zarr.json") == b'{"a": 1}'
        assert backend.children("run") == ["zarr.json"]  # no temporary file left behind

    def test_create_exclusive_creates_once(self, backend: Backend) -> None:
        assert backend.create_exclusive("run/.claim-x", b"first")
        assert not backend.create_exclusive("run/.claim-x", b"second")
        assert backend.read("run/.claim-x") == b"first"

    def test_delete_removes_one_object_and_ignores_a_missing_one(self, backend: Backend) -> None:
        backend.write("a/one", [b"1"])
        backend.write("a/two", [b"2"])
        backend.delete("a/one")
        backend.delete("a/one")
        backend.delete("never/there")
        assert backend.read("a/one") is None
        assert backend.read("a/two") == b"2"

    # ---------------------------------------------------------------- trees
    def test_children_lists_names_directly_below(self, backend: Backend) -> None:
        assert backend.children("") == []
        backend.write("run/peaks-abc/zarr.json", [b"{}"])
        backend.write("run/peaks-abc/area/c/0", [b"0"])
        backend.write("run/.claim-peaks-abc", [b"{}"])
        backend.write("other/x", [b"x"])
        assert sorted(backend.children("")) == ["other", "run"]
        assert sorted(backend.children("run")) == [".claim-peaks-abc", "peaks-abc"]
        assert sorted(backend.children("run/peaks-abc")) == ["area", "zarr.json"]
        assert backend.children("missing") == []

    def test_exists_tree(self, backend: Backend) -> None:
        assert not backend.exists_tree("run/peaks-abc")
        backend.write("run/peaks-abc/area/c/0", [b"0"])
        assert backend.exists_tree("run/peaks-abc")
        assert backend.exists_tree("run")
        assert not backend.exists_tree("run/peaks-ab")

    def test_delete_tree_removes_the_tree_only(self, backend: Backend) -> None:
        backend.write("run/a/x", [b"1"])
        backend.write("run/a/sub/y", [b"2"])
        backend.write("run/ab/z", [b"3"])  # shares the prefix as a string, not as a path
        backend.delete_tree("run/a")
        backend.delete_tree("run/a")
        backend.delete_tree("never/there")
        assert backend.read("run/a/x") is None and backend.read("run/a/sub/y") is None
        assert not backend.exists_tree("run/a")
        assert backend.read("run/ab/z") == b"3"

    def test_rename_tree_where_supported(self, backend: Backend) -> None:
        backend.write("run/.tmp-a/x", [b"1"])
        backend.write("run/.tmp-a/sub/y", [b"2"])
        if not backend.supports_rename:
            with pytest.raises(NotImplementedError):
                backend.rename_tree("run/.tmp-a", "run/a")
            return
        backend.rename_tree("run/.tmp-a", "run/a")
        assert backend.read("run/a/sub/y") == b"2"
        assert not backend.exists_tree("run/.tmp-a")
        backend.write("run/b/x", [b"other"])
        with pytest.raises(OSError):  # never clobbers a non-empty target
            backend.rename_tree("run/a", "run/b")
        assert backend.read("run/b/x") == b"other" and backend.read("run/a/x") == b"1"
        with pytest.raises(FileNotFoundError):
            backend.rename_tree("run/missing", "run/c")

    def test_mtime_and_touch(self, backend: Backend) -> None:
        assert backend.mtime("run/missing") is None
        backend.touch("run/missing")  # no error, creates nothing
        assert backend.read("run/missing") is None
        backend.write("run/claim", [b"{}"])
        first = backend.mtime("run/claim")
        if not backend.has_mtime:
            assert first is None
            backend.touch("run/claim")
            return
        assert first is not None and abs(first - time.time()) < 60
        time.sleep(0.02)
        backend.touch("run/claim")
        second = backend.mtime("run/claim")
        assert second is not None and second > first
        assert backend.read("run/claim") == b"{}"

    def test_symlink_under_a_clean_tree_is_none(self, backend: Backend) -> None:
        backend.write("run/peaks-abc/zarr.json", [b"{}"])
        assert backend.symlink_under("run/peaks-abc") is None

    # ---------------------------------------------------------------- safety
    @pytest.mark.parametrize("key", UNSAFE_KEYS)
    def test_unsafe_keys_are_refused(self, backend: Backend, key: str) -> None:
        with pytest.raises(UnsafePath):
            backend.read(key)
        with pytest.raises(UnsafePath):
            backend.write(key, [b"x"])
        with pytest.raises(UnsafePath):
            backend.children(key)
        with pytest.raises(UnsafePath):
            backend.delete_tree(key)
        assert backend.children("") == []

    # ---------------------------------------------------------------- what the store builds on
    def test_zarr_store_sees_what_the_backend_wrote(self, backend: Backend) -> None:
        group = zarr.open_group(backend.zarr_store, path="run", mode="w")
        group.attrs["hello"] = "world"
        assert backend.read("run/zarr.json") is not None
        backend.write_atomic("run/zarr.json", b'{"zarr_format": 3, "node_type": "group"}')
        assert dict(zarr.open_group(backend.zarr_store, path="run", mode="r").attrs) == {}

    def test_a_read_beyond_its_limit_is_refused_naming_the_object(self, backend: Backend) -> None:
        backend.write("run/peaks-abc/big", [b"x" * 1000])
        too_big = r"big( in store .*)? holds 1000 bytes, more than the 999"
        with pytest.raises(BadObject, match=too_big):
            backend.read("run/peaks-abc/big", limit=999)
        assert backend.read("run/peaks-abc/big", limit=1000) == b"x" * 1000
        assert backend.read("run/peaks-abc/missing", limit=10) is None

    def test_claims_are_exclusive(self, backend: Backend) -> None:
        key = DataKey("run_1", "peaks", "abc234def")
        claims = Claims(backend)
        claim = claims.claim(key)
        assert claim is not None
        holder = claims.holder(key)
        assert holder is not None and holder.ours and not holder.stale
        assert claims.claim(key) is None
        claim.refresh()
        assert claim.held()
        claim.release()
        assert claims.holder(key) is None
        again = claims.claim(key)
        assert again is not None
        again.release()

    def test_concurrent_exclusive_creates_have_one_winner(self, backend: Backend) -> None:
        if backend.claims_kept != "file" or backend.in_place:
            pytest.skip("exclusive create is atomic only on local files (memory: see claims)")
        wins: list[bool] = []
        barrier = threading.Barrier(8)

        def race(i: int) -> None:
            barrier.wait()
            wins.append(backend.create_exclusive("run/.claim-race", str(i).encode()))

        threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert wins.count(True) == 1

    def test_a_store_round_trips_a_data_set(self, backend: Backend) -> None:
        store = Store(backend, rows_per_chunk=3)
        key = DataKey("run_1", "pulses", "abc234def")
        rows = np.zeros(10, DT)
        rows["time"] = np.arange(10) * 100
        rows["endtime"] = rows["time"] + 10
        rows["value"] = np.arange(10)
        chunks = [Chunk(0, 500, rows[:5]), Chunk(500, 1000, rows[5:])]
        store.saver(key, DT, {"plugin": "Test"}).save_from(chunks)
        assert store.status(key) == "complete"
        info = store.find(key)
        assert info is not None and info.n_rows == 10
        assert [i.key for i in store.list()] == [key]
        np.testing.assert_array_equal(store.load_array(key, info=info), rows)
        assert [len(c) for c in store.load(key)] == [5, 5]
        store.remove(key)
        assert store.status(key) == "absent"


class TestLocalBackend(BackendTests):
    def make(self, tmp_path: Path) -> Backend:
        return LocalBackend(tmp_path / "store")

    def test_a_symbolic_link_is_found_and_never_followed(self, tmp_path: Path) -> None:
        backend = self.make(tmp_path)
        backend.write("run/peaks-abc/zarr.json", [b"{}"])
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "secret").write_bytes(b"secret")
        (tmp_path / "store" / "run" / "peaks-abc" / "link").symlink_to(outside)
        assert backend.symlink_under("run/peaks-abc") == str(
            tmp_path / "store" / "run" / "peaks-abc" / "link"
        )
        with pytest.raises(UnsafePath):
            backend.read("run/peaks-abc/link/secret")
        backend.delete_tree("run/peaks-abc")
        assert (outside / "secret").read_bytes() == b"secret"


class TestZarrMemoryBackend(BackendTests):
    def make(self, tmp_path: Path) -> Backend:
        return ZarrBackend(MemoryStore(), "memory://conformance")


class TestFsspecLocalBackend(BackendTests):
    def make(self, tmp_path: Path) -> Backend:
        url = f"file://{tmp_path / 'store'}"
        store = FsspecStore.from_url(url, storage_options={"auto_mkdir": True})
        return ZarrBackend(store, url)


class TestFsspecMemoryBackend(BackendTests):
    def make(self, tmp_path: Path) -> Backend:
        url = f"memory://conformance-{uuid.uuid4().hex}"
        return ZarrBackend(FsspecStore.from_url(url), url)

    def test_an_oversized_object_is_refused_before_it_is_downloaded(self, tmp_path: Path) -> None:
        """An object store tells an object's size without sending it: a huge (damaged or
        planted) ``zarr.json`` is refused without the download."""
        url = f"memory://counting-{uuid.uuid4().hex}"
        store = FsspecStore.from_url(url)
        backend = ZarrBackend(store, url)
        backend.write("run/peaks-abc/big", [b"x" * 1000])
        downloads = []
        real_get = store.get

        async def counting_get(*args: Any, **kwargs: Any) -> Any:
            downloads.append(args[0])
            return await real_get(*args, **kwargs)

        store.get = counting_get  # type: ignore[method-assign]
        with pytest.raises(BadObject):
            backend.read("run/peaks-abc/big", limit=10)
        assert downloads == []
        assert backend.read("run/peaks-abc/big", limit=1000) == b"x" * 1000
        assert downloads == ["run/peaks-abc/big"]
