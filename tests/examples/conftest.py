"""A store written by the demo (``examples/demo.py``, run in-process on a short run)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import strax_decl as sd
from strax_decl.cli import load_plugins

REPO = Path(__file__).resolve().parents[2]
CONFIG = {"run_duration": 150_000_000, "chunk_duration": 25_000_000}


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> sd.Context:
    """A context on a store the demo script wrote for run ``demo_000`` with ``CONFIG``."""
    spec = importlib.util.spec_from_file_location("strax_decl_demo", REPO / "examples/demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = str(tmp_path_factory.mktemp("demo") / "strax_data")
    argv = ["--storage", path, "--no-progress"]
    for key, value in CONFIG.items():
        argv += ["--config", f"{key}={value}"]
    assert module.main(argv) == 0
    return sd.Context(
        path, plugins=load_plugins(str(REPO / "examples/demo_plugins.py")), config=CONFIG
    )
