"""strax_decl: declarative streaming plugins for chunked, time-ordered data, stored in Zarr.

The names below are loaded on first use (PEP 562) from ``strax_decl.api``: importing a
submodule (``strax_decl.cli`` for the command line's start-up) does not import the whole
framework (numba, zarr, pydantic). ``import strax_decl as sd; sd.Context`` works as usual.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - the names, for type checkers and IDEs
    from strax_decl.api import *  # noqa: F403
    from strax_decl.version import __version__ as __version__


def __getattr__(name: str) -> Any:
    """``sd.Context`` and friends: the public API, imported on first use."""
    import importlib

    if name == "__version__":  # importlib.metadata (~10-30 ms): not on `strax-decl ls`'s path
        from strax_decl.version import __version__

        globals()[name] = __version__
        return __version__
    api = importlib.import_module("strax_decl.api")  # the one list of public names
    if name == "__all__":
        return api.__all__
    if name in api.__all__:
        value = getattr(api, name)
        globals()[name] = value
        return value
    try:  # a submodule used as an attribute (``sd.testing`` after importing it)
        return importlib.import_module(f"strax_decl.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"strax_decl.{name}":
            raise
        raise AttributeError(f"module 'strax_decl' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    import importlib

    api = importlib.import_module("strax_decl.api")
    return sorted(set(globals()) | set(api.__all__) | {"__version__"})
