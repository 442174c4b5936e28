"""Plugin modules from a module name or a ``.py`` file: the one loader.

The command line (``--plugins``) and a context rebuilt in another process (``ContextSpec``)
both load plugin code this way, so a file loads under the same rules everywhere: once per
process, registered in ``sys.modules`` before it runs (plugin classes find their source, for
``version = "auto"``), with its folder on ``sys.path`` (sibling imports, as when it is run).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from strax_decl.errors import StraxDeclError
from strax_decl.plugin import Plugin

__all__ = [
    "MAIN_ALIAS",
    "PluginLoadError",
    "expand_plugins",
    "import_plugin_module",
    "load_plugins",
    "module_from_file",
    "plugins_of",
]

MAIN_ALIAS = "__strax_decl_main__"
"""The name a script's ``__main__`` module is loaded under elsewhere (``__main__`` is taken)."""


class PluginLoadError(StraxDeclError, ImportError):
    """A plugin module or file cannot be found, or holds no plugins.

    Errors raised while the module itself runs (a broken import inside it) pass unchanged.
    """


def looks_like_file(spec: str) -> bool:
    """Whether ``spec`` names a file (``x.py``, ``dir/x``) rather than a module."""
    return spec.endswith(".py") or os.sep in spec or "/" in spec


def import_plugin_module(spec: str) -> ModuleType:
    """The module named ``spec``, or the ``.py`` file at path ``spec``, imported once."""
    if looks_like_file(spec):
        path = Path(spec).resolve()
        if not path.is_file():
            raise PluginLoadError(f"plugin file {spec!r} not found")
        return module_from_file(path)
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as e:
        if e.name is not None and spec.startswith(e.name):
            raise PluginLoadError(f"cannot import plugin module {spec!r}: {e}") from None
        raise


def module_from_file(file: str | os.PathLike[str], name: str | None = None) -> ModuleType:
    """Execute ``file`` as the module ``name`` (default: the file's stem), once per process.

    ``__main__`` is loaded as :data:`MAIN_ALIAS`. If another module already has the name, the
    file gets a name of its own (derived from its path). As with multiprocessing's spawn, a
    script loaded this way runs its top level again: keep work under
    ``if __name__ == "__main__":``.
    """
    path = Path(file).resolve()
    modname = name or path.stem
    if modname == "__main__":
        modname = MAIN_ALIAS
    loaded = sys.modules.get(modname)
    if loaded is not None:
        if _file_of(loaded) == path:
            return loaded
        modname = f"_strax_decl_plugins_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
        loaded = sys.modules.get(modname)
        if loaded is not None:
            return loaded
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise PluginLoadError(f"cannot import plugin file {str(file)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module  # registered first: classes find their source ("auto")
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # sibling imports, as `python file.py` allows
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(modname, None)
        raise
    return module


def _file_of(module: ModuleType) -> Path | None:
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file else None


def plugins_of(module: ModuleType) -> list[type[Plugin]]:
    """The module's ``PLUGINS`` list if it defines one, else every concrete plugin class
    defined in the module itself (not imported into it), in definition order."""
    declared = getattr(module, "PLUGINS", None)
    if declared is not None:
        return list(declared)
    return [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, Plugin)
        and obj.__module__ == module.__name__
        and not obj.__dict__.get("abstract", False)
    ]


def expand_plugins(items: Iterable[type[Plugin] | ModuleType]) -> list[type[Plugin]]:
    """Plugin classes, with every module among ``items`` replaced by its plugins
    (:func:`plugins_of`, strax's ``register_all``); duplicates dropped, order kept."""
    out: dict[type[Plugin], None] = {}
    for item in items:
        if isinstance(item, ModuleType):
            found = plugins_of(item)
            if not found:
                raise PluginLoadError(
                    f"no plugins found in module {item.__name__} (define PLUGINS or plugin classes)"
                )
            out.update(dict.fromkeys(found))
        elif isinstance(item, type) and issubclass(item, Plugin):
            out[item] = None
        else:
            raise TypeError(f"plugins must be Plugin classes or modules of them, got {item!r:.100}")
    return list(out)


def load_plugins(spec: str) -> list[type[Plugin]]:
    """Plugin classes of a module name or a ``.py`` file path (see :func:`plugins_of`)."""
    plugins = plugins_of(import_plugin_module(spec))
    if not plugins:
        raise PluginLoadError(f"no plugins found in {spec!r} (define PLUGINS or plugin classes)")
    return plugins
