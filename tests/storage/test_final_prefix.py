"""The final prefix of a data set being written: records, watermark, prefix reads, resume.

Real stores in tmp_path; the killed writer is a real process killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from strax_storage import Chunk, DataKey, DataNotFound, open_store
from strax_storage.final_prefix import records_dir

DTYPE = np.dtype([("time", "<i8"), ("endtime", "<i8"), ("value", "<f8"), ("wf", "<i2", (3,))])
KEY = DataKey("run_1", "things", "abcdefgh2345")


def make_chunks(n: int, rows: int = 7, seed: int = 0) -> list[Chunk]:
    """Deterministic chunks of varying sizes, including empty ones."""
    rng = np.random.default_rng(seed)
    out, t = [], 0
    for i in range(n):
        k = 0 if i % 5 == 3 else int(rng.integers(1, 2 * rows))
        data = np.zeros(k, DTYPE)
        data["time"] = t + np.arange(k) * 10
        data["endtime"] = data["time"] + 5
        data["value"] = rng.normal(size=k)
        data["wf"] = rng.integers(-100, 100, size=(k, 3))
        out.append(Chunk(t, t + 10 * k + 10, data))
        t += 10 * k + 10
    return out


def files(root: Path) -> dict[str, bytes]:
    """Every file of the published data set, group attributes without per-write fields."""
    base = root / KEY.path
    out = {}
    for p in sorted(base.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p == base / "zarr.json":
                doc = json.loads(data)
                ours = doc["attributes"]["strax_decl"]
                for k in ("created", "finished", "writer", "write_id"):
                    ours.pop(k)
                data = json.dumps(doc, sort_keys=True).encode()
            out[str(p.relative_to(base))] = data
    return out


def test_watermark_follows_whole_zarr_chunks(tmp_path: Path) -> None:
    store = open_store(tmp_path, rows_per_chunk=10)
    chunks = make_chunks(30)
    saver = store.saver(KEY, DTYPE, {})
    sent_rows = 0
    for i, chunk in enumerate(chunks):
        saver.send(chunk)
        sent_rows += len(chunk)
        saver._reap(block=True)  # the writes of the pool are done
        saver._record_new()
        progress = store.progress(KEY)
        assert progress is not None and progress.writer_alive
        on_disk = (sent_rows // 10) * 10
        ends = np.cumsum([len(c) for c in chunks[: i + 1]])
        n_final = int(np.searchsorted(ends, on_disk, side="right"))
        assert progress.n_chunks == n_final
        got = list(store.load(KEY, allow_incomplete=True))
        assert [(c.start, c.end) for c in got] == [(c.start, c.end) for c in chunks[:n_final]]
        for a, b in zip(got, chunks, strict=False):
            assert a.data.tobytes() == b.data.tobytes()
        with pytest.raises(DataNotFound):
            store.load_array(KEY)  # a normal load accepts complete only
    saver.close()
    assert not (tmp_path / records_dir(KEY.path)).exists()
    assert store.progress(KEY) is None
    whole = np.concatenate([c.data for c in chunks])
    assert store.load_array(KEY, allow_incomplete=True).tobytes() == whole.tobytes()


def test_flush_every_chunk_makes_every_chunk_final(tmp_path: Path) -> None:
    store = open_store(tmp_path, rows_per_chunk=50)
    chunks = make_chunks(20)
    saver = store.saver(KEY, DTYPE, {}, flush_every=0)
    for i, chunk in enumerate(chunks):
        saver.send(chunk)
        progress = store.progress(KEY)
        assert progress is not None and progress.watermark == chunk.end
        got = store.load_array(KEY, allow_incomplete=True)
        want = np.concatenate([c.data for c in chunks[: i + 1]])
        assert got.tobytes() == want.tobytes()
        part = store.load_array(KEY, (chunks[0].end, chunk.end), allow_incomplete=True)
        assert len(part) == len(want) - len(chunks[0])
    tails = [n for n in os.listdir(tmp_path / "run_1") if n.startswith(".tmp-")]
    assert len(tails) == 1
    names = os.listdir(tmp_path / "run_1" / tails[0] / "_index" / "final")
    assert sum(n.startswith("tail-") for n in names) <= 2  # old tails are deleted
    saver.close()
    plain = open_store(tmp_path / "plain", rows_per_chunk=50)
    with plain.saver(KEY, DTYPE, {}) as other:
        for chunk in chunks:
            other.send(chunk)
    assert files(tmp_path) == files(tmp_path / "plain")


def test_recording_costs_constant_bytes_per_chunk(tmp_path: Path) -> None:
    """5,000 tiny chunks: the records grow linearly, never rewritten (no O(n) per chunk)."""
    store = open_store(tmp_path, rows_per_chunk=64)
    saver = store.saver(KEY, DTYPE, {})
    sizes = []
    for chunk in make_chunks(5000, rows=2):
        saver.send(chunk)
    saver._reap(block=True)
    saver._record_new()
    tmp = next(p for p in (tmp_path / "run_1").iterdir() if p.name.startswith(".tmp-"))
    for p in (tmp / "_index" / "final").iterdir():
        sizes.append(p.stat().st_size)
    assert sum(sizes) < 5000 * 60  # a record entry is ~20 bytes per chunk, ~40 per Zarr chunk
    assert max(sizes) < 4000  # each record holds only what changed
    saver.close()
    progress = store.progress(KEY)
    assert progress is None


KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from storage.test_final_prefix import DTYPE, KEY, make_chunks
    from strax_storage import open_store

    store = open_store({root!r}, rows_per_chunk={rpc})
    saver = store.saver(KEY, DTYPE, {{}}, flush_every={flush})
    for i, chunk in enumerate(make_chunks({n})):
        if i == {kill_at}:
            saver._reap(block=True)
            os.kill(os.getpid(), signal.SIGKILL)
        saver.send(chunk)
    """
)


def kill_writer(root: Path, kill_at: int, n: int, rpc: int, flush: float | None) -> None:
    code = KILLED_WRITER.format(
        tests=str(Path(__file__).parents[1]),
        root=str(root),
        rpc=rpc,
        n=n,
        kill_at=kill_at,
        flush=flush,
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()


@pytest.mark.parametrize(
    ("kill_at", "flush", "send_all"),
    [
        (13, None, True),
        (13, None, False),
        (21, 0, True),
        (22, 0, False),
        (1, 0, False),
    ],
)
def test_resume_after_sigkill_is_bit_identical(
    tmp_path: Path, kill_at: int, flush: float | None, send_all: bool
) -> None:
    n, rpc = 30, 10
    chunks = make_chunks(n)
    clean = open_store(tmp_path / "clean", rows_per_chunk=rpc)
    clean.saver(KEY, DTYPE, {}).save_from(chunks)
    root = tmp_path / "resumed"
    kill_writer(root, kill_at, n, rpc, flush)
    store = open_store(root, rows_per_chunk=rpc)
    progress = store.progress(KEY)
    assert progress is not None and not progress.writer_alive and progress.resumable
    assert store.status(KEY) == "failed"  # a dead writer's work: never loaded as complete
    # its final prefix is readable (e.g. by a monitor) and is a prefix of the clean result
    prefix = list(store.load(KEY, allow_incomplete=True))
    assert [(c.start, c.end) for c in prefix] == [(c.start, c.end) for c in chunks[: len(prefix)]]
    point = store.resume_point(KEY)
    assert point is not None and 0 < point.prefix.n_chunks <= kill_at
    if flush == 0:
        assert point.prefix.n_chunks >= kill_at - 1  # flushed: all but trailing empty chunks
    saver = store.saver(KEY, DTYPE, {}, resume=point)
    rest = chunks if send_all else [c for c in chunks if c.start >= point.watermark]
    assert saver.save_from(rest).complete
    assert files(root) == files(tmp_path / "clean")
    assert store.load_array(KEY).tobytes() == clean.load_array(KEY).tobytes()
    assert [n for n in os.listdir(root / "run_1") if n.startswith(".")] == []


def test_resume_refuses_other_chunks(tmp_path: Path) -> None:
    chunks = make_chunks(30)
    kill_writer(tmp_path, 20, 30, 10, 0)
    store = open_store(tmp_path, rows_per_chunk=10)
    point = store.resume_point(KEY)
    assert point is not None
    saver = store.saver(KEY, DTYPE, {}, resume=point)
    other = make_chunks(30, seed=1)
    with pytest.raises(Exception, match="does not make the chunks it made before"):
        saver.send(other[0] if other[0].end != chunks[0].end else other[1])
    assert store.status(KEY) == "failed"


def test_claiming_keeps_only_what_is_resumed(tmp_path: Path) -> None:
    kill_writer(tmp_path, 20, 30, 10, None)
    store = open_store(tmp_path, rows_per_chunk=10)
    point = store.resume_point(KEY)
    assert point is not None
    claims, refused = store.claim_all([KEY], keep=[point.path])
    assert refused is None and (tmp_path / point.path).exists()
    claims[0].release()
    claim = store.claim(KEY)  # a writer that does not resume cleans the dead writer's work
    assert claim is not None and not (tmp_path / point.path).exists()
    claim.release()


@pytest.mark.parametrize("where", ["local", "memory"])
@pytest.mark.parametrize("k", [1, 4, 13, 17])
def test_a_suspended_write_is_partial_and_resumes_bit_identical(
    tmp_path: Path, where: str, k: int
) -> None:
    """``suspend`` (a run stopped on purpose): every chunk sent becomes final (the rows
    after the last whole Zarr chunk in a tail), the data set is ``partial`` (not failed,
    not written by anyone, never loaded whole) and a later writer resumes it."""
    n, rpc = 30, 10
    chunks = make_chunks(n)
    clean = open_store(tmp_path / "clean", rows_per_chunk=rpc)
    clean.saver(KEY, DTYPE, {}).save_from(chunks)
    url = str(tmp_path / "s") if where == "local" else f"memory://suspend-{k}-{tmp_path.name}"
    store = open_store(url, rows_per_chunk=rpc)
    saver = store.saver(KEY, DTYPE, {})
    for chunk in chunks[:k]:
        saver.send(chunk)
    assert saver.suspend() and saver.closed and saver.suspend()  # idempotent
    assert store.status(KEY) == "partial" and store.find(KEY) is None
    with pytest.raises(DataNotFound):
        store.load_array(KEY)  # a normal read never loads it
    progress = store.progress(KEY)
    assert progress is not None and progress.status == "partial"
    assert progress.resumable and not progress.writer_alive
    assert progress.n_chunks == k and progress.watermark == chunks[k - 1].end  # all sent
    prefix = list(store.load(KEY, allow_incomplete=True))
    assert [(c.start, c.end, len(c.data)) for c in prefix] == [
        (c.start, c.end, len(c.data)) for c in chunks[:k]
    ]
    assert store.claims.holder(KEY) is None  # released
    point = store.resume_point(KEY)
    assert point is not None
    resumed = store.saver(KEY, DTYPE, {}, resume=point)
    assert resumed.save_from(chunks).complete
    assert store.load_array(KEY).tobytes() == clean.load_array(KEY).tobytes()
    if where == "local":
        assert files(tmp_path / "s") == files(tmp_path / "clean")
        assert [n for n in os.listdir(tmp_path / "s" / "run_1") if n.startswith(".")] == []


def test_suspending_with_nothing_sent_discards(tmp_path: Path) -> None:
    store = open_store(tmp_path, rows_per_chunk=10)
    assert not store.saver(KEY, DTYPE, {}).suspend()
    assert store.status(KEY) == "absent" and store.progress(KEY) is None


def test_a_partial_is_removed_by_remove_and_by_the_next_claimant(tmp_path: Path) -> None:
    """A partial is nobody's work, even in the process that wrote it: ``remove`` deletes
    it, and so does the next writer that claims the key without resuming it."""
    store = open_store(tmp_path, rows_per_chunk=10)
    for how in ("remove", "claim"):
        saver = store.saver(KEY, DTYPE, {})
        for chunk in make_chunks(5):
            saver.send(chunk)
        assert saver.suspend() and store.status(KEY) == "partial"
        if how == "remove":
            store.remove(KEY)
        else:
            claim = store.claim(KEY)
            assert claim is not None
            claim.release()
        assert store.status(KEY) == "absent", how
        assert [n for n in os.listdir(tmp_path / "run_1") if n.startswith(".")] == []


def test_a_reader_never_sees_the_prefix_shrink_while_it_is_published(tmp_path: Path) -> None:
    """Closing marks the data set complete, then drops its records one file at a time, then
    renames it. A reader between those steps must not take the remaining records for a
    (shorter) final prefix: it sees none, and waits for the published data set."""
    store = open_store(tmp_path, rows_per_chunk=10)
    chunks = make_chunks(20)
    saver = store.saver(KEY, DTYPE, {}, flush_every=0)
    for chunk in chunks:
        saver.send(chunk)
    progress = store.progress(KEY)
    assert progress is not None and progress.n_chunks == len(chunks)
    # the first steps of Saver._close, up to dropping the records (stopped half-way)
    saver._write_index()
    saver._write_array_metadata()
    saver._write_group_attrs("complete")
    tmp = next(p for p in (tmp_path / "run_1").iterdir() if p.name.startswith(".tmp-"))
    records = sorted((tmp / "_index" / "final").glob("*.json"))
    for late in records[len(records) // 2 :]:
        late.unlink()
    stale = progress.info  # a reader that read the attributes before they said complete
    from strax_storage import partial

    assert partial.progress(store.backend, stale) is None
    assert store.progress(KEY) is None
    saver.close()  # drops the rest, publishes
    whole = np.concatenate([c.data for c in chunks])
    assert store.load_array(KEY, allow_incomplete=True).tobytes() == whole.tobytes()


@pytest.mark.parametrize(("written", "resumed"), [(10, 64), (64, 10), (10, None)])
def test_a_resumed_write_keeps_the_layout_it_was_started_with(
    tmp_path: Path, written: int, resumed: int | None
) -> None:
    """The store resuming may be opened with another ``rows_per_chunk`` or zstd level than
    the one that started the write: the resumed data set keeps the first writer's layout
    (one data set, one layout), and is bit-identical to a write in one go with it."""
    chunks = make_chunks(30)
    clean = open_store(tmp_path / "clean", rows_per_chunk=written, zstd_level=3)
    clean.saver(KEY, DTYPE, {}).save_from(chunks)
    first = open_store(tmp_path / "s", rows_per_chunk=written, zstd_level=3)
    saver = first.saver(KEY, DTYPE, {})
    for chunk in chunks[:17]:
        saver.send(chunk)
    assert saver.suspend()
    other = open_store(tmp_path / "s", rows_per_chunk=resumed, zstd_level=7)
    point = other.resume_point(KEY)
    assert point is not None and point.rows_per_chunk == written and point.level == 3
    assert other.saver(KEY, DTYPE, {}, resume=point).save_from(chunks).complete
    assert other.load_array(KEY).tobytes() == clean.load_array(KEY).tobytes()
    assert files(tmp_path / "s") == files(tmp_path / "clean")


def prefix_reader_after(store: Any, chunks: list[Chunk]) -> tuple[Any, Any, Any]:
    """A saver (``flush_every=0``) that sent ``chunks``, its final prefix (with a tail) and a
    reader holding that prefix."""
    from strax_storage import partial

    saver = store.saver(KEY, DTYPE, {}, flush_every=0)
    for chunk in chunks:
        saver.send(chunk)
    found = partial.find_prefix(store.backend, KEY)
    assert found is not None and found.prefix.tail is not None
    return saver, found, partial.PrefixReader(store.backend, KEY, found)


def test_a_reader_whose_tail_was_replaced_waits_out_a_publish_that_tears_the_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader holds a prefix whose tail the writer has since replaced (it keeps the last
    two), so it reads the records again, and the writer publishes just then: the records it
    reads are half dropped. That is a publish under way, not a shorter prefix (nor a
    corrupted data set): the reader waits and reads the published rows (seen in CI)."""
    from strax_storage import partial

    store = open_store(tmp_path, rows_per_chunk=10)
    chunks = make_chunks(12, rows=3, seed=4)
    saver, found, reader = prefix_reader_after(store, chunks[:8])
    for chunk in chunks[8:]:  # two newer tails at least: the reader's tail file is deleted
        saver.send(chunk)
    tmp = next(p for p in (tmp_path / "run_1").iterdir() if p.name.startswith(".tmp-"))
    assert not (tmp / "_index" / "final" / str(found.prefix.tail["key"])).exists()

    real = partial._being_published
    asked: list[bool] = []

    def publish_half_way_after_the_first_look(backend: object, path: str) -> bool:
        answer = real(backend, path)  # type: ignore[arg-type]
        asked.append(answer)
        if len(asked) == 1:  # Saver._close up to dropping the records, stopped half-way
            saver._write_index()
            saver._write_array_metadata()
            saver._write_group_attrs("complete")
            records = sorted((tmp / "_index" / "final").glob("*.json"))
            # the records left end with one of whole Zarr chunks only (no tail)
            keep = next(i for i, r in enumerate(records) if not json.loads(r.read_text())["tail"])
            assert keep < len(records) - 1
            for late in records[keep + 1 :]:
                late.unlink()
        elif len(asked) == 2:
            saver.close()
        return answer

    monkeypatch.setattr(partial, "_being_published", publish_half_way_after_the_first_look)
    got = np.concatenate([c.data for c in reader.chunks()])
    whole = np.concatenate([c.data for c in chunks[:8]])
    assert got.tobytes() == whole.tobytes()
    assert asked[:2] == [False, True]  # the second look, after the torn records, saw it


def test_a_reader_whose_tail_was_replaced_reports_a_discard_as_not_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, but the writer discards the data set: the records the reader reads again
    are half deleted (the attributes still say ``writing``). That is a removal under way:
    DataNotFound once it is gone, never DataCorrupted."""
    from strax_storage import partial

    store = open_store(tmp_path, rows_per_chunk=10)
    chunks = make_chunks(12, rows=3, seed=4)
    saver, _found, reader = prefix_reader_after(store, chunks[:8])
    for chunk in chunks[8:]:
        saver.send(chunk)
    tmp = next(p for p in (tmp_path / "run_1").iterdir() if p.name.startswith(".tmp-"))

    real = partial._being_published
    asked: list[bool] = []

    def discard_half_way_after_the_first_look(backend: object, path: str) -> bool:
        if len(asked) == 2:  # the look after the next: the rest is gone by now
            saver.discard()
        answer = real(backend, path)  # type: ignore[arg-type]
        asked.append(answer)
        if len(asked) == 1:  # deleting the records, stopped half-way
            records = sorted((tmp / "_index" / "final").glob("*.json"))
            keep = next(i for i, r in enumerate(records) if not json.loads(r.read_text())["tail"])
            for late in records[keep + 1 :]:
                late.unlink()
        return answer

    monkeypatch.setattr(partial, "_being_published", discard_half_way_after_the_first_look)
    with pytest.raises(DataNotFound, match="was moved"):
        list(reader.chunks())
    assert store.status(KEY) == "absent"


def test_a_reader_of_a_data_set_written_in_place_reports_its_removal_as_not_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A store without renames (``memory://``) writes in place: a data set removed while its
    final prefix is read has no temporary directory to miss, so the reader tells by the data
    set's attributes, gone: DataNotFound, not "the tail keeps being replaced" (DataCorrupted)
    after a second of retries. The removal is caught half-way: tail files gone first."""
    from strax_storage import partial
    from strax_storage.final_prefix import records_dir

    store = open_store("memory://prefix-in-place", rows_per_chunk=10)
    assert not store.backend.supports_rename
    chunks = make_chunks(12, rows=3, seed=4)
    saver, _found, reader = prefix_reader_after(store, chunks[:8])
    end = chunks[7].end
    for t in (end, end + 10, end + 20):  # empty chunks: new tails, Zarr chunk z stays partial
        saver.send(Chunk(t, t + 10, np.zeros(0, DTYPE)))

    real = partial._being_published
    asked: list[bool] = []

    def remove_half_way_then_wholly(backend: object, path: str) -> bool:
        if len(asked) == 0:  # the tail files go first
            tails = records_dir(KEY.path)
            for name in store.backend.children(tails):
                if not name.endswith(".json"):
                    store.backend.delete(f"{tails}/{name}")
        elif len(asked) == 1:
            saver.discard()
        answer = real(backend, path)  # type: ignore[arg-type]
        asked.append(answer)
        return answer

    monkeypatch.setattr(partial, "_being_published", remove_half_way_then_wholly)
    with pytest.raises(DataNotFound, match=r"removed|moved"):
        list(reader.chunks())
