"""The commands that read a store (no plugins needed): ``ls``, ``info``, ``rm``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from strax_decl.cli.common import UsageError, check_run_id, open_existing_store
from strax_decl.cli.formatting import created, format_bytes, lineage_lines, ratio, table

if TYPE_CHECKING:  # pragma: no cover - strax_storage is imported when a command runs
    from strax_storage import DataSetInfo, Store
    from strax_storage.partial import WriteProgress

__all__ = ["cmd_info", "cmd_ls", "cmd_rm"]


def cmd_ls(args: argparse.Namespace) -> int:
    if "://" not in args.storage and not Path(args.storage).is_dir():
        # reading never creates a store: a missing directory is an empty store
        if getattr(args, "json", False):
            print("[]")
        print(f"no data sets in {args.storage} (the directory does not exist)", file=sys.stderr)
        return 0
    from strax_storage import DataNotFound, validate_name

    store = open_existing_store(args)
    run_id = check_run_id(args.run) if args.run else None
    data_type = args.data_type
    if data_type is not None:
        try:
            validate_name("data_type", data_type)
        except ValueError as e:
            raise UsageError(str(e)) from None
    infos = store.list(run_id=run_id, data_type=data_type)
    if args.status:
        infos = [i for i in infos if i.status == args.status]
    if not infos:
        if run_id is not None or data_type is not None:
            what = " and ".join(
                w
                for w in (
                    f"run {run_id!r}" if run_id is not None else "",
                    f"data type {data_type!r}" if data_type is not None else "",
                )
                if w
            )
            status = f" with status {args.status}" if args.status else ""
            raise DataNotFound(f"no data sets for {what}{status} in {store.url}")
        if getattr(args, "json", False):
            print("[]")
        print(f"no data sets in {store.url}", file=sys.stderr)
        return 0
    progress = {i.location: _progress(store, i) for i in infos}
    if getattr(args, "json", False):
        print(json.dumps([_as_json(i, progress[i.location]) for i in infos], indent=2))
        return 0
    rows = [
        [
            i.key.run_id,
            i.key.data_type,
            i.key.lineage_hash,
            i.status,
            str(i.n_rows),
            str(i.n_chunks),
            format_bytes(i.stored_bytes),
            ratio(i),
            created(i),
            _final(progress[i.location]),
        ]
        for i in infos
    ]
    header = [
        "run",
        "data type",
        "lineage",
        "status",
        "rows",
        "chunks",
        "on disk",
        "ratio",
        "created",
        "final up to (writer)",
    ]
    if all(p is None for p in progress.values()):  # all complete: no watermark column
        header, rows = header[:-1], [r[:-1] for r in rows]
    print(table(header, rows, {4, 5, 6, 7}))
    return 0


def _progress(store: Store, info: DataSetInfo) -> WriteProgress | None:
    """The final prefix of a data set that is not complete (None: complete, or none)."""
    if info.status == "complete":
        return None
    from strax_storage.partial import progress  # the reader (numba, zarr): only when needed

    return progress(store.backend, info)


def _final(p: WriteProgress | None) -> str:
    """The watermark column: final chunks, the time they reach, the writer's state."""
    if p is None:
        return "-"
    writer = "alive" if p.writer_alive else "dead, resumable" if p.resumable else "dead"
    if p.status == "partial":  # stopped on purpose: nobody writes it, the rerun resumes it
        writer = "stopped, resumable" if p.resumable else "stopped"
    mark = "nothing final" if p.watermark is None else f"{p.watermark} ns"
    return f"{mark}, {p.n_chunks} chunks, {p.n_rows} rows ({writer})"


def _as_json(info: DataSetInfo, p: WriteProgress | None = None) -> dict[str, object]:
    """One data set of ``ls --json``: the columns of the table, as numbers where they are."""
    meta = info.metadata
    live = {}
    if p is not None:
        live = {
            "watermark": p.watermark,
            "final_chunks": p.n_chunks,
            "final_rows": p.n_rows,
            "writer_alive": p.writer_alive,
            "resumable": p.resumable,
        }
    return {
        **live,
        "run_id": info.key.run_id,
        "data_type": info.key.data_type,
        "lineage_hash": info.key.lineage_hash,
        "status": info.status,
        "rows": info.n_rows,
        "chunks": info.n_chunks,
        "start": info.start,
        "end": info.end,
        "nbytes": info.nbytes,
        "stored_bytes": info.stored_bytes,
        "plugin": meta.get("plugin"),
        "version": meta.get("version"),
        "created": info.created,
        "location": info.location,
    }


def _find_one(store: Store, run_id: str, data_type: str, prefix: str | None) -> DataSetInfo:
    infos = [
        i
        for i in store.list(run_id=run_id, data_type=data_type)
        if prefix is None or i.key.lineage_hash.startswith(prefix)
    ]
    if not infos:
        from strax_storage import DataNotFound

        what = f"run {run_id!r}, data type {data_type!r}" + (
            f", lineage hash {prefix}*" if prefix else ""
        )
        raise DataNotFound(f"no stored data set for {what} in {store.url}")
    hashes = sorted({i.key.lineage_hash for i in infos})
    if len(hashes) > 1:
        raise UsageError(
            f"{len(hashes)} data sets match run {run_id!r}, data type {data_type!r} "
            f"(lineage hashes {', '.join(hashes)}); give a hash prefix"
        )
    return infos[0]


def cmd_info(args: argparse.Namespace) -> int:
    store = open_existing_store(args)
    run_id = check_run_id(args.run)
    info = _find_one(store, run_id, args.data_type, args.hash)
    if args.json:
        print(json.dumps(info.attrs, indent=2, sort_keys=True))
        return 0
    meta = info.metadata
    lines = [
        f"data set   {info.key}",
        f"location   {info.location}",
        f"status     {info.status}",
    ]
    if info.exception:
        lines.append(f"exception  {_last_error(info.exception)}")
    p = _progress(store, info)
    if p is not None:
        lines.append(f"final      up to {_final(p)}")
    span = "-" if info.start is None else f"[{info.start}, {info.end}) ns"
    lines += [
        f"plugin     {meta.get('plugin', '-')} version {meta.get('version', '-')}",
        f"kind       {meta.get('data_kind', '-')}",
        f"rows       {info.n_rows} in {info.n_chunks} chunks, time span {span}",
        f"size       {format_bytes(info.nbytes)} uncompressed, "
        f"{format_bytes(info.stored_bytes)} on disk (ratio {ratio(info)})",
    ]
    ours = info.attrs.get("strax_decl", {}) if isinstance(info.attrs, dict) else {}
    compressor = ours.get("compressor") if isinstance(ours, dict) else None
    if isinstance(compressor, dict):
        lines.append(
            f"codecs     {' -> '.join(compressor.get('codecs', []))}, zstd level "
            f"{compressor.get('zstd_level')}, {ours.get('rows_per_chunk')} rows per Zarr chunk"
        )
    lines.append(f"created    {created(info)}  (strax_decl {meta.get('strax_decl_version', '-')})")
    if meta.get("description"):
        lines.append(f"about      {meta['description']}")
    fields = meta.get("fields") if isinstance(meta.get("fields"), dict) else {}
    if info.dtype is not None and info.dtype.names:
        lines.append("fields")
        rows = []
        for name in info.dtype.names:
            sub = info.dtype[name]
            doc = fields.get(name, {}) if isinstance(fields, dict) else {}
            kind = str(sub.base) + (str(list(sub.shape)) if sub.shape else "")
            rows.append(
                [f"  {name}", kind, str(doc.get("unit") or ""), str(doc.get("description") or "")]
            )
        lines.append(table(["  name", "type", "unit", "description"], rows, set()))
    lineage = meta.get("lineage")
    if isinstance(lineage, dict):
        lines.append("lineage")
        lines += lineage_lines(lineage, "  ")
    print("\n".join(lines))
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    store = open_existing_store(args)
    if args.failed:
        if args.data_type or args.hash:
            raise UsageError("rm --failed takes at most a run id")
        run_id = check_run_id(args.run) if args.run else None
        # "writing" is a live writer at work (a dead one's shows as "failed")
        victims = [i.key for i in store.list(run_id=run_id) if i.status == "failed"]
        if not victims:
            print("no failed data sets", file=sys.stderr)
            return 0
    elif args.run and not args.data_type:
        return _rm_run(store, check_run_id(args.run), args)
    else:
        if not args.run or not args.data_type:
            raise UsageError(
                "rm needs RUN DATA_TYPE [HASH_PREFIX], RUN alone (with --yes), or --failed"
            )
        run_id = check_run_id(args.run)
        if args.all:
            victims = sorted(
                {
                    i.key
                    for i in store.list(run_id=run_id, data_type=args.data_type)
                    if args.hash is None or i.key.lineage_hash.startswith(args.hash)
                }
            )
            if not victims:
                _find_one(store, run_id, args.data_type, args.hash)  # raises DataNotFound
        else:
            victims = [_find_one(store, run_id, args.data_type, args.hash).key]
    for key in dict.fromkeys(victims):
        if args.dry_run:
            print(f"would remove {key}")
            continue
        if not args.failed:
            store.remove(key)  # ClaimHeld (an error naming the writer) if it is being written
        elif not store.remove_failed(key):  # keeps complete data sets and live writers' work
            print(f"skipped {key}: a live writer took it meanwhile", file=sys.stderr)
            continue
        print(f"removed {key}")
    return 0


def _rm_run(store: Store, run_id: str, args: argparse.Namespace) -> int:
    """``rm RUN``: the whole run (data sets, run document, tags, folder), once confirmed."""
    keys = sorted({i.key for i in store.list(run_id=run_id)})
    doc = store.run_doc(run_id)
    if not keys and doc is None and not store.run_folder(run_id).names:
        from strax_storage import DataNotFound

        raise DataNotFound(f"no run {run_id!r} in {store.url}")
    extra = "" if doc is None else f", its run document ({len(doc['tags'])} tags)"
    what = f"run {run_id!r} ({len(keys)} data sets{extra}, its folder) in {store.url}"
    if args.dry_run:
        for key in keys:
            print(f"would remove {key}")
        print(f"would then delete {what}")
        return 0
    if not args.yes:
        _confirm(f"remove {what}?")
    done = store.remove_run(run_id)  # ClaimHeld, naming the writers: nothing removed
    for key in done.removed:
        print(f"removed {key}")
    docs = f"{len(done.documents)} run document and tag files" if done.documents else ""
    gone = ", ".join(w for w in (docs, "the folder" if done.folder_removed else "") if w)
    print(f"deleted run {run_id!r}" + (f": {gone}" if gone else ""))
    return 0


def _confirm(question: str) -> None:
    """Ask on a terminal; without one (scripts, pipes) refuse: ``--yes`` says it."""
    if not sys.stdin.isatty():
        raise UsageError(f"{question.rstrip('?')}: not confirmed; pass --yes to do it")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise UsageError("not confirmed; nothing removed")


def _last_error(text: str) -> str:
    """The ``Type: message`` line of a recorded exception, after the note saying where it
    happened (``plugin X failed on run r, chunk [a, b)``) if there is one."""
    from strax_decl.engine.stopping import is_failure_note

    lines = [line for line in text.strip().splitlines() if line.strip()]
    notes = [line.strip() for line in lines if is_failure_note(line)]
    rest = [line for line in lines if not is_failure_note(line)]
    last = rest[-1] if rest else (lines[-1] if lines else "")
    return f"{notes[-1]}: {last}" if notes else last
