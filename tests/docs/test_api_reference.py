"""The API reference (mkdocs + mkdocstrings, from the docstrings) builds with ``--strict``, as
``mkdocs.yml`` says to build it, and documents every public name, so it cannot rot: a name
added to ``strax_decl.api`` or ``strax_storage.__all__`` appears, one that does not resolve
(or a broken cross-reference) fails the build."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_reference_builds_strictly_and_covers_the_public_api(tmp_path: Path) -> None:
    import strax_decl.api
    import strax_storage

    done = build(REPO / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "WARNING" not in done.stderr, done.stderr[-3000:]
    pages = {
        "strax_decl.api": (tmp_path / "site" / "strax_decl" / "index.html").read_text(),
        "strax_storage": (tmp_path / "site" / "strax_storage" / "index.html").read_text(),
    }
    for module, names in (
        ("strax_decl.api", strax_decl.api.__all__),
        ("strax_storage", strax_storage.__all__),
    ):
        public = [n for n in names if not n.startswith("__")]
        missing = [n for n in public if f'id="{module}.{n}"' not in pages[module]]
        assert not missing, f"{module}: not in the reference: {missing}"
    # docstrings are really rendered, e.g. the Store's and a getter's keyword
    assert "A chunk store rooted somewhere" in pages["strax_storage"]
    assert "fuzzy_for" in pages["strax_decl.api"]


def test_a_name_that_does_not_resolve_fails_the_build(tmp_path: Path) -> None:
    docs = tmp_path / "reference"
    shutil.copytree(REPO / "docs" / "reference", docs)
    (docs / "strax_decl.md").write_text("# broken\n\n::: strax_decl.api.NoSuchName\n")
    config = tmp_path / "mkdocs.yml"
    text = (
        (REPO / "mkdocs.yml").read_text().replace("docs_dir: docs/reference", f"docs_dir: {docs}")
    )
    text = text.replace('paths: [".", "storage"]', f'paths: ["{REPO}", "{REPO / "storage"}"]')
    config.write_text(text)
    done = build(config, tmp_path / "site")
    assert done.returncode != 0
    assert "NoSuchName" in done.stderr
