"""The lineage hash: canonical, stable across processes and hash seeds, coercion-aware."""

import enum
import os
import subprocess
import sys

import numpy as np
import pytest

import strax_decl as sd
from strax_decl.lineage import (
    OptionNotHashable,
    canonical_json,
    diff,
    lineage_hash,
    make_lineage,
)
from strax_decl.testing import TOY_PLUGINS, Record


def test_key_order_does_not_matter():
    a = make_lineage("x", "P", "1", {"a": 1, "b": [1, 2], "c": {"y": 1, "x": 2}}, {})
    b = make_lineage("x", "P", "1", {"c": {"x": 2, "y": 1}, "b": [1, 2], "a": 1}, {})
    assert lineage_hash(a) == lineage_hash(b)
    assert lineage_hash(a) != lineage_hash(make_lineage("x", "P", "2", {"a": 1, "b": [1, 2]}, {}))


def test_sets_are_sorted_so_hash_seed_cannot_leak():
    s = canonical_json(make_lineage("x", "P", "1", {"chans": {"b", "a", "c"}}, {}))
    assert '"chans":{"__sd_type__":"set","items":["a","b","c"]}' in s


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
        "import strax_decl as sd; from strax_decl.testing import TOY_PLUGINS, Record;"
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


# ------------------------------------------------------------ options that change meaning


def _hash(value: object) -> str:
    return lineage_hash(make_lineage("x", "P", "1", {"opt": value}, {}))


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ({0: "x"}, {"0": "x"}),
        (b"ab", "6162"),
        ((1, 2), [1, 2]),
        ({1, 2}, [1, 2]),
        (frozenset({"a"}), ["a"]),
        ({(1, 2): 3}, {"(1, 2)": 3}),
        ({1.0: "a"}, {1: "a"}),
        (np.array([1, 2]), [1, 2]),
        (np.array([1, 2], dtype=np.int32), np.array([1, 2], dtype=np.int64)),
        (np.array([[1, 2]]), np.array([1, 2])),
        ({"a": (1,)}, {"a": [1]}),
        ([(1, 2)], [[1, 2]]),
        (1, 1.0),
        (True, 1),
    ],
    ids=repr,
)
def test_values_of_different_meaning_get_different_hashes(one, other):
    assert _hash(one) != _hash(other)


def test_values_that_cannot_be_represented_are_refused_naming_the_option():
    with pytest.raises(OptionNotHashable, match=r"plugin P, option 'opt'.*object"):
        _hash(object())
    with pytest.raises(OptionNotHashable, match=r"option 'opt'\['a'\].*not finite"):
        _hash({"a": float("nan")})
    with pytest.raises(OptionNotHashable, match="reserved"):
        _hash({"__sd_type__": "tuple", "items": [1, 2]})
    with pytest.raises(OptionNotHashable, match="dtype <U1"):
        _hash(np.array(["a"]))
    with pytest.raises(ValueError):  # OptionNotHashable is a ValueError and a TypeError
        _hash(float("inf"))


def test_ordinary_lineages_keep_the_hashes_they_always_had():
    """Plain JSON option values hash as before tagged forms existed, so stored data stays valid
    (these hashes were computed by the code before the change)."""
    a = make_lineage(
        "peaks", "PeakFinder", "0.1.0",
        {"gap": 300, "thr": 1.5, "name": "x", "on": True, "none": None}, {},
    )  # fmt: skip
    b = make_lineage(
        "events", "EventFinder", "1.2.3",
        {"chans": [1, 2, 3], "map": {"a": 1, "b": [0.5, {"c": None}]}, "neg": -7, "f": 1e-300},
        {"peaks": a},
    )  # fmt: skip
    c = make_lineage("x", "P", "auto-abc", {}, {})
    assert (lineage_hash(a), lineage_hash(b), lineage_hash(c)) == (
        "44hjcsrbwtebc2um",
        "j7hqnnd5f45nndin",
        "joqxgigotnp7tkbs",
    )

    # numpy scalars and enums enter as the plain values they stand for, as before
    class Mode(enum.Enum):
        FAST = "fast"

    assert _hash(np.int64(3)) == _hash(3) and _hash(np.float32(0.5)) == _hash(0.5)
    assert _hash(Mode.FAST) == _hash("fast") and _hash(np.bool_(True)) == _hash(True)
    ctx = sd.Context(storage=None, plugins=TOY_PLUGINS)
    assert ctx.key_for("r", "records").lineage_hash == "sra2g5r5o6u7qctx"


def test_tagged_values_hash_alike_across_processes_and_hash_seeds():
    code = (
        "from strax_decl.lineage import lineage_hash, make_lineage;"
        "opts = {'s': {'b', 'a', 'c', 'd'}, 'k': {3: 'x', 1: 'y', 'z': 2}, 't': (1, b'q'),"
        " 'f': frozenset({(1, 2), (0, 5)})};"
        "print(lineage_hash(make_lineage('x', 'P', '1', opts, {})))"
    )
    hashes = set()
    for seed in ("1", "2", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        hashes.add(out.stdout.strip())
    assert len(hashes) == 1, hashes


def test_a_tuple_option_and_a_list_option_get_different_keys():
    """Through the context: a plugin whose option accepts either keeps them apart."""

    class Anything(sd.Plugin):
        version = "0.1.0"

        class Inputs(sd.Inputs):
            records: Record

        class Outputs(sd.Outputs):
            anything: Record

        class Options(sd.Options):
            what: tuple[int, ...] | list[int] | dict[int, int] | dict[str, int] = sd.option(
                [1], description="anything"
            )

        def compute(self, records):
            return records

    ctx = sd.Context(storage=None, plugins=[*TOY_PLUGINS, Anything])
    keys = {
        repr(v): ctx.new_context(config={"what": v}).key_for("r", "anything").lineage_hash
        for v in ([1, 2], (1, 2), {1: 2}, {"1": 2})
    }
    assert len(set(keys.values())) == 4, keys
