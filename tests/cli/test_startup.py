"""The command line starts light: ``--help``, ``--version`` and ``ls`` on a real store import
neither zarr nor numba (nor pandas, dask, pydantic), checked on the real entry point with
Python's own import log (``PYTHONPROFILEIMPORTTIME``). Their speed is ``bench/startup_bench.py``'s
business, not a unit test's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ENTRY = shutil.which("strax-decl", path=str(Path(sys.executable).parent))
CMD = [ENTRY] if ENTRY else [sys.executable, "-m", "strax_decl"]
HEAVY = {"zarr", "numba", "llvmlite", "pandas", "dask", "numcodecs", "pydantic"}


def imported(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the CLI; its result and the top-level packages it imported."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(
        [*CMD, *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    names = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "strax_decl" in names  # the log is really there: the check below can fail
    return done, names


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import strax_decl as sd
    from strax_decl.testing import TOY_PLUGINS

    path = tmp_path_factory.mktemp("startup") / "data"
    ctx = sd.Context(str(path), plugins=TOY_PLUGINS)
    for run in ("r1", "r2"):
        ctx.make(run, "peaks")
    return path


def test_ls_lists_a_real_store_without_zarr_or_numba(store: Path) -> None:
    """``strax-decl ls`` reads metadata only: no zarr, numba or numpy."""
    done, names = imported("ls", "--storage", str(store))
    assert done.returncode == 0, done.stderr[-2000:]
    assert not names & (HEAVY | {"numpy"}), sorted(names & (HEAVY | {"numpy"}))
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    assert [(r[0], r[1], r[3], r[4]) for r in rows] == [
        ("r1", "peaks", "complete", "80"),
        ("r1", "records", "complete", "400"),
        ("r2", "peaks", "complete", "80"),
        ("r2", "records", "complete", "400"),
    ]
    done, names = imported("ls", "--storage", str(store), "--json", "r2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert not names & (HEAVY | {"numpy"}), sorted(names & (HEAVY | {"numpy"}))
    listed = json.loads(done.stdout)
    assert {(d["data_type"], d["rows"], d["plugin"]) for d in listed} == {
        ("peaks", 80, "Peaks"),
        ("records", 400, "ToyRecords"),
    }


def test_help_and_version_import_nothing_heavy() -> None:
    from strax_decl import __version__

    for args, expected in ((["--help"], "usage: strax-decl"), (["--version"], __version__)):
        done, names = imported(*args)
        assert done.returncode == 0 and expected in done.stdout, done.stdout
        assert not names & (HEAVY | {"numpy"}), sorted(names & (HEAVY | {"numpy"}))


def test_the_storage_package_imports_its_names_on_first_use() -> None:
    """``import strax_storage`` alone is light; every public name still resolves."""
    code = (
        "import sys, strax_storage as s; light = 'numba' not in sys.modules; "
        "names = [getattr(s, n) for n in s.__all__]; "
        "print(light, 'numba' in sys.modules, len(names), set(dir(s)) >= set(s.__all__))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    n_names = len(__import__("strax_storage").__all__)
    assert done.stdout.split() == ["True", "True", str(n_names), "True"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        __import__("strax_storage").nope  # noqa: B018
