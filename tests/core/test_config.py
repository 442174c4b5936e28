"""Options are validated by pydantic when the context is configured, naming option and plugin."""

import collections.abc
import enum
import typing

import numpy as np
import pydantic
import pytest

import strax_decl as sd
from strax_decl.testing import TOY_PLUGINS


def test_wrong_type_names_option_and_plugin(tmp_path):
    with pytest.raises(sd.InvalidOption, match=r"option 'group' of plugin Peaks.*int.*'many'"):
        sd.Context(storage=str(tmp_path), plugins=TOY_PLUGINS, config={"group": "many"})
    assert not any(tmp_path.iterdir()), "no data touched before validation"


def test_out_of_bounds(tmp_path):
    with pytest.raises(
        sd.InvalidOption, match=r"option 'group' of plugin Peaks.*greater than or equal to 1"
    ):
        sd.Context(storage=str(tmp_path), plugins=TOY_PLUGINS, config={"group": 0})


def test_unknown_option(tmp_path):
    with pytest.raises(sd.InvalidOption, match=r"unknown option.*'grup'.*known options:.*group"):
        sd.Context(storage=str(tmp_path), plugins=TOY_PLUGINS, config={"grup": 3})


def test_new_context_validates_too(tmp_path):
    ctx = sd.Context(storage=str(tmp_path), plugins=TOY_PLUGINS)
    with pytest.raises(sd.InvalidOption, match=r"big_area"):
        ctx.new_context(config={"big_area": "huge"})
    assert ctx.config == {}


def test_show_config_lists_default_current_and_description(tmp_path):
    ctx = sd.Context(storage=str(tmp_path), plugins=TOY_PLUGINS, config={"group": 3})
    rows = {r["option"]: r for r in ctx.show_config()}
    assert rows["group"]["default"] == "5"
    assert rows["group"]["current"] == "3"
    assert rows["group"]["plugins"] == "Peaks"
    assert rows["group"]["description"] == "records per peak"
    assert "group" in str(ctx.show_config("peaks"))
    assert "seed" not in {r["option"] for r in ctx.show_config("peaks")}


def test_an_unknown_option_gets_a_did_you_mean():
    with pytest.raises(sd.InvalidOption, match=r"'gruop': did you mean 'group'\?"):
        sd.Context(storage=None, plugins=TOY_PLUGINS, config={"gruop": 3})


@pytest.mark.parametrize("value", [True, "20", 2.5, 2.0])
def test_values_pydantic_would_silently_convert_are_refused(tmp_path, value):
    with pytest.raises(sd.InvalidOption, match=r"option 'group' of plugin Peaks.*not an int"):
        sd.Context(storage=str(tmp_path), plugins=TOY_PLUGINS, config={"group": value})


def test_a_list_for_a_tuple_option_and_an_int_for_a_float_option_are_taken():
    class Opts(sd.Options):
        span: tuple[int, int] = sd.option((0, 1), description="a range")
        gain: float = sd.option(1.0, description="a gain")

    opts = Opts.model_validate({"span": [3, 4], "gain": 2})
    assert opts.span == (3, 4) and opts.gain == 2.0


class Strict(sd.Options):
    flag: bool = sd.option(False, description="a switch")
    count: int = sd.option(1, description="a count")
    label: int | str = sd.option(0, description="a number or a name")
    cuts: tuple[float, float] = sd.option((0.0, 1.0), description="a range")


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"flag": 1}, "only a bool is a bool"),
        ({"flag": "yes"}, "only a bool is a bool"),
        ({"count": np.float64(3.0)}, "a float is not an int"),
        ({"count": np.bool_(True)}, "a bool is not an int"),
        ({"cuts": (0.5, True)}, r"item 1 \(True\): a bool is not a float"),
        ({"cuts": ["0.5", 2]}, r"item 0 \('0.5'\): a str is not a float"),
    ],
)
def test_strictness_reaches_bools_numpy_scalars_and_tuple_items(values, problem):
    with pytest.raises(ValueError, match=problem):
        Strict.model_validate(values)


def test_what_keeps_its_meaning_is_taken():
    opts = Strict.model_validate(
        {"flag": np.bool_(True), "count": np.int64(7), "label": "20", "cuts": [1, 2.5]}
    )
    assert opts.flag is True and opts.count == 7 and opts.label == "20"
    assert opts.cuts == (1.0, 2.5)
    assert Strict.model_validate({"label": 20}).label == 20  # int | str: an int stays an int


class Level(enum.IntEnum):
    low = 1
    high = 2


def parse_ns(text: object) -> object:
    """``"1.5us"`` -> 1500: the author's own converter."""
    return round(float(text[:-2]) * 1000) if isinstance(text, str) and text.endswith("us") else text


Count = typing.NewType("Count", int)


class Declared(sd.Options):
    mode: typing.Literal[1, 2] = sd.option(1, description="a mode")
    level: Level = sd.option(Level.low, description="a level")
    items: list[int] = sd.option([], description="numbers")
    seq: collections.abc.Sequence[int] = sd.option((), description="numbers")
    by_id: dict[int, float] = sd.option({}, description="per channel")
    count: Count = sd.option(Count(1), description="a count")
    window: typing.Annotated[int, pydantic.BeforeValidator(parse_ns)] = sd.option(
        1000, description="ns, or text in us"
    )


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"mode": True}, "True is not 1"),
        ({"mode": 1.0}, "1.0 is not 1"),
        ({"level": "1"}, "'1' is not a member of Level"),
        ({"level": True}, "True is not a member of Level"),
        ({"items": np.array([1.5, 2.5])}, r"item 0 \(1.5\): a float is not an int"),
        ({"items": np.array([True])}, r"item 0 \(True\): a bool is not an int"),
        ({"seq": [2.0]}, r"item 0 \(2.0\): a float is not an int"),
        ({"by_id": {True: 1.0}}, "key True: a bool is not an int"),
        ({"count": "3"}, "a str is not an int"),
    ],
)
def test_strictness_reaches_literals_enums_arrays_abc_types_keys_and_newtypes(values, problem):
    with pytest.raises(ValueError, match=problem):
        Declared.model_validate(values)


def test_an_author_s_own_converter_and_values_of_the_right_type_are_taken():
    opts = Declared.model_validate(
        {"mode": 2, "level": 2, "items": np.array([3, 4]), "by_id": {7: 1}, "window": "1.5us"}
    )
    assert opts.mode == 2 and opts.level is Level.high and opts.items == [3, 4]
    assert opts.by_id == {7: 1.0} and opts.window == 1500


class Thing(sd.Schema):
    time: sd.i64
    endtime: sd.i64


def test_a_wrong_default_is_named_as_the_plugin_s_default():
    class BadDefault(sd.Plugin):
        version = "0.1.0"

        class Outputs(sd.Outputs):
            things: Thing = sd.output(description="nothing")

        class Options(sd.Options):
            n: int = sd.option(2.0, description="declared int, defaulting to a float")

        def source(self, run_id):  # pragma: no cover - never run
            yield from ()

    with pytest.raises(
        sd.InvalidOption,
        match=r"option 'n' of plugin BadDefault: .*a float is "
        r"not an int \(got \"<the plugin's default, 2.0>\"\)",
    ):
        sd.Context(storage=None, plugins=[BadDefault])
