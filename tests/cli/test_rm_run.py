"""``strax-decl rm RUN``: the whole run goes (data sets, run document, tags, folder), run as
users run it, through the entry point in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ENTRY = shutil.which("strax-decl", path=str(Path(sys.executable).parent))
CMD = [ENTRY] if ENTRY else [sys.executable, "-m", "strax_decl"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CMD, *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


def test_rm_run_removes_the_run_document_tags_and_folder(tmp_path: Path) -> None:
    store = str(tmp_path / "data")
    toy = ["-p", "strax_decl.testing", "-s", store]
    for run in ("r1", "r2"):
        made = cli("run", *toy, run, "peaks", "-q")
        assert made.returncode == 0, made.stderr
    assert cli("define-run", "-s", store, "r1", "--tag", "bad", "--comment", "x").returncode == 0
    assert cli("tag", "-s", store, "r1", "science").returncode == 0
    folder = tmp_path / "data" / "r1"
    assert (folder / ".run.json").is_file() and (folder / ".tag-science").is_file()

    refused = cli("rm", "-s", store, "r1")  # no terminal to ask on: refused, nothing removed
    assert (
        refused.returncode == 2 and "--yes" in refused.stderr and "run document" in refused.stderr
    )
    dry = cli("rm", "-s", store, "r1", "-n")
    assert dry.returncode == 0 and dry.stdout.count("would remove r1/") == 2, dry.stdout
    assert (folder / ".run.json").is_file()

    done = cli("rm", "-s", store, "r1", "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("removed r1/") == 2
    assert "deleted run 'r1': 2 run document and tag files, the folder" in done.stdout
    assert not folder.exists()
    runs = json.loads(cli("runs", "-s", store, "--json").stdout)
    assert [r["name"] for r in runs] == ["r2"], runs
    assert len(json.loads(cli("ls", "-s", store, "--json").stdout)) == 2  # r2 untouched

    again = cli("rm", "-s", store, "r1", "--yes")
    assert again.returncode == 1 and "no run 'r1'" in again.stderr


def test_rm_run_of_a_run_with_only_a_document(tmp_path: Path) -> None:
    store = str(tmp_path / "data")
    (tmp_path / "data").mkdir()
    assert cli("define-run", "-s", store, "r9", "--start", "0", "--end", "10").returncode == 0
    done = cli("rm", "-s", store, "r9", "--yes")
    assert done.returncode == 0, done.stderr
    assert "deleted run 'r9'" in done.stdout and not (tmp_path / "data" / "r9").exists()


def test_rm_run_refuses_while_a_writer_holds_a_data_set(tmp_path: Path) -> None:
    from strax_storage import DataKey, open_store

    store = str(tmp_path / "data")
    assert (
        cli("run", "-p", "strax_decl.testing", "-s", store, "r1", "records", "-q").returncode == 0
    )
    claim = open_store(store).claim(DataKey("r1", "peaks", "abcdefgh"))  # this live process
    assert claim is not None
    try:
        refused = cli("rm", "-s", store, "r1", "--yes")
        assert refused.returncode == 1, refused.stderr
        assert "r1/peaks-abcdefgh by pid" in refused.stderr and "nothing removed" in refused.stderr
        assert len(json.loads(cli("ls", "-s", store, "--json").stdout)) == 1
    finally:
        claim.release()
    done = cli("rm", "-s", store, "r1", "--yes")
    assert done.returncode == 0 and not (tmp_path / "data" / "r1").exists(), done.stderr
