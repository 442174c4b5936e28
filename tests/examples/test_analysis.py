"""The example analysis (``examples/analysis.py``): a small straxen with per-run corrections.

It runs as shipped; calibrations change exactly the lineages that depend on them; a new
global version recomputes only what it changes; and every plugin of the chain gives the same
rows however its inputs are chunked (``strax_decl.testing.check_chunking_independence``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.testing import check_chunking_independence

REPO = Path(__file__).resolve().parents[2]


def load(name: str) -> ModuleType:
    sys.path.insert(0, str(REPO / "examples"))
    try:
        spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(REPO / "examples"))


analysis = load("analysis")
PLUGINS = analysis.analysis_plugins.PLUGINS
SMALL = {"run_duration": 60_000_000, "chunk_duration": 10_000_000}


def test_the_example_runs_and_a_new_global_version_recomputes_only_what_changed(tmp_path, capsys):
    analysis.main(tmp_path)
    out = capsys.readouterr().out
    assert "under gv2, run_a computes nothing" in out
    assert "under gv2, run_b computes ['event_basics']" in out
    table = analysis.corrections_table(tmp_path / "corrections.sqlite")
    old, new = (analysis.context(tmp_path, table, gv) for gv in ("gv1", "gv2"))
    assert old.key_for("run_a", "records") == old.key_for("run_a", "records")
    assert old.key_for("run_a", "hits").lineage_hash != old.key_for("run_b", "hits").lineage_hash
    # the old version still loads the old data, and the electron lifetime is applied
    assert old.plan("run_b", "event_basics").to_load == ["event_basics"]
    b_old, b_new = old.get_array("run_b", "event_basics"), new.get_array("run_b", "event_basics")
    s1 = b_old["drift_time"] > 0
    np.testing.assert_array_equal(b_old["s2_area"], b_new["s2_area"])
    assert (b_new["cs2_area"][s1] > b_old["cs2_area"][s1]).all()  # shorter lifetime, more


@pytest.mark.parametrize(
    "target",
    ["hits", "peaklets", "peaklet_classification", "peak_basics", "peak_proximity", "events",
     "event_basics"],
)  # fmt: skip
def test_every_plugin_of_the_chain_is_independent_of_the_chunking(target):
    config = {**SMALL, "pmt_gains": (49.0, 50.0, 51.0, 50.0, 48.0, 52.0, 50.0, 50.0)}
    rows = check_chunking_independence(PLUGINS, target, config=config, seed=3)
    assert sum(len(r) for r in rows.values()) > 0


def test_gains_of_the_wrong_length_name_the_plugin():
    ctx = sd.Context(storage=None, plugins=PLUGINS, config={**SMALL, "pmt_gains": (50.0,)})
    with pytest.raises(ValueError, match=r"Hits: pmt_gains has 1 channels"):
        ctx.get_array("run_a", "hits")
