"""The layer's public names: listed for type checkers, mapped to their modules for the lazy
import (``strax_storage.__getattr__``), and in ``__all__``: the three lists say the same, and
every name imports from the module the map names."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import strax_storage


def _type_checking_names() -> set[str]:
    tree = ast.parse(Path(strax_storage.__file__).read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom):
                    names.update(alias.asname or alias.name for alias in stmt.names)
    return names


def test_the_three_lists_of_public_names_agree() -> None:
    homes = strax_storage._HOMES
    assert set(strax_storage.__all__) == set(homes) == _type_checking_names()
    assert len(strax_storage.__all__) == len(set(strax_storage.__all__))


def test_every_public_name_comes_from_the_module_its_map_names() -> None:
    for name, home in strax_storage._HOMES.items():
        module = importlib.import_module(f"strax_storage.{home}")
        assert getattr(strax_storage, name) is getattr(module, name), name
