"""``--config KEY=VALUE``: VALUE read by the type the option declares, JSON as a fallback.

- ``str`` options take VALUE as written (``--config run_name=2024`` is ``"2024"``);
- ``int`` / ``float``: a number (``"20"`` is 20 here: the command line has no other way to
  write one; in Python the option stays strict); ``2.0`` for an int is refused (ValueError,
  which ``parse_config`` reports naming the KEY);
- ``bool``: ``true``/``false``, ``yes``/``no``, ``1``/``0``, ``on``/``off``;
- a union of several types: JSON if that gives one of them, else the text if ``str`` is
  one (``--config x=2.5`` for ``str | int`` is ``"2.5"``);
- ``tuple`` / ``list`` / ``set``: comma-separated items, each read by its declared type
  (``--config percentiles=5,95``), or JSON (``[5, 95]``);
- ``X | None``: ``none``/``null`` is None, anything else read as ``X``;
- ``Literal[...]``: the literal whose text is VALUE;
- anything else (dicts, models): JSON, or the text itself if it is not JSON (pydantic then
  validates it and names the option if it does not fit).
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

__all__ = ["parse_value"]

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _is_a(value: Any, member: Any) -> bool:
    """Whether ``value`` (JSON-loaded) already is of type ``member``."""
    if isinstance(value, bool):
        return member is bool
    if member is float:
        return isinstance(value, int | float)
    origin = typing.get_origin(member) or member
    return isinstance(origin, type) and isinstance(value, origin)


def parse_value(raw: str, annotation: Any) -> Any:
    """``raw`` (a command-line value) as the type ``annotation`` declares (see the module)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return parse_value(raw, args[0])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) < len(args) and raw.strip().lower() in ("none", "null", ""):
            return None
        if len(members) == 1:
            return parse_value(raw, members[0])
        loaded = _json_or_text(raw)
        if any(_is_a(loaded, m) for m in members) or str not in members:
            return loaded
        return raw  # not of any other member's type: the text, for the str member
    if origin is typing.Literal:
        for value in args:
            if str(value) == raw or (isinstance(value, str) and value == raw.strip()):
                return value
        return _json_or_text(raw)
    if annotation is str:
        return raw
    if annotation is bool:
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(f"{raw!r} is not a bool (true/false, yes/no, 1/0, on/off)")
    if annotation is int:
        try:
            return int(raw.strip())
        except ValueError:
            raise ValueError(f"{raw!r} is not an int (a whole number, e.g. 20)") from None
    if annotation is float:
        try:
            return float(raw.strip())
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
    if origin in (tuple, list, set, frozenset) or annotation in (tuple, list, set, frozenset):
        text = raw.strip()
        if text.startswith(("[", "(")):
            loaded = _json_or_text(text)
            if isinstance(loaded, list):
                return loaded
        items = [] if not text else [part.strip() for part in text.split(",")]
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) == len(items):
                return tuple(parse_value(i, a) for i, a in zip(items, args, strict=True))
            return items  # the wrong number: refused by validation, naming the option
        item_type = args[0] if args else Any
        return [
            parse_value(i, item_type) if item_type is not Any else _json_or_text(i) for i in items
        ]
    return _json_or_text(raw)
