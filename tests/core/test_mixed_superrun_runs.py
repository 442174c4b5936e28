"""``get_array`` of a list mixing superruns and runs: each row tagged with the run id asked
for (as strax tags several runs), the superrun's rows one after the other in subrun order."""

from __future__ import annotations

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.testing import TOY_PLUGINS


@pytest.fixture
def ctx(tmp_path) -> sd.Context:
    ctx = sd.Context(str(tmp_path / "data"), plugins=TOY_PLUGINS)
    ctx.make(["r1", "r2", "r3"], "peaks").raise_if_failed()
    ctx.define_run("_sr1", ["r1", "r2"])
    return ctx


def test_a_superrun_and_a_run_are_tagged_with_the_run_ids_asked(ctx: sd.Context) -> None:
    got = ctx.get_array(["_sr1", "r3"], "peaks")
    assert list(got.dtype.names or ()).count("run_id") == 1
    parts = [ctx.get_array(r, "peaks") for r in ("r1", "r2", "r3")]
    assert list(got["run_id"]) == ["_sr1"] * (len(parts[0]) + len(parts[1])) + ["r3"] * len(
        parts[2]
    )
    for name in parts[0].dtype.names or ():
        np.testing.assert_array_equal(got[name], np.concatenate([p[name] for p in parts]))
    alone = ctx.get_array("_sr1", "peaks")  # alone: tagged with the subruns, as before
    assert list(dict.fromkeys(alone["run_id"])) == ["r1", "r2"]


def test_columns_and_order_in_a_mixed_list(ctx: sd.Context) -> None:
    got = ctx.get_array(("r3", "_sr1"), "peaks", keep_columns=["time", "run_id"])
    assert got.dtype.names == ("time", "run_id")
    assert list(dict.fromkeys(got["run_id"])) == ["r3", "_sr1"]
    untagged = ctx.get_array(["_sr1", "r3"], "peaks", drop_columns=["run_id"])
    assert "run_id" not in (untagged.dtype.names or ())
    assert len(untagged) == len(got)


def test_ignore_errors_leaves_out_an_undefined_superrun(ctx: sd.Context) -> None:
    with pytest.warns(UserWarning, match="left out 1 of 2 runs"):
        got = ctx.get_array(["_nope", "r3"], "peaks", ignore_errors=True)
    assert set(got["run_id"]) == {"r3"}
    with pytest.raises(Exception, match="_nope"):
        ctx.get_array(["_nope", "r3"], "peaks")
