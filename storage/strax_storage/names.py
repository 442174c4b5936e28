"""Validation of every name that becomes a path component in the store.

The store builds paths like ``<root>/<run_id>/<data_type>-<lineage_hash>/<field>/...``, so a
name containing ``/``, ``..``, NUL or odd unicode could escape the root or make two keys share
a directory. One function checks them all, so that keys, savers and listing agree on what a
valid name is.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["MAX_LEN", "NAME_KINDS", "validate_name"]

MAX_LEN: Final = 64
"""Longest run id, data type, lineage hash or field name (characters)."""

_RULES: Final[dict[str, tuple[re.Pattern[str], str]]] = {
    "run_id": (re.compile(r"[A-Za-z0-9_.]+"), "only letters, digits, '_' and '.' are allowed"),
    "data_type": (
        re.compile(r"[A-Za-z_][A-Za-z0-9_]*"),
        "only letters, digits and '_' are allowed, and it must not start with a digit",
    ),
    "lineage_hash": (
        re.compile(r"[a-z2-7]+"),
        "only lowercase letters a-z and digits 2-7 (base32) are allowed",
    ),
    "field": (
        re.compile(r"[A-Za-z_][A-Za-z0-9_]*"),
        "only letters, digits and '_' are allowed, and it must not start with a digit",
    ),
}

NAME_KINDS: Final = tuple(_RULES)


def validate_name(kind: str, value: object) -> str:
    """Return ``value`` if it is a valid ``kind`` name, else raise ValueError saying why.

    ``kind`` is one of ``run_id``, ``data_type``, ``lineage_hash``, ``field``. A non-string
    raises TypeError.
    """
    try:
        pattern, allowed = _RULES[kind]
    except KeyError:
        raise ValueError(f"unknown name kind {kind!r}; expected one of {NAME_KINDS}") from None
    if not isinstance(value, str):
        raise TypeError(f"{kind} must be a str, got {type(value).__name__} {value!r}")
    if not value:
        raise ValueError(f"invalid {kind} '': must not be empty")
    if len(value) > MAX_LEN:
        raise ValueError(
            f"invalid {kind} {value!r}: at most {MAX_LEN} characters are allowed, got {len(value)}"
        )
    if pattern.fullmatch(value) is None:
        raise ValueError(f"invalid {kind} {value!r}: {allowed}")
    if value.startswith("."):
        # '.', '..' and hidden names: '.' is allowed inside run ids only.
        raise ValueError(f"invalid {kind} {value!r}: must not start with '.'")
    if value == "zarr.json":
        # The root group's metadata file lives next to the run directories.
        raise ValueError(f"invalid {kind} {value!r}: reserved by Zarr")
    if value.startswith("__"):
        # Zarr reserves node names starting with '__'.
        raise ValueError(f"invalid {kind} {value!r}: must not start with '__' (reserved by Zarr)")
    return value
