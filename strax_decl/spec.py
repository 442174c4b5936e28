"""A context described as plain data, to rebuild it in another process (no Dask here).

:class:`ContextSpec` holds plugin classes by import path (:class:`PluginRef`), stores by
location (:class:`StoreSpec`), the config and the processor settings: strings and numbers,
picklable by construction. ``Context.spec()`` makes one, ``Context.from_spec`` rebuilds the
context from :meth:`ContextSpec.arguments` and checks it with :meth:`ContextSpec.check`, so
this module never needs the ``Context`` class (it sits below it). A pickled ``Context`` travels
as its spec; the Dask face (``strax_decl.cluster``) sends specs to its workers.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from strax_decl.errors import StraxDeclError
from strax_decl.lineage import PerRunLineage
from strax_decl.loading import module_from_file
from strax_decl.plugin import Plugin
from strax_storage import Store, open_store

if TYPE_CHECKING:  # pragma: no cover - typing only
    from strax_decl.context import Context

__all__ = ["ContextSpec", "PluginRef", "SpecError", "StoreSpec"]


class SpecError(StraxDeclError, ValueError):
    """A context cannot be described for (or rebuilt on) another process."""


@dataclass(frozen=True)
class PluginRef:
    """Where a plugin class can be imported from: module, qualified name, source file.

    Classes travel by reference, never by value: another process imports the module (or, if
    that fails, executes the source file, which must then be visible at the same path, e.g. on
    a shared filesystem) and looks the class up. That class must give the same lineage as the
    original; :meth:`ContextSpec.check` makes sure.
    """

    module: str
    qualname: str
    file: str | None = None

    @classmethod
    def of(cls, plugin: type[Plugin]) -> PluginRef:
        module = sys.modules.get(plugin.__module__)
        file = getattr(module, "__file__", None)
        return cls(plugin.__module__, plugin.__qualname__, os.path.abspath(file) if file else None)

    def stays_here(self, plugin: type[Plugin]) -> str | None:
        """Why ``plugin`` cannot be found by this reference in another process (None: it
        can): defined inside a function, in an interactive ``__main__``, or not reachable
        by name from its module. Asked here, before any work is sent away."""
        module = sys.modules.get(self.module)
        if "<locals>" in self.qualname:
            return f"plugin {plugin.name} is defined inside a function ({self.qualname})"
        if self.module == "__main__" and self.file is None:
            return f"plugin {plugin.name} is defined in an interactive session (__main__)"
        if module is None or _lookup(module, self.qualname) is not plugin:
            return f"plugin {plugin.name} cannot be found by name in module {self.module!r}"
        return None

    def resolve(self) -> type[Plugin]:
        """The plugin class, imported in this process."""
        module = self._module()
        found = _lookup(module, self.qualname)
        if found is None:
            raise SpecError(
                f"plugin {self.qualname}: module {module.__name__!r} has no plugin class of "
                "that name (plugin classes must be reachable by name from their module)"
            )
        return found

    def _module(self) -> ModuleType:
        if self.module != "__main__":
            loaded = sys.modules.get(self.module)
            if loaded is not None:
                return loaded
            try:
                return importlib.import_module(self.module)
            except ImportError as e:
                if self.file is None or not os.path.isfile(self.file):
                    raise SpecError(
                        f"plugin {self.qualname}: cannot import module {self.module!r} here "
                        f"({e}); install it where the work runs, or put its file on a "
                        "filesystem every worker sees"
                    ) from e
        elif self.file is None or not os.path.isfile(self.file):
            raise SpecError(
                f"plugin {self.qualname} is defined in __main__ (a script or notebook) and its "
                "source file is not available here; move plugins into an importable module"
            )
        return module_from_file(self.file, self.module)


def _lookup(module: ModuleType, qualname: str) -> type[Plugin] | None:
    """``module.<qualname>``; else a plugin class of that name in a module-level container."""
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            break
    if isinstance(obj, type) and issubclass(obj, Plugin):
        return obj
    # Plugins made by factories (``type(...)`` in a loop) are often kept in lists or dicts.
    for value in list(vars(module).values()):
        items = value.values() if isinstance(value, dict) else value
        if isinstance(value, list | tuple | dict):
            for item in items:
                if (
                    isinstance(item, type)
                    and issubclass(item, Plugin)
                    and item.__qualname__ == qualname
                ):
                    return item
    return None


@dataclass(frozen=True)
class StoreSpec:
    """How to reopen a store elsewhere: its location and tuning (no open handles)."""

    location: str
    readonly: bool = False
    rows_per_chunk: int | None = None
    zstd_level: int | None = None
    storage_options: dict[str, Any] | None = None

    @classmethod
    def of(cls, store: Store) -> StoreSpec:
        url = store.url
        if url.startswith("memory://anonymous-"):
            raise SpecError(
                f"store {url} is an anonymous in-memory store: it exists only in this process "
                "and cannot be reopened elsewhere; use a directory, an object-store URL, or a "
                "named store (memory://NAME, shared only within one process)"
            )
        fs = getattr(store.zarr_store, "fs", None)
        options = getattr(fs, "storage_options", None) if "://" in url else None
        return cls(
            url,
            store.readonly,
            store.rows_per_chunk,
            store.zstd_level,
            dict(options) if options else None,
        )

    @property
    def is_memory(self) -> bool:
        return self.location.startswith("memory://")

    def open(self) -> Store:
        kwargs: dict[str, Any] = {"readonly": self.readonly, "rows_per_chunk": self.rows_per_chunk}
        if self.zstd_level is not None:
            kwargs["zstd_level"] = self.zstd_level
        if self.storage_options:
            kwargs["storage_options"] = self.storage_options
        return open_store(self.location, **kwargs)


@dataclass(frozen=True)
class ContextSpec:
    """Everything needed to rebuild a :class:`~strax_decl.context.Context` in another process.

    Picklable by construction (strings, numbers, the user's config). ``lineage_hashes`` are the
    original context's: :meth:`check` refuses a rebuilt context that disagrees (other plugin
    code or versions installed where it was rebuilt), rather than store data under other keys.
    """

    plugins: tuple[PluginRef, ...]
    storage: tuple[StoreSpec, ...]
    config: dict[str, Any]
    settings: dict[str, Any]
    lineage_hashes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, ctx: Context) -> ContextSpec:
        hashes = {}
        for d in (d for p in ctx.plugins for d in p.outputs):
            # a type whose lineage depends on the run is checked through the rest of its code
            with contextlib.suppress(PerRunLineage):
                hashes[d] = ctx.lineages.hash(d)
        return cls(
            plugins=tuple(PluginRef.of(p) for p in ctx.plugins),
            storage=tuple(StoreSpec.of(s) for s in ctx.stores),
            config=dict(ctx.config),
            settings=ctx.settings(),
            lineage_hashes=hashes,
        )

    def arguments(self) -> dict[str, Any]:
        """``Context(**arguments)`` rebuilds the context: plugins imported, stores opened."""
        return {
            "storage": [s.open() for s in self.storage],
            "plugins": [ref.resolve() for ref in self.plugins],
            "config": self.config,
            **self.settings,
        }

    def check(self, ctx: Context) -> None:
        """Raise SpecError if ``ctx`` gives any data type another lineage hash than recorded."""
        for data_type, expected in self.lineage_hashes.items():
            here = ctx.lineages.hash(data_type)
            if here != expected:
                plugin = ctx.registry.provider(data_type)
                raise SpecError(
                    f"data type {data_type!r} has lineage hash {here} here but {expected} where "
                    f"the work was submitted: plugin {plugin.name} (version {plugin.version}, "
                    f"module {plugin.__module__}) differs; install the same plugin code on "
                    "every worker"
                )
