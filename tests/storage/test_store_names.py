"""Every name that becomes a path component is validated, with a message naming it."""

from __future__ import annotations

import pytest

from strax_storage import DataKey, validate_name


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("run_id", "run_1"),
        ("run_id", "2024.01.01_a"),
        ("run_id", "r" * 64),
        ("data_type", "peak_basics"),
        ("data_type", "_private"),
        ("lineage_hash", "abc234def"),
    ],
)
def test_valid_names_pass(kind: str, value: str) -> None:
    assert validate_name(kind, value) == value


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("run_id", "a/b", "invalid run_id 'a/b': only letters, digits, '_' and '.' are allowed"),
        ("run_id", "..", "must not start with '.'"),
        ("run_id", ".", "must not start with '.'"),
        ("run_id", ".hidden", "must not start with '.'"),
        ("run_id", "", "must not be empty"),
        ("run_id", "a\x00b", "only letters"),
        ("run_id", "a\\b", "only letters"),
        ("run_id", "räun", "only letters"),
        ("run_id", "r" * 65, "at most 64 characters"),
        ("run_id", "zarr.json", "reserved"),
        ("data_type", "1peaks", "must not start with a digit"),
        ("data_type", "peaks-x", "only letters"),
        ("data_type", "peaks.x", "only letters"),
        ("data_type", "__x", "reserved by Zarr"),
        ("lineage_hash", "ABC", "base32"),
        ("lineage_hash", "abc1", "base32"),
        ("lineage_hash", "ab/c", "base32"),
    ],
)
def test_invalid_names_say_what_and_why(kind: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match="invalid") as err:
        validate_name(kind, value)
    assert message in str(err.value)
    assert kind in str(err.value)


def test_non_string_name_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="run_id must be a str"):
        validate_name("run_id", 5)


def test_datakey_validates_each_part() -> None:
    key = DataKey("run_1", "peaks", "abc234")
    assert key.path == "run_1/peaks-abc234"
    assert str(key) == "run_1/peaks-abc234"
    with pytest.raises(ValueError, match=r"invalid run_id '\.\./x'"):
        DataKey("../x", "peaks", "abc234")
    with pytest.raises(ValueError, match="invalid data_type 'pe/aks'"):
        DataKey("run_1", "pe/aks", "abc234")
    with pytest.raises(ValueError, match="invalid lineage_hash 'abc-234'"):
        DataKey("run_1", "peaks", "abc-234")


def test_datakey_is_frozen_and_hashable() -> None:
    key = DataKey("run_1", "peaks", "abc234")
    assert {key: 1}[DataKey("run_1", "peaks", "abc234")] == 1
    with pytest.raises(AttributeError):
        key.run_id = "other"  # type: ignore[misc]
