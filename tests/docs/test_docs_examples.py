"""Every example in README.md and docs/*.md runs, against a store the demo wrote.

Per page, in a fresh directory holding ``strax_data`` (the demo's run ``demo_000``) and
``examples`` (a link to the repository's): ```python blocks run in order in one namespace;
in ```bash / ```console blocks, ``strax-decl ...`` lines run through the CLI and must exit 0,
``python3 examples/demo.py`` runs the demo, installs and the test command itself are skipped,
and anything else fails the test (so no untested command can creep into the docs).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from strax_decl.cli import main

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SKIPPED = ("python3 -m pip install", "python3 -m pytest")


def blocks(page: Path) -> list[tuple[str, str, int]]:
    text = page.read_text()
    return [
        (m.group(1), m.group(2), text[: m.start()].count("\n") + 2) for m in FENCE.finditer(text)
    ]


def load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("strax_decl_demo", REPO / "examples" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("docs") / "strax_data"
    assert load_demo().main(["--storage", str(path), "--no-progress"]) == 0
    return path


def run_shell(line: str, where: str) -> None:
    for command in (c.strip() for c in line.split("&&")):
        if command.startswith(SKIPPED):
            continue
        argv = shlex.split(command)
        if argv[0] == "strax-decl":
            assert main(argv[1:]) == 0, f"{where}: {command}"
        elif argv[:2] == ["python3", "examples/demo.py"]:
            assert load_demo().main(argv[2:]) == 0, f"{where}: {command}"
        else:
            raise AssertionError(f"{where}: the docs test does not know how to run {command!r}")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_examples_run(page, demo_store, tmp_path, monkeypatch):
    shutil.copytree(demo_store, tmp_path / "strax_data")
    (tmp_path / "examples").symlink_to(REPO / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", list(__import__("sys").path))  # blocks may extend it
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    ran = 0
    for lang, code, line in blocks(page):
        where = f"{page.name}:{line}"
        if lang == "python":
            exec(compile(code, where, "exec", dont_inherit=True), namespace)
            ran += 1
        elif lang in ("bash", "console", "sh"):
            for text in code.splitlines():
                text = text.removeprefix("$ ").strip()
                if text and not text.startswith("#"):
                    run_shell(text, where)
                    ran += 1
    assert ran or page.name == "scaling.md", f"{page.name} has no runnable example"


def test_readme_states_the_two_commands_exactly():
    readme = (REPO / "README.md").read_text()
    bash = [code.strip() for lang, code, _ in blocks(REPO / "README.md") if lang == "bash"]
    assert bash[:2] == [
        "python3 -m pip install -e . && python3 examples/demo.py",
        "python3 -m pip install -q -e '.[test]' && python3 -m pytest --cov --cov-report=term",
    ]
    # The test command is exactly what CI runs.
    assert bash[1] in (REPO / ".ci" / "run").read_text()
    assert "## The two commands" in readme


def test_every_docs_page_is_linked_from_the_readme():
    readme = (REPO / "README.md").read_text()
    for page in PAGES[1:]:
        assert f"(docs/{page.name})" in readme, page.name
