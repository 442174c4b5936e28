"""Which option values pydantic would silently change: refused before it sees them.

Pydantic's lax mode reads ``True`` as 1, ``"20"`` as 20 and ``2.0`` as 2 for an ``int``
option; a value whose meaning changes like that is almost always a mistake in the config.
Its strict mode would also refuse what config files legitimately give (a list for a tuple),
so this checks only the numbers and bools, by the declared annotation:

- a bool is not an int or a float, and only a bool is a bool;
- a str is not a number (declare ``int | str`` to take one; the command line converts its
  text by the declared type before validation, see ``strax_decl.cli.config_values``);
- no float is an int (not even ``2.0``); an int is a float (JSON writes ``1`` for ``1.0``).

Items of tuples, lists, sets, sequences (a numpy array's too) and dict keys and values are
checked by their declared types; a ``Literal`` or an ``Enum`` takes its values only as their
own type (not ``True`` for ``1``); a ``NewType`` is checked as its base. An ``Annotated``
option with the author's own before, plain or wrap validator is left to it, and a nested
model checks its own fields (its Options may use the same rules).
"""

from __future__ import annotations

import enum
import numbers
import types
import typing
from collections import abc
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BeforeValidator, PlainValidator, WrapValidator

__all__ = ["coercion_problem"]

_SEQUENCES = (tuple, list, set, frozenset, abc.Sequence, abc.Set, abc.MutableSequence)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool | np.bool_)


def _converts(metadata: tuple[Any, ...]) -> bool:
    """Whether ``Annotated`` metadata holds the author's own converter (a pydantic before,
    plain or wrap validator): then the author decides what a value means."""
    return any(isinstance(m, BeforeValidator | PlainValidator | WrapValidator) for m in metadata)


def coercion_problem(value: Any, annotation: Any, metadata: Sequence[Any] = ()) -> str | None:
    """Why ``value`` would be silently converted for ``annotation``, or None if it is not.
    ``metadata``: a pydantic field's (where its ``Annotated`` validators are kept)."""
    if _converts(tuple(metadata)):
        return None
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return None if _converts(args[1:]) else coercion_problem(value, args[0])
    supertype = getattr(annotation, "__supertype__", None)  # a typing.NewType
    if supertype is not None:
        return coercion_problem(value, supertype)
    if origin in (typing.Union, types.UnionType):
        return _union_problem(value, args)
    if origin is typing.Literal:
        if any(type(value) is type(a) and value == a for a in args):
            return None
        matches = [a for a in args if a == value]
        return f"{value!r} is not {matches[0]!r}" if matches else None  # True is not 1
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _enum_problem(value, annotation)
    if isinstance(value, np.ndarray):  # an array for a sequence: its items, by dtype
        value = value.tolist()
    if annotation is bool:
        return None if _is_bool(value) else f"only a bool is a bool, got {type(value).__name__}"
    if annotation is int:
        if _is_bool(value):
            return "a bool is not an int"
        if isinstance(value, str):
            return "a str is not an int (declare `int | str` to take one)"
        if isinstance(value, numbers.Number) and not isinstance(value, numbers.Integral):
            return "a float is not an int"  # 2.0, Decimal("2.0"): not the same kind of thing
        return None
    if annotation is float:
        if _is_bool(value):
            return "a bool is not a float"
        if isinstance(value, str):
            return "a str is not a float (declare `float | str` to take one)"
        return None
    if origin in _SEQUENCES and args and isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(items) != len(args):
                return None  # pydantic names the wrong length
            pairs = list(zip(items, args, strict=True))
        else:
            pairs = [(item, args[0]) for item in items]
        for i, (item, item_type) in enumerate(pairs):
            if (problem := coercion_problem(item, item_type)) is not None:
                return f"item {i} ({item!r}): {problem}"
        return None
    mapping = origin in (dict, abc.Mapping, abc.MutableMapping) and len(args) == 2
    if mapping and isinstance(value, Mapping):
        for key, item in value.items():
            if (problem := coercion_problem(key, args[0])) is not None:
                return f"key {key!r}: {problem}"
            if (problem := coercion_problem(item, args[1])) is not None:
                return f"value of {key!r} ({item!r}): {problem}"
    return None


def _enum_problem(value: Any, annotation: type[enum.Enum]) -> str | None:
    """An enum option takes a member, or a value of the members' own type (``1`` for an
    IntEnum, ``"low"`` for a str Enum); not ``True`` or ``1.0`` for ``1``, nor ``"1"``."""
    if isinstance(value, annotation):
        return None
    if any(type(value) is type(m.value) and value == m.value for m in annotation):
        return None
    return f"{value!r} is not a member of {annotation.__name__} (nor one's value)"


def _exact(value: Any, member: Any) -> bool:
    """Whether ``value`` already is what ``member`` declares (a bool is not an int)."""
    if typing.get_origin(member) is typing.Annotated:
        return _exact(value, typing.get_args(member)[0])
    if typing.get_origin(member) is typing.Literal:
        return any(type(value) is type(a) and value == a for a in typing.get_args(member))
    if member is type(None):
        return value is None
    if _is_bool(value) and member in (int, float):
        return False
    if member is float:
        return isinstance(value, numbers.Real)
    if member is int:
        return isinstance(value, numbers.Integral)
    try:
        return isinstance(member, type) and isinstance(value, member)
    except TypeError:  # a parametrized generic: not decided here
        return False


def _fits(value: Any, member: Any) -> bool:
    """Whether ``value`` is a container of ``member``'s kind (a dict for ``dict[str, int]``)."""
    origin = typing.get_origin(member)
    return isinstance(origin, type) and origin is not typing.Annotated and isinstance(value, origin)


def _union_problem(value: Any, members: tuple[Any, ...]) -> str | None:
    """A union takes ``value`` unchanged if a member already is its type; otherwise pydantic
    would convert it for the first member that converts, so any member's problem counts."""
    if any(_exact(value, m) for m in members):
        return None
    if any(_fits(value, m) and coercion_problem(value, m) is None for m in members):
        return None  # a container already of a member's kind, with items of its types
    problems = (coercion_problem(value, m) for m in members if m is not type(None))
    return next((p for p in problems if p is not None), None)
