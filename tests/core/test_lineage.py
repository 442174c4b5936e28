"""The lineage hash: canonical, stable across processes and hash seeds, coercion-aware."""

import os
import subprocess
import sys

import strax_decl as sd
from strax_decl.lineage import canonical_json, diff, lineage_hash, make_lineage
from strax_decl.testing import TOY_PLUGINS


def test_key_order_and_containers_do_not_matter():
    a = make_lineage("x", "P", "1", {"a": 1, "b": [1, 2]}, {})
    b = make_lineage("x", "P", "1", {"b": (1, 2), "a": 1}, {})
    assert lineage_hash(a) == lineage_hash(b)
    assert lineage_hash(a) != lineage_hash(make_lineage("x", "P", "2", {"a": 1, "b": [1, 2]}, {}))


def test_sets_are_sorted_so_hash_seed_cannot_leak():
    s = canonical_json(make_lineage("x", "P", "1", {"chans": {"b", "a", "c"}}, {}))
    assert '"chans":["a","b","c"]' in s


def test_int_and_float_for_a_float_option_give_one_hash(tmp_path):
    ctx_int = sd.Context(storage=str(tmp_path), plugins=TOY_PLUGINS, config={"big_area": 2000})
    ctx_float = ctx_int.new_context(config={"big_area": 2000.0})
    assert ctx_int.key_for("r", "big_peaks") == ctx_float.key_for("r", "big_peaks")
    changed = ctx_int.new_context(config={"big_area": 2001})
    assert changed.key_for("r", "big_peaks") != ctx_int.key_for("r", "big_peaks")
    # upstream of the changed option is unaffected
    assert changed.key_for("r", "peaks") == ctx_int.key_for("r", "peaks")


def test_untracked_option_does_not_enter_lineage(tmp_path):
    ctx = sd.Context(storage=str(tmp_path), plugins=TOY_PLUGINS)
    assert ctx.key_for("r", "records") == ctx.new_context(config={"crash_at_chunk": 2}).key_for(
        "r", "records"
    )


def test_hash_is_equal_across_processes_with_different_hash_seeds(tmp_path):
    code = (
        "import strax_decl as sd; from strax_decl.testing import TOY_PLUGINS;"
        f"ctx = sd.Context(storage={str(tmp_path)!r}, plugins=TOY_PLUGINS);"
        "print(ctx.key_for('r', 'peak_extras').lineage_hash)"
    )
    hashes = set()
    for seed in ("1", "2", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        hashes.add(out.stdout.strip())
    assert len(hashes) == 1
    assert len(hashes.pop()) == 16


def test_diff_names_the_changed_option():
    old = make_lineage("x", "P", "1", {"gap": 300}, {})
    new = make_lineage("x", "P", "1", {"gap": 200}, {})
    assert diff(old, new) == ["options.gap: 300 -> 200"]
