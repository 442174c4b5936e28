"""The commands that read a store (no plugins needed): ``ls``, ``info``, ``rm``."""

from __future__ import annotations

import argparse
import json
import sys

from strax_decl.cli.common import UsageError, check_run_id, open_existing_store
from strax_decl.cli.formatting import created, format_bytes, lineage_lines, ratio, table
from strax_decl.engine.stopping import is_failure_note
from strax_storage import DataNotFound, DataSetInfo, Store, validate_name

__all__ = ["cmd_info", "cmd_ls", "cmd_rm"]


def cmd_ls(args: argparse.Namespace) -> int:
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
        if run_id is not None:
            raise DataNotFound(f"no data sets for run {run_id!r} in {store.url}")
        print(f"no data sets in {store.url}", file=sys.stderr)
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
    ]
    print(table(header, rows, {4, 5, 6, 7}))
    return 0


def _find_one(store: Store, run_id: str, data_type: str, prefix: str | None) -> DataSetInfo:
    infos = [
        i
        for i in store.list(run_id=run_id, data_type=data_type)
        if prefix is None or i.key.lineage_hash.startswith(prefix)
    ]
    if not infos:
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
    else:
        if not args.run or not args.data_type:
            raise UsageError("rm needs RUN DATA_TYPE [HASH_PREFIX], or --failed")
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


def _last_error(text: str) -> str:
    """The ``Type: message`` line of a recorded exception, after the note saying where it
    happened (``plugin X failed on run r, chunk [a, b)``) if there is one."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    notes = [line.strip() for line in lines if is_failure_note(line)]
    rest = [line for line in lines if not is_failure_note(line)]
    last = rest[-1] if rest else (lines[-1] if lines else "")
    return f"{notes[-1]}: {last}" if notes else last
