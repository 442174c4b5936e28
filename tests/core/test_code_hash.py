"""``version = "auto"`` and the code hash: every user class a plugin derives from counts.

Plugin modules are written to ``tmp_path`` and imported under one module name, so two
versions of "the same file" can be compared as a user editing it would see them.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import warnings
from pathlib import Path
from types import ModuleType

import pytest

import strax_decl as sd
from strax_decl.testing import TOY_PLUGINS, FlakyPeaks, Peaks, ThreadFlakyPeaks, ToyRecords

MODULE = "sd_code_hash_plugins"

HEADER = """
import numpy as np
import strax_decl as sd
from strax_decl.testing import Peak, Record
"""

PARENT = """
class Parent(sd.Plugin):
    version = {version!r}

    class Inputs(sd.Inputs):
        records: Record

    class Outputs(sd.Outputs):
        parent_out: Record

    def compute(self, records):
        return records{parent_edit}
"""

CHILD = """
class Child(Parent):
    {child_version}
    class Outputs(sd.Outputs):
        child_out: Record

    def compute(self, records):
        return records{child_edit}
"""


def load(tmp_path: Path, name: str, source: str) -> ModuleType:
    """Import ``source`` as module ``MODULE`` from its own file (as an edited file would be)."""
    path = tmp_path / name / f"{MODULE}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(HEADER + source))
    spec = importlib.util.spec_from_file_location(MODULE, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[MODULE]
    return module


def family(
    tmp_path: Path,
    name: str,
    *,
    version: str = "auto",
    child_version: str = "",
    parent_edit: str = "",
    child_edit: str = "",
) -> ModuleType:
    source = PARENT.format(version=version, parent_edit=parent_edit) + CHILD.format(
        child_version=child_version, child_edit=child_edit
    )
    return load(tmp_path, name, source)


def test_auto_is_resolved_per_class_and_a_subclass_edit_changes_its_version(tmp_path):
    a = family(tmp_path, "a")
    same = family(tmp_path, "same")
    child_edited = family(tmp_path, "child", child_edit="[:]")
    parent_edited = family(tmp_path, "parent", parent_edit="[:]")
    assert a.Parent.version.startswith("auto-") and a.Child.version.startswith("auto-")
    assert a.Child.version != a.Parent.version  # not the parent's, inherited
    assert (same.Parent.version, same.Child.version) == (a.Parent.version, a.Child.version)
    assert child_edited.Parent.version == a.Parent.version
    assert child_edited.Child.version != a.Child.version
    # A base's code is the subclass's code too.
    assert parent_edited.Parent.version != a.Parent.version
    assert parent_edited.Child.version != a.Child.version


def test_a_subclass_with_its_own_version_is_not_auto(tmp_path):
    m = family(tmp_path, "m", child_version='version = "1.0"')
    assert m.Child.version == "1.0" and m.Parent.version.startswith("auto-")


def test_a_base_edit_under_a_fixed_version_warns_that_the_cache_may_be_stale(tmp_path):
    store = tmp_path / "store"
    old = family(tmp_path, "old", version="1.0")
    ctx = sd.Context(storage=str(store), plugins=[ToyRecords, old.Child])
    ctx.make("run_1", "child_out")
    new = family(tmp_path, "new", version="1.0", parent_edit="[:]")
    assert new.Child.code_hash != old.Child.code_hash  # only the base changed
    ctx = sd.Context(storage=str(store), plugins=[ToyRecords, new.Child])
    with pytest.warns(sd.StaleVersionWarning, match="plugin Child"):
        assert ctx.plan("run_1", "child_out").steps["child_out"].action == "load"


def test_after_editing_an_auto_subclass_old_data_is_not_loaded(tmp_path):
    store = tmp_path / "store"
    old = family(tmp_path, "old")
    sd.Context(storage=str(store), plugins=[ToyRecords, old.Child]).make("run_1", "child_out")
    again = family(tmp_path, "again")
    ctx = sd.Context(storage=str(store), plugins=[ToyRecords, again.Child])
    with warnings.catch_warnings():
        warnings.simplefilter("error", sd.StaleVersionWarning)
        assert ctx.plan("run_1", "child_out").steps["child_out"].action == "load"
    edited = family(tmp_path, "edited", child_edit="[:]")
    ctx = sd.Context(storage=str(store), plugins=[ToyRecords, edited.Child])
    assert ctx.plan("run_1", "child_out").steps["child_out"].action == "compute"


TWICE = """
class Twice(sd.Plugin):
    version = "auto"

    class Inputs(sd.Inputs):
        records: Record

    class Outputs(sd.Outputs):
        twice: Record

    def compute(self, records):
        return records{first}


class Twice(sd.Plugin):  # redefined: the class in use is this one
    version = "auto"

    class Inputs(sd.Inputs):
        records: Record

    class Outputs(sd.Outputs):
        twice: Record

    def compute(self, records):
        return records{second}


class Bare(Twice):
    parallel = {first_parallel}


class Bare(Twice):
    parallel = {second_parallel}
"""


def twice(tmp_path: Path, name: str, second: str, second_parallel: bool) -> ModuleType:
    source = TWICE.format(
        first="", second=second, first_parallel=False, second_parallel=second_parallel
    )
    return load(tmp_path, name, source)


def test_a_redefined_class_hashes_its_own_code_not_the_first_of_its_name(tmp_path):
    """``inspect.getsource`` before 3.13 finds the first class statement of a name."""
    a = twice(tmp_path, "a", second="[:]", second_parallel=False)
    b = twice(tmp_path, "b", second="[::1]", second_parallel=True)
    assert a.Twice.version != b.Twice.version
    assert a.Bare.version != b.Bare.version  # no method of its own: told apart all the same


def test_plugins_of_one_class_keep_their_code_hash():
    """A plugin deriving only from framework classes hashes its own source alone, as before
    bases counted (the hashes stored with existing data stay valid)."""
    import hashlib
    import inspect

    for plugin in TOY_PLUGINS:
        source = textwrap.dedent(inspect.getsource(plugin))
        assert plugin.code_hash == hashlib.sha256(source.encode()).hexdigest()[:16], plugin
    # Subclasses include their bases: a change to Peaks is a change to FlakyPeaks.
    assert FlakyPeaks.code_hash != Peaks.code_hash
    assert ThreadFlakyPeaks.code_hash != FlakyPeaks.code_hash
