"""``ctx.compare_lineage`` and ``strax-decl diff`` report each kind of lineage difference:
a plugin's ``version`` and its inputs (what it depends on), at the data type asked about and
through its inputs, grouped under ``versions`` and ``inputs``; on real stores in tmp_path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import strax_decl as sd
from strax_decl import testing

ENTRY = shutil.which("strax-decl", path=str(Path(sys.executable).parent))
CMD = [ENTRY] if ENTRY else [sys.executable, "-m", "strax_decl"]

SMALL = {"n_chunks": 2, "rows_per_chunk": 20}


class Peaks(testing.Peaks):
    """The toy Peaks under a new version (same name, same rows)."""

    version = "9.9.9"


class PeakRecordCount(sd.Plugin):
    """The toy PeakRecordCount (same name and version) depending on peaks only."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        peaks: testing.Peak

    class Outputs(sd.Outputs):
        peak_extras: testing.PeakExtras = sd.output(kind="peaks")

    def compute(self, peaks: np.ndarray) -> np.ndarray:
        out = testing.PeakExtras.zeros(len(peaks))
        out["time"], out["endtime"] = peaks["time"], peaks["endtime"]
        return out


class PeakCount(PeakRecordCount):
    """Another plugin providing peak_extras."""


def replacing(*plugins: type[sd.Plugin]) -> list[type[sd.Plugin]]:
    """The toy plugins with ``plugins`` in place of those giving the same outputs."""
    outputs = {o for p in plugins for o in p.outputs}
    return [p for p in testing.PLUGINS if not outputs & set(p.outputs)] + list(plugins)


@pytest.fixture
def ctx(tmp_path: Path) -> sd.Context:
    return sd.Context(str(tmp_path / "data"), plugins=testing.PLUGINS, config=SMALL)


def test_a_version_difference_is_reported_where_it_is_and_downstream(ctx, tmp_path):
    """Peaks at another version: ``version`` for peaks itself, ``inputs.peaks.version`` for
    what is computed from it, under ``versions`` only; records (upstream) is the same."""
    other = sd.Context(str(tmp_path / "data"), plugins=replacing(Peaks), config=SMALL)
    at = ctx.compare_lineage(other, "peaks")
    assert at.versions == ["version: '0.2.0' -> '9.9.9'"]
    assert at.differences == at.versions and at.options == at.inputs == []
    below = ctx.compare_lineage(other, "peak_basics")
    assert below.versions == ["inputs.peaks.version: '0.2.0' -> '9.9.9'"]
    assert below.differences == below.versions
    text = str(below)
    assert "  versions:\n    inputs.peaks.version: '0.2.0' -> '9.9.9'" in text
    assert "  options:" not in text and "  inputs:" not in text
    assert ctx.compare_lineage(other, "records").same  # upstream of the change: the same


def test_an_inputs_difference_is_reported(ctx, tmp_path):
    """The same plugin (name, version, options) depending on one input fewer: the input
    it no longer reads is ``removed``; seen from the other side, ``added``."""
    fewer = sd.Context(str(tmp_path / "data"), plugins=replacing(PeakRecordCount), config=SMALL)
    cmp = ctx.compare_lineage(fewer, "peak_extras")
    assert cmp.inputs == ["inputs.records: removed"]
    assert cmp.differences == cmp.inputs and cmp.versions == cmp.options == []
    assert "  inputs:\n    inputs.records: removed" in str(cmp)
    assert fewer.compare_lineage(ctx, "peak_extras").inputs == ["inputs.records: added"]
    assert ctx.compare_lineage(fewer, "peaks").same  # its other input is unchanged


def test_another_plugin_providing_a_data_type_is_an_inputs_difference(ctx, tmp_path):
    """Another plugin (PeakCount) providing peak_extras: named old and new, under inputs."""
    other = sd.Context(str(tmp_path / "data"), plugins=replacing(PeakCount), config=SMALL)
    cmp = ctx.compare_lineage(other, "peak_extras")
    assert cmp.inputs == ["inputs.records: removed", "plugin: 'PeakRecordCount' -> 'PeakCount'"]
    assert "PeakRecordCount" in str(cmp) and "PeakCount" in str(cmp)


def test_a_version_or_inputs_difference_names_the_plugin(ctx, tmp_path):
    """The plugin whose version or inputs differ is named in what is printed (once it
    showed only the path of data types, ``inputs.peaks.version: ...``, never ``Peaks``)."""
    newer = sd.Context(str(tmp_path / "data"), plugins=replacing(Peaks), config=SMALL)
    fewer = sd.Context(str(tmp_path / "data"), plugins=replacing(PeakRecordCount), config=SMALL)
    text = str(ctx.compare_lineage(newer, "peak_basics"))
    assert "inputs.peaks.version: '0.2.0' -> '9.9.9'  [plugin Peaks]" in text, text
    text = str(ctx.compare_lineage(fewer, "peak_extras"))
    assert "inputs.records: removed  [plugin PeakRecordCount]" in text, text


class Scaled(sd.Plugin):
    """An option that takes an int or a float, as given (``2`` and ``2.0`` hash apart)."""

    version = "0.1.0"

    class Inputs(sd.Inputs):
        peaks: testing.Peak

    class Outputs(sd.Outputs):
        scaled: testing.Peak = sd.output(kind="peaks")

    class Options(sd.Options):
        factor: float | int = sd.option(1, description="a factor")

    def compute(self, peaks: np.ndarray) -> np.ndarray:
        out = peaks.copy()
        out["area"] *= self.options.factor
        return out


def test_values_that_hash_apart_are_reported_apart(tmp_path):
    """``2`` and ``2.0`` (or ``1`` and ``True``) give different lineage hashes, so the
    comparison names them (it once said "same lineage" between two different hashes)."""
    contexts = [
        sd.Context(
            str(tmp_path), plugins=[*testing.TOY_PLUGINS, Scaled], config=SMALL | {"factor": f}
        )
        for f in (2, 2.0)
    ]
    keys = [c.key_for("r1", "scaled") for c in contexts]
    assert keys[0].lineage_hash != keys[1].lineage_hash
    cmp = contexts[0].compare_lineage(contexts[1], "scaled")
    assert cmp.options == ["options.factor: 2 -> 2.0"] and not cmp.same
    assert contexts[0].compare_lineage(contexts[0], "scaled").same


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CMD, *args],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ),
    )


def test_cli_diff_of_two_stored_data_sets_reports_version_and_inputs(ctx, tmp_path):
    """``peak_extras`` stored twice in one store: by the toy plugins, and by a context with
    Peaks at another version and PeakRecordCount depending on peaks only. ``strax-decl diff
    -s STORE r1 peak_extras A B`` exits 1 and lists both, each under its heading; the
    same differences as ``compare_lineage`` with the stored data set."""
    store = str(tmp_path / "data")
    other = sd.Context(store, plugins=replacing(Peaks, PeakRecordCount), config=SMALL)
    ctx.make("r1", "peak_extras")
    other.make("r1", "peak_extras")
    mine = ctx.key_for("r1", "peak_extras").lineage_hash
    theirs = other.key_for("r1", "peak_extras").lineage_hash
    listed = json.loads(cli("ls", "-s", store, "-t", "peak_extras", "--json").stdout)
    assert sorted(d["lineage_hash"] for d in listed) == sorted([mine, theirs])
    done = cli("diff", "-s", store, "r1", "peak_extras", mine[:6], theirs[:6])
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert "  versions:\n    inputs.peaks.version: '0.2.0' -> '9.9.9'" in out, out
    assert "  inputs:\n    inputs.records: removed" in out, out
    assert mine in out and theirs in out
    by_api = ctx.compare_lineage(theirs, "peak_extras", "r1")
    assert by_api.differences == [
        "inputs.peaks.version: '0.2.0' -> '9.9.9'",
        "inputs.records: removed",
    ]
    assert all(d in out for d in by_api.differences)
    same = cli("diff", "-s", store, "r1", "peak_extras", theirs, theirs)
    assert same.returncode == 0 and "same lineage" in same.stdout
