"""``--config KEY=VALUE``: VALUE read by the type the option declares, JSON as a fallback.

- ``str`` options take VALUE as written (``--config run_name=2024`` is ``"2024"``);
- ``int`` / ``float``: a number (``"20"`` is 20 here: the command line has no other way to
  write one; in Python the option stays strict);
- ``bool``: ``true``/``false``, ``yes``/``no``, ``1``/``0``, ``on``/``off``;
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
        return _json_or_text(raw)
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
        return raw  # refused by the option's validation, naming it
    if annotation is int:
        try:
            return int(raw.strip())
        except ValueError:
            return raw
    if annotation is float:
        try:
            return float(raw.strip())
        except ValueError:
            return raw
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
