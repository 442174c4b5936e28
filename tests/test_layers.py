"""The layers of the code base, checked from the source (see docs/architecture.md).

Data flows one way: ``strax_storage`` <- core <- engine <- session <- context <- faces. A
module may import from its own layer or any layer below, never from one above; the one
allowed upward edge is the lazy import of the optional Dask face from ``Context``'s methods.
Imports under ``if TYPE_CHECKING:`` are for annotations only and are not counted. There are
no import cycles, and a new module must be given its layer here (a test fails until it is).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"strax_decl": ROOT / "strax_decl", "strax_storage": ROOT / "storage" / "strax_storage"}

STORAGE, CORE, ENGINE, SESSION, CONTEXT, FACES = range(6)
LAYER_NAMES = ["storage", "core", "engine", "session", "context", "faces"]

#: Every module of strax_decl and its layer (strax_storage is one layer: STORAGE).
LAYERS: dict[str, int] = {
    "strax_decl.version": CORE,
    "strax_decl.errors": CORE,
    "strax_decl.chunk": CORE,
    "strax_decl.schema": CORE,
    "strax_decl.lineage": CORE,
    "strax_decl.code_hash": CORE,
    "strax_decl.selection": CORE,
    "strax_decl.plugin": CORE,
    "strax_decl.option_types": CORE,  # option values pydantic would silently convert
    "strax_decl.kinds": CORE,
    "strax_decl.kinds_common": CORE,  # declaration checks the kinds share
    "strax_decl.kinds_loop": CORE,  # the loop kind (contained / touching selection)
    "strax_decl.kinds_exhaust": CORE,  # the exhaust kind and its runner
    "strax_decl.sync": CORE,
    "strax_decl.registry": CORE,
    "strax_decl.config": CORE,
    "strax_decl.output_schemas": CORE,  # schemas resolved when the context is built
    "strax_decl.corrections": CORE,  # a leaf: the corrections table (sqlite3)
    "strax_decl.resolver": CORE,
    "strax_decl.fuzzy": CORE,  # fuzzy_for: which other lineages the resolver may load
    "strax_decl.rows": CORE,
    "strax_decl.runner": CORE,
    "strax_decl.render": CORE,
    "strax_decl.loading": CORE,
    "strax_decl.recompute": CORE,  # in-memory recomputation for verify and testing
    "strax_decl.verify": CORE,  # needs registry, lineages, options, stores: not Context
    "strax_decl.spec": CORE,  # plain data; Context.from_spec builds from it
    "strax_decl.run_meta": CORE,  # run documents, superrun definitions
    "strax_decl.run_table": CORE,  # the run table and run selection
    "strax_decl.request_args": CORE,  # checking getter arguments; seconds_range, time_within
    "strax_decl.copying": CORE,  # copying a stored data set between stores
    "strax_decl.resuming": CORE,  # when the resolver resumes a killed writer's data set
    "strax_decl.live_wait": CORE,  # a live source's polled wait, bounded by live_timeout
    "strax_decl.stats": ENGINE,
    "strax_decl.progress": ENGINE,
    "strax_decl.engine": ENGINE,
    "strax_decl.session": SESSION,
    "strax_decl.claiming": SESSION,  # a request's claims: waits, what it records, exit
    "strax_decl.runs": SESSION,  # make_runs_here reports progress
    "strax_decl.context": CONTEXT,  # the package: context.py, getters.py, checking.py
    "strax_decl.cluster": FACES,
    "strax_decl.cluster_prefix": FACES,  # to_dask(allow_incomplete=True): a final prefix
    "strax_decl.cli": FACES,
    "strax_decl.testing": FACES,
    "strax_decl.daq": FACES,  # the toy DAQ writer and its live source (testing, examples)
    "strax_decl.__main__": FACES,
    "strax_decl": FACES,  # the package root re-exports every layer (lazily, from api)
    "strax_decl.api": FACES,  # the public names, imported on first use of the root's
}

#: (importer, imported) pairs allowed to point up: lazy imports of the optional Dask face.
ALLOWED_UPWARD = {
    ("strax_decl.context.getters", "strax_decl.cluster"),
}


def module_files() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = module_files()


def layer_of(module: str) -> int:
    if module.split(".")[0] == "strax_storage":
        return STORAGE
    name = module
    while name not in LAYERS and "." in name:
        name = name.rsplit(".", 1)[0]
    if name not in LAYERS:
        raise KeyError(module)
    return LAYERS[name]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(module: str, source: str | None = None) -> list[tuple[str, int, bool]]:
    """(imported module, line, at import time) for every project import of ``module``."""
    tree = ast.parse(MODULES[module].read_text() if source is None else source)
    package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
    found: list[tuple[str, int, bool]] = []

    def target(name: str) -> str | None:
        while name and name not in MODULES:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return name or None

    def visit(node: ast.AST, top_level: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, top_level)
            return
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            # "from pkg import sub" imports pkg.sub; "from pkg import name" only pkg
            subs = [f"{base}.{alias.name}" for alias in node.names]
            names = [n for n in subs if n in MODULES] or [base]
        for name in names:
            hit = target(name)
            if hit is not None and hit != module:
                found.append((hit, getattr(node, "lineno", 0), top_level))
        inner = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, top_level and not inner)

    visit(tree, True)
    return found


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for module in MODULES:
        try:
            layer_of(module)
        except KeyError:
            unplaced.append(module)
    assert not unplaced, f"give these modules a layer in tests/test_layers.py: {unplaced}"


def test_storage_imports_nothing_from_strax_decl() -> None:
    bad = [
        f"{m} line {line} imports {target}"
        for m in MODULES
        if m.startswith("strax_storage")
        for target, line, _ in imports(m)
        if target.startswith("strax_decl")
    ]
    assert not bad, bad


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("strax_decl")))
def test_imports_point_down(module: str) -> None:
    mine = layer_of(module)
    upward = [
        f"{module} (layer {LAYER_NAMES[mine]}) line {line} imports {target} "
        f"(layer {LAYER_NAMES[layer_of(target)]})"
        for target, line, _ in imports(module)
        if layer_of(target) > mine and (module, target) not in ALLOWED_UPWARD
    ]
    assert not upward, upward


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            connect(v)
    return found


def _edges(*, import_time_only: bool) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for m in MODULES:
        for target, _, top in imports(m):
            # A package's __init__ importing its own submodules is how packages re-export.
            if m in PACKAGES or (MODULES[m].name == "__init__.py" and target.startswith(m)):
                continue
            if (m, target) in ALLOWED_UPWARD or (import_time_only and not top):
                continue
            edges[m].add(target)
    return edges


def test_no_import_cycles_at_import_time() -> None:
    assert _cycles(_edges(import_time_only=True)) == []


def test_no_import_cycles_at_all() -> None:
    """Lazy imports inside functions count too: a cycle there is a hidden layering error."""
    assert _cycles(_edges(import_time_only=False)) == []


def test_the_checker_sees_what_it_must_refuse() -> None:
    """The checks themselves work: upward, lazy and TYPE_CHECKING imports are told apart."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from strax_decl.chunk import Chunk\n"
        "if TYPE_CHECKING:\n"
        "    from strax_decl.context import Context\n"
        "def later():\n"
        "    from strax_decl import context\n"
    )
    found = imports("strax_decl.plugin", source)
    assert found == [("strax_decl.chunk", 2, True), ("strax_decl.context", 6, False)]
    assert layer_of("strax_decl.context") > layer_of("strax_decl.plugin")
    assert layer_of("strax_decl.engine.threaded") == ENGINE
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_no_module_is_long() -> None:
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 520}
    assert not long, f"split these modules (lines): {long}"


def test_a_user_file_named_storage_does_not_break_the_import(tmp_path: Path) -> None:
    """A script next to its own ``storage.py`` (a common name) imports strax_decl and works."""
    import subprocess
    import sys

    (tmp_path / "storage.py").write_text("raise RuntimeError('the user storage module')\n")
    (tmp_path / "script.py").write_text(
        "import sys\n"
        "import strax_decl as sd\n"
        "from strax_decl.testing import PLUGINS\n"
        "ctx = sd.Context(storage=sys.argv[1], plugins=PLUGINS)\n"
        "print(len(ctx.get_array('run_1', 'peaks')) > 0, 'storage' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "script.py", str(tmp_path / "data")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False"]  # worked, and never imported storage.py
