"""straxen idioms on the example analysis (``examples/straxen_ports.py``): a high-energy child
plugin with its own threshold, an event-info merge deriving a field, veto intervals with a
string field. Each is stored, reloaded, and independent of the chunking."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

import strax_decl as sd
from strax_decl.testing import check_chunking_independence

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples"))
import straxen_ports as ports  # noqa: E402

SMALL = {"run_duration": 60_000_000, "chunk_duration": 10_000_000}


@pytest.fixture
def ctx(tmp_path: Path) -> sd.Context:
    return sd.Context(str(tmp_path / "data"), plugins=ports.PLUGINS, config=SMALL)


def test_the_high_energy_child_has_its_own_threshold_and_lineage(ctx):
    assert (ctx.options["Hits"].hit_threshold, ctx.options["HitsHighEnergy"].hit_threshold) == (
        10.0,
        30.0,
    )
    hits, hits_he = ctx.get_array("r1", "hits"), ctx.get_array("r1", "hits_he")
    assert 0 < len(hits_he) < len(hits)
    ctx.make("r1", ["hits", "hits_he"])
    lower = ctx.new_context(config={"HitsHighEnergy.hit_threshold": 20.0})
    assert lower.plan("r1", ["hits", "hits_he"]).to_compute == ["hits_he"]
    assert len(hits_he) < len(lower.get_array("r1", "hits_he")) < len(hits)


def test_event_info_merges_then_derives_and_is_stored(ctx):
    info = ctx.get_array("r1", "event_info")
    basics = ctx.get_array("r1", "event_basics")
    np.testing.assert_array_equal(info["cs2_area"], basics["cs2_area"])
    with_s1 = basics["s1_area"] > 0
    np.testing.assert_allclose(
        info["cs2_over_s1"][with_s1], basics["cs2_area"][with_s1] / basics["s1_area"][with_s1]
    )
    assert ctx.is_stored("r1", "event_info")


def test_veto_intervals_with_a_string_field_through_store_zarr_and_selections(ctx):
    vetoes = ctx.get_array("r1", "veto_intervals")
    assert set(vetoes["veto_type"]) == {"he_veto", "busy"}
    assert vetoes.dtype["veto_type"] == np.dtype("<U10")
    he = ctx.get_array("r1", "veto_intervals", selection='veto_type == "he_veto"')
    assert len(he) == (vetoes["veto_type"] == "he_veto").sum() > 0
    key = ctx.key_for("r1", "veto_intervals")  # plain zarr reads the string field too
    stored = zarr.open_group(ctx.stores[0].url, mode="r")[f"{key.path}/veto_type"][:]
    assert list(stored) == list(vetoes["veto_type"])


@pytest.mark.parametrize("target", ["hits_he", "event_info", "veto_intervals"])
def test_each_port_is_independent_of_the_chunking(target):
    rows = check_chunking_independence(ports.PLUGINS, target, config=SMALL, seed=5)
    assert sum(len(r) for r in rows.values()) > 0
