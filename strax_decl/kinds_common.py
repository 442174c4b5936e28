"""Declaration checks shared by the plugin kinds (``kinds``, ``kinds_loop``, ``kinds_exhaust``).

Each kind checks its class when it is defined, and the names ``compute`` (or its own hook)
takes once the input kinds are known; the same mistakes get the same messages everywhere.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np

from strax_decl.plugin import Plugin, PluginDeclarationError

__all__ = ["check_kind_parameters", "kinds_of", "require_own_hook", "window_pair"]


def require_own_hook(cls: type[Plugin], kind: type[Plugin], hook: str, usage: str) -> None:
    """A plugin kind that supplies ``compute`` itself: the plugin defines ``hook`` instead."""
    if cls.compute is not kind.compute:
        raise PluginDeclarationError(
            f"plugin {cls.name}: a {kind.__name__} defines {hook}, not compute"
        )
    if getattr(cls, hook) is getattr(kind, hook):
        raise PluginDeclarationError(f"plugin {cls.name}: define {hook}{usage}")


def kinds_of(plugin: type[Plugin], input_kinds: Mapping[str, str]) -> list[str]:
    """The kinds of ``plugin``'s inputs, in declaration order (the names compute receives)."""
    return list(dict.fromkeys(input_kinds.get(d, d) for d in plugin.inputs))


def check_kind_parameters(
    plugin: str, fn: Any, kinds: list[str], skip: int = 0, what: str = "compute"
) -> None:
    """Arguments are named by input kind: say so at start, not as a TypeError mid-run."""
    params = list(inspect.signature(fn).parameters.values())[1 + skip :]  # after self
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = [n for n in names if n not in kinds]
    missing = [k for k in kinds if k not in names]
    if unknown or missing:
        raise PluginDeclarationError(
            f"plugin {plugin}: {what} takes {names}, but it is called with one argument per "
            f"input kind: {kinds} (same-kind inputs arrive merged, named by their kind)"
        )


def window_pair(plugin: str, window: Any, what: str = "window") -> tuple[int, int]:
    """``window`` as ``(left, right)`` ns, or PluginDeclarationError naming the plugin."""
    pair = window if isinstance(window, tuple | list) else (window, window)
    ok = len(pair) == 2 and all(
        isinstance(w, int | np.integer) and not isinstance(w, bool) and w >= 0 for w in pair
    )
    if not ok:
        raise PluginDeclarationError(
            f"plugin {plugin}: {what} must be an int >= 0 (ns) or a (left, right) pair of "
            f"them, got {window!r}"
        )
    return int(pair[0]), int(pair[1])
