"""Claims: one writer per data set; stale claims are broken; waiting for another writer."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import KEY, RECORDS, ROWS_PER_CHUNK, concat, make_chunks, save

from strax_storage import (
    ClaimHeld,
    ClaimTimeout,
    DataKey,
    DataNotFound,
    StorageError,
    Store,
    WriterGone,
    open_store,
)
from strax_storage.backend import LocalBackend
from strax_storage.claims import MAX_STALE_AFTER
from strax_storage.process import process_identity


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def claim_path(root: Path, key: DataKey = KEY) -> Path:
    return root / key.run_id / f".claim-{key.dirname}"


def write_claim(root: Path, key: DataKey = KEY, age: float = 0.0, **fields: object) -> Path:
    """A claim file as another process would have left it."""
    now = time.time()
    doc = {
        "format": "strax_decl.claim",
        "key": str(key),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "pid_start": None,
        "token": "f" * 32,
        "created": now - age,
        "heartbeat": now - age,
        **fields,
    }
    path = claim_path(root, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    os.utime(path, (now - age, now - age))
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "strax_data"


@pytest.fixture
def local(root: Path) -> Store:
    return open_store(root, rows_per_chunk=ROWS_PER_CHUNK)


# ---------------------------------------------------------------------------- basics


def test_a_claim_is_exclusive_until_released(store: Store) -> None:
    claim = store.claim(KEY)
    assert claim is not None and claim.held()
    assert store.claim(KEY) is None  # exclusive within one process too
    holder = store.claim_holder(KEY)
    assert holder is not None and holder.ours and not holder.stale
    assert holder.pid == os.getpid() and holder.token == claim.token
    claim.release()
    claim.release()  # idempotent
    assert not claim.held()
    assert store.claim_holder(KEY) is None
    with store.claim(KEY) as again:  # type: ignore[union-attr]
        assert again is not None and again.held()
    assert store.claim_holder(KEY) is None


def test_claims_of_different_keys_are_independent(store: Store) -> None:
    other = DataKey("run_1", "peaks", "abc234def")
    a, b = store.claim(KEY), store.claim(other)
    assert a is not None and b is not None
    a.release()
    b.release()


def test_the_local_claim_file_is_plain_json_next_to_the_data_set(local: Store, root: Path) -> None:
    claim = local.claim(KEY)
    assert claim is not None
    path = claim_path(root)
    assert claim.location == str(path)
    doc = json.loads(path.read_text())
    assert doc["format"] == "strax_decl.claim" and doc["key"] == str(KEY)
    me = process_identity()
    assert (doc["pid"], doc["host"], doc["pid_start"]) == (me["pid"], me["host"], me["pid_start"])
    assert isinstance(doc["created"], float) and doc["token"] == claim.token
    # never mistaken for a data set
    assert local.list() == [] and local.status(KEY) == "absent"
    claim.release()
    assert not path.exists()


def test_memory_stores_share_claims_by_name_only() -> None:
    a = open_store("memory://test_claims_shared")
    b = open_store("memory://test_claims_shared")
    claim = a.claim(KEY)
    assert claim is not None
    assert b.claim(KEY) is None
    assert open_store("memory://").claim(KEY) is not None  # another (anonymous) store
    claim.release()
    assert b.claim(KEY) is not None


def test_an_unreleased_claim_is_released_when_garbage_collected(store: Store) -> None:
    claim = store.claim(KEY)
    assert claim is not None
    del claim
    import gc

    gc.collect()
    assert store.claim_holder(KEY) is None


def test_readonly_stores_cannot_be_claimed(root: Path) -> None:
    with pytest.raises(StorageError, match="read-only"):
        open_store(root, readonly=True).claim(KEY)


def test_claims_on_fsspec_stores_work_best_effort(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/fs")
    claim = store.claim(KEY)
    assert claim is not None
    assert store.claim(KEY) is None
    claim.refresh()  # rewrites the heartbeat field
    holder = store.claim_holder(KEY)
    assert holder is not None and not holder.stale
    claim.release()
    assert store.claim_holder(KEY) is None


# ---------------------------------------------------------------------------- stale claims


def test_a_claim_of_a_dead_process_is_broken(local: Store, root: Path) -> None:
    write_claim(root, pid=dead_pid())
    holder = local.claim_holder(KEY)
    assert holder is not None and holder.stale and "is not running" in holder.why_stale
    claim = local.claim(KEY)
    assert claim is not None and claim.held()
    claim.release()


def test_a_claim_whose_pid_was_reused_is_broken(local: Store, root: Path) -> None:
    me = process_identity()
    if me["pid_start"] is None:
        pytest.skip("no /proc: process start times unknown")
    write_claim(root, pid=os.getpid(), pid_start=me["pid_start"] - 1)
    holder = local.claim_holder(KEY)
    assert holder is not None and holder.stale


def test_claims_of_other_hosts_are_stale_only_without_heartbeat(root: Path) -> None:
    store = open_store(root, claim_stale_after=60)
    write_claim(root, host="elsewhere", pid=1, age=10)
    holder = store.claim_holder(KEY)
    assert holder is not None and not holder.stale
    assert store.claim(KEY) is None
    write_claim(root, host="elsewhere", pid=1, age=120)
    holder = store.claim_holder(KEY)
    assert holder is not None and holder.stale and "no heartbeat for" in holder.why_stale
    claim = store.claim(KEY)
    assert claim is not None
    claim.release()


def test_the_heartbeat_keeps_a_claim_fresh(root: Path) -> None:
    store = open_store(root, claim_stale_after=0.5)
    claim = store.claim(KEY)
    assert claim is not None
    old = time.time() - 100
    os.utime(claim_path(root), (old, old))  # as if the last heartbeat was long ago
    time.sleep(0.4)
    holder = store.claim_holder(KEY)
    assert holder is not None and not holder.stale, holder
    assert claim_path(root).stat().st_mtime > old + 50
    claim.release()


def test_unreadable_claim_files_are_stale_after_a_grace_period(local: Store, root: Path) -> None:
    path = claim_path(root)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00garbage")
    holder = local.claim_holder(KEY)
    assert holder is not None and not holder.stale  # its writer may be filling it in
    assert local.claim(KEY) is None
    old = time.time() - 60
    os.utime(path, (old, old))
    claim = local.claim(KEY)
    assert claim is not None
    claim.release()


def test_a_leftover_break_lock_does_not_block_forever(local: Store, root: Path) -> None:
    write_claim(root, pid=dead_pid())
    lock = root / "run_1" / f".claim-{KEY.dirname}.break"
    lock.write_text("{}")
    assert local.claim(KEY) is None  # someone is breaking it right now
    old = time.time() - 60
    os.utime(lock, (old, old))
    claim = local.claim(KEY)
    assert claim is not None
    claim.release()
    assert sorted(os.listdir(root / "run_1")) == []


def test_threads_racing_for_one_claim_get_it_once(local: Store) -> None:
    won: list[object] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        claim = local.claim(KEY)
        if claim is not None:
            won.append(claim)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1


# ---------------------------------------------------------------------------- waiting


def test_wait_complete_returns_once_the_holder_completes(store: Store) -> None:
    claim = store.claim(KEY)
    assert claim is not None
    chunks = make_chunks(RECORDS, [4, 5])

    def writer() -> None:
        time.sleep(0.2)
        save(store, chunks)  # this process holds the claim: the saver does not claim again
        claim.release()

    t = threading.Thread(target=writer)
    t.start()
    info = store.wait_complete(KEY, timeout=30, poll=0.02)
    t.join()
    assert info.complete and info.n_rows == 9
    np.testing.assert_array_equal(store.load_array(KEY), concat(chunks, RECORDS))


def test_wait_complete_raises_when_the_holder_gives_up(store: Store) -> None:
    claim = store.claim(KEY)
    assert claim is not None
    threading.Timer(0.1, claim.release).start()
    with pytest.raises(WriterGone, match=r"run_1/records-abc234def .* is absent.*claim it"):
        store.wait_complete(KEY, timeout=30, poll=0.02)
    assert store.claim(KEY) is not None  # the waiter may now claim it


def test_wait_complete_reports_a_failed_writer(store: Store) -> None:
    saver = store.saver(KEY, RECORDS, {})
    saver.fail(RuntimeError("the plugin broke"))
    with pytest.raises(WriterGone, match="is failed: RuntimeError: the plugin broke"):
        store.wait_complete(KEY, timeout=5)


def test_wait_complete_times_out(store: Store) -> None:
    claim = store.claim(KEY)
    assert claim is not None
    t0 = time.monotonic()
    with pytest.raises(ClaimTimeout, match=r"still being written by pid \d+") as err:
        store.wait_complete(KEY, timeout=0.2, poll=0.05)
    assert isinstance(err.value, TimeoutError) and err.value.key == KEY
    assert 0.15 < time.monotonic() - t0 < 5
    claim.release()
    with pytest.raises(ValueError, match="timeout"):
        store.wait_complete(KEY, timeout=-1)


def test_wait_complete_of_stored_data_returns_at_once(store: Store) -> None:
    save(store, make_chunks(RECORDS, [3]))
    assert store.wait_complete(KEY, timeout=0).n_rows == 3


# ---------------------------------------------------------------------------- savers and claims


def test_a_saver_holds_the_claim_while_it_writes(store: Store) -> None:
    saver = store.saver(KEY, RECORDS, {})
    holder = store.claim_holder(KEY)
    assert holder is not None and holder.ours
    assert store.claim(KEY) is None
    saver.save_from(make_chunks(RECORDS, [3]))
    assert store.claim_holder(KEY) is None
    failing = store.saver(DataKey("run_1", "peaks", "abc"), RECORDS, {})
    failing.fail(RuntimeError("x"))
    assert store.claim_holder(DataKey("run_1", "peaks", "abc")) is None


def test_a_saver_refuses_a_key_another_process_claimed(local: Store, root: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        write_claim(root, pid=sleeper.pid)
        with pytest.raises(ClaimHeld, match=rf"cannot write data set {KEY}: it is claimed by pid"):
            local.saver(KEY, RECORDS, {})
        assert local.status(KEY) == "absent"
        # the escape hatch for a claim held on this writer's behalf elsewhere
        local.saver(KEY, RECORDS, {}, check_claim=False).save_from(make_chunks(RECORDS, [2]))
        assert local.status(KEY) == "complete"
    finally:
        sleeper.kill()
        sleeper.wait()


# ---------------------------------------------------------------------------- leftovers


def killed_writer_leftover(local: Store, root: Path) -> Path:
    """A temporary directory whose writer (a process that no longer runs) was killed."""
    saver = local.saver(KEY, RECORDS, {})
    saver.send(make_chunks(RECORDS, [9])[0])
    saver._reap(block=True)  # its chunk writes are done: it is "killed" now, not mid-write
    run_dir = root / "run_1"
    [tmp] = [run_dir / n for n in os.listdir(run_dir) if n.startswith(".tmp-")]
    doc = json.loads((tmp / "zarr.json").read_text())
    doc["attributes"]["strax_decl"]["writer"]["pid"] = dead_pid()
    (tmp / "zarr.json").write_text(json.dumps(doc))
    saver._claim.release()  # type: ignore[union-attr]  # as if its process was killed
    saver._state = "killed"
    return tmp


def test_a_killed_writers_data_set_is_failed_and_never_loaded(local: Store, root: Path) -> None:
    tmp = killed_writer_leftover(local, root)
    assert local.status(KEY) == "failed"
    [info] = local.list()
    assert info.status == "failed" and "stopped before finishing" in (info.exception or "")
    assert info.location == str(tmp)
    with pytest.raises(DataNotFound):
        local.load_array(KEY)
    with pytest.raises(WriterGone):
        local.wait_complete(KEY, timeout=1)


class RecordingBackend(LocalBackend):
    """A local backend that records renames and deletions (real files underneath)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: list[tuple[str, ...]] = []

    def rename_tree(self, src: str, dst: str) -> None:
        self.calls.append(("rename", src, dst))
        super().rename_tree(src, dst)

    def delete_tree(self, prefix: str) -> None:
        self.calls.append(("delete", prefix))
        super().delete_tree(prefix)


def test_a_leftover_is_moved_aside_before_it_is_deleted(local: Store, root: Path) -> None:
    """The leftover vanishes from its name at once: a paused writer of it that resumes finds
    no half-deleted directory to write into."""
    tmp = killed_writer_leftover(local, root)
    backend = RecordingBackend(root)
    claims, refused = Store(backend, rows_per_chunk=ROWS_PER_CHUNK).claim_all([KEY])
    assert refused is None
    for claim in claims:
        claim.release()
    name = f"run_1/{tmp.name}"
    [(_, _, dst)] = [c for c in backend.calls if c[0] == "rename" and c[1] == name]
    assert ".trash-" in dst and ("delete", dst) in backend.calls
    assert ("delete", name) not in backend.calls and not tmp.exists()


def test_the_next_writer_deletes_a_killed_writers_leftovers(local: Store, root: Path) -> None:
    tmp = killed_writer_leftover(local, root)
    trash = root / "run_1" / f".trash-{KEY.dirname}-0123456789ab"
    trash.mkdir()
    save(local, make_chunks(RECORDS, [2]))
    assert not tmp.exists() and not trash.exists()
    assert [i.status for i in local.list()] == ["complete"]


def test_remove_deletes_a_killed_writers_leftovers(local: Store, root: Path) -> None:
    tmp = killed_writer_leftover(local, root)
    local.remove(KEY)
    assert not tmp.exists()
    assert local.status(KEY) == "absent"
    with pytest.raises(DataNotFound):
        local.remove(KEY)


def test_remove_leaves_a_live_writer_alone(store: Store) -> None:
    """Locally the writer works under a temporary name, in memory in place: both are kept."""
    saver = store.saver(KEY, RECORDS, {})
    saver.send(make_chunks(RECORDS, [3])[0])
    with pytest.raises(ClaimHeld, match=rf"being written by pid {os.getpid()} .*not removed"):
        store.remove(KEY)
    assert store.remove_failed(KEY) is False
    saver.close()
    assert store.status(KEY) == "complete" and store.load_array(KEY).size == 3
    store.remove(KEY)
    assert store.status(KEY) == "absent"


_KILLED_OVERWRITE = """
import os, sys
import numpy as np
from strax_storage import Chunk, DataKey, open_store

store = open_store(sys.argv[1], rows_per_chunk=int(sys.argv[2]))
dtype = np.dtype(eval(sys.argv[3]))
saver = store.saver(DataKey(*sys.argv[4:7]), dtype, {}, overwrite=True)
saver.send(Chunk(0, 10, np.zeros(0, dtype)))
os._exit(9)  # killed mid-write
"""


KEY_PARTS = [KEY.run_id, KEY.data_type, KEY.lineage_hash]


def test_remove_failed_keeps_the_complete_data_set_a_killed_overwrite_left(
    local: Store, root: Path
) -> None:
    chunks = make_chunks(RECORDS, [3, 4])
    save(local, chunks)
    argv = [str(root), str(ROWS_PER_CHUNK), repr(RECORDS.descr), *KEY_PARTS]
    killed = subprocess.run([sys.executable, "-c", _KILLED_OVERWRITE, *argv], check=False)
    assert killed.returncode == 9
    assert sorted(i.status for i in local.list()) == ["complete", "failed"]

    assert local.remove_failed(KEY) is True
    assert [i.status for i in local.list()] == ["complete"]
    np.testing.assert_array_equal(local.load_array(KEY), concat(chunks, RECORDS))
    assert sorted(p.name for p in (root / KEY.run_id).iterdir()) == [KEY.dirname, "zarr.json"]


def test_mark_failed(store: Store) -> None:
    save(store, make_chunks(RECORDS, [3]))
    info = store.info(KEY)
    assert not store.mark_failed(KEY, "nope", created="1999-01-01")
    assert store.mark_failed(KEY, "DataCorrupted: test", created=info.created)
    assert store.status(KEY) == "failed"
    assert store.info(KEY).exception == "DataCorrupted: test"
    save(store, make_chunks(RECORDS, [4]))  # replaced by the next writer
    assert store.load_array(KEY).size == 4
    with pytest.raises(DataNotFound):
        store.mark_failed(DataKey("run_9", "records", "abc"), "x")


def test_a_forked_child_never_releases_its_parents_claim(local: Store) -> None:
    claim = local.claim(KEY)
    assert claim is not None
    pid = os.fork()
    if pid == 0:  # the child exits normally: finalizers run, and must leave the claim alone
        claim.release()
        os._exit(0)
    os.waitpid(pid, 0)
    import gc

    gc.collect()
    assert claim.held()
    holder = local.claim_holder(KEY)
    assert holder is not None and holder.ours
    claim.release()


def test_a_claim_is_judged_by_its_holders_own_limit(root: Path) -> None:
    # The holder beats every fifth of *its* limit; a store opened with a shorter one must
    # not break it between beats, and a store with a longer one must not trust it forever.
    patient = open_store(root, claim_stale_after=3600)
    hasty = open_store(root, claim_stale_after=60)
    write_claim(root, host="elsewhere", pid=1, age=700, stale_after=3600.0)
    for store in (patient, hasty):
        holder = store.claim_holder(KEY)
        assert holder is not None and not holder.stale
        assert store.claim(KEY) is None
    write_claim(root, host="elsewhere", pid=1, age=120, stale_after=100.0)
    holder = patient.claim_holder(KEY)
    assert holder is not None and holder.stale and "limit 100 s" in holder.why_stale
    claim = patient.claim(KEY)
    assert claim is not None
    assert json.loads(claim_path(root).read_text())["stale_after"] == 3600.0
    claim.release()


def test_a_recorded_limit_is_believed_only_up_to_a_day(root: Path) -> None:
    # a corrupt or hostile claim file must not keep a dead writer's claim alive for ever
    store = open_store(root)
    write_claim(root, host="elsewhere", pid=1, age=MAX_STALE_AFTER + 10, stale_after=1e300)
    holder = store.claim_holder(KEY)
    assert holder is not None and holder.stale and "limit 86400 s" in holder.why_stale
    for garbage in (-5, float("nan"), "600", True):
        write_claim(root, host="elsewhere", pid=1, age=700, stale_after=garbage)
        holder = store.claim_holder(KEY)  # falls back to this store's 600 s
        assert holder is not None and holder.stale and "limit 600 s" in holder.why_stale
    for bad in (0, -1, MAX_STALE_AFTER * 2, float("inf"), "60"):
        with pytest.raises(ValueError, match="stale_after must be a number of seconds"):
            open_store(root, claim_stale_after=bad)
        with pytest.raises(ValueError, match="stale_after must be a number of seconds"):
            store.claim(KEY, stale_after=bad)
