"""The code hash of a plugin class: what ``version = "auto"`` and the stale-version warning use.

It covers the source of the class and of every user class it derives from (a base's change
is a change of the subclass too), up to, excluding, the framework's own classes. What it
cannot see: module-level helpers a plugin calls, and code a plugin imports; those need a
version bump.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import sys
import textwrap
from typing import Any

__all__ = ["FRAMEWORK_MODULES", "code_hash"]

#: Modules of the framework's own plugin classes (``Plugin`` and the plugin kinds): their code
#: is versioned with strax_decl, not with each plugin, so it stays out of a plugin's code hash.
FRAMEWORK_MODULES = frozenset({"strax_decl.plugin", "strax_decl.kinds"})

#: Attributes the framework derives on each plugin class (never part of its code).
_DERIVED = frozenset(
    {
        "name",
        "inputs",
        "outputs",
        "option_specs",
        "code_hash",
        "version",
        "abstract",
        "is_source",
        "compute_takes_start_end",
        "compute_is_generator",
        "_auto_version",
    }
)


def _user_classes(cls: type) -> list[type]:
    """``cls`` and the bases whose code is the plugin author's: its MRO up to, excluding, the
    framework's classes (and the standard library's, e.g. ``abc.ABC``)."""
    return [
        c
        for c in cls.__mro__
        if c.__module__ not in FRAMEWORK_MODULES
        and c.__module__.partition(".")[0] not in sys.stdlib_module_names
    ]


def _own_functions(cls: type) -> list[Any]:
    """Functions defined in ``cls``'s own body (methods, static/class methods, properties)."""
    out: list[Any] = []
    for value in vars(cls).values():
        if isinstance(value, staticmethod | classmethod):
            value = value.__func__
        if isinstance(value, property):
            out.extend(f for f in (value.fget, value.fset, value.fdel) if f is not None)
            continue
        fn = inspect.unwrap(value) if callable(value) else value
        if getattr(fn, "__code__", None) is not None:
            out.append(fn)
    return out


def _defined_once(cls: type) -> bool:
    """Whether one class statement in ``cls``'s file has its qualified name (then
    ``inspect.getsource`` cannot have found another one)."""
    try:
        tree = ast.parse("".join(inspect.findsource(inspect.getmodule(cls) or cls)[0]))
    except (OSError, TypeError, SyntaxError, ValueError):
        return False
    count = 0

    def visit(node: ast.AST, prefix: str) -> None:
        nonlocal count
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                qualname = prefix + child.name
                count += qualname == cls.__qualname__
                visit(child, qualname + ".")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, prefix + child.name + ".<locals>.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return count == 1


def _class_source(cls: type) -> str | None:
    """The source of ``cls``'s own class statement, or None if it cannot be found for sure.

    Before Python 3.13 ``inspect.getsource`` looks a class up by its qualified name, and
    returns the first class statement of that name in the file (a class redefined in a test
    module, in a loop, in two functions of one name): the source found is kept only if it
    holds the class's own methods or is the only statement of that name. From 3.13 on,
    ``__firstlineno__`` says where the class is.
    """
    try:
        lines, lnum = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return None
    source = textwrap.dedent("".join(lines))
    first = getattr(cls, "__firstlineno__", None)
    if first is not None:
        return source if lnum == first else None
    try:
        filename = inspect.getsourcefile(cls)
    except TypeError:
        return None
    span = range(lnum, lnum + len(lines))
    codes = [fn.__code__ for fn in _own_functions(cls)]
    own = [c for c in codes if c.co_filename == filename]
    if len(own) != len(codes) or not all(c.co_firstlineno in span for c in own):
        return None
    return source if own or _defined_once(cls) else None


def _code_digest(code: Any) -> str:
    """Bytecode, names and constants of a code object (and of the code objects inside it)."""
    consts = [_code_digest(c) if inspect.iscode(c) else repr(c) for c in code.co_consts]
    return f"{code.co_code.hex()}|{code.co_names}|{consts}"


def _bytecode(cls: type) -> str:
    """What defines ``cls`` when its source cannot be read: its own functions' bytecode, its
    simple class attributes and its nested declarations' fields."""
    parts = []
    for name in sorted(vars(cls)):
        if name in _DERIVED or (name.startswith("__") and name.endswith("__")):
            continue
        value = vars(cls)[name]
        if isinstance(value, staticmethod | classmethod):
            value = value.__func__
        fns = [value.fget, value.fset] if isinstance(value, property) else [value]
        codes = [getattr(f, "__code__", None) for f in fns]
        if any(c is not None for c in codes):
            parts.append(f"{name}: " + ";".join(_code_digest(c) for c in codes if c is not None))
        elif isinstance(value, type) and hasattr(value, "model_fields"):
            fields = [
                (f, repr(info.annotation), repr(info.default), repr(info.json_schema_extra))
                for f, info in value.model_fields.items()
            ]
            parts.append(f"{name}: {fields}")
        elif value is None or isinstance(value, str | int | float | bool | tuple):
            parts.append(f"{name}: {value!r}")
    return "\n".join(parts)


def code_hash(cls: type) -> str:
    """Hash of the plugin's code: the source of its class and of every user class it derives
    from (a base's change is its change too), else their bytecode.

    A plugin that derives only from framework classes hashes its source alone, exactly as
    before bases were included, so the code hashes recorded with stored data stay valid.
    """
    classes = _user_classes(cls) or [cls]
    sources = {c: _class_source(c) for c in classes}
    own = sources[cls]
    if classes == [cls] and own is not None:
        text = own
    else:
        text = "\n".join(
            f"class {c.__module__}.{c.__qualname__}\n" + (sources[c] or "bytecode\n" + _bytecode(c))
            for c in classes
        )
    return hashlib.sha256(text.encode()).hexdigest()[:16]
