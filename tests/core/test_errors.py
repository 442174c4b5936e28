"""One error base class: ``except sd.StraxDeclError`` catches every error strax_decl raises on
purpose, and each error keeps its built-in base, so ``except TypeError`` code still works."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import strax_decl as sd
from strax_decl.testing import TOY_PLUGINS, FailedOnPurpose

#: Stands for an error of a user's plugin (raised by the test plugins): not the framework's.
NOT_OURS = {FailedOnPurpose}


def _exception_classes() -> list[type[BaseException]]:
    """Every exception class defined in a module of strax_decl (warnings aside)."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(sd.__path__, "strax_decl."):
        if info.name.endswith("__main__"):
            continue  # running it is the command line
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and not issubclass(obj, Warning)
                and obj.__module__ == info.name
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


def test_every_public_exception_is_a_strax_decl_error() -> None:
    public = [getattr(sd, name) for name in sd.__all__]
    errors = [
        e
        for e in public
        if inspect.isclass(e)
        and issubclass(e, BaseException)
        and not issubclass(e, Warning)
        # the storage layer's errors keep their own base (it imports nothing from us)
        and not e.__module__.startswith("strax_storage")
    ]
    assert sd.StraxDeclError in errors and len(errors) > 5
    assert [e.__name__ for e in errors if not issubclass(e, sd.StraxDeclError)] == []


@pytest.mark.parametrize("error", _exception_classes(), ids=lambda e: e.__qualname__)
def test_every_exception_defined_in_strax_decl_is_one(error: type[BaseException]) -> None:
    if error in NOT_OURS:
        assert not issubclass(error, sd.StraxDeclError)
    else:
        assert issubclass(error, sd.StraxDeclError)


def test_built_in_bases_are_kept() -> None:
    assert issubclass(sd.PluginDeclarationError, TypeError)
    assert issubclass(sd.PluginGaveWrongOutput, TypeError)
    assert issubclass(sd.SchemaError, TypeError)
    assert issubclass(sd.InvalidOption, ValueError)
    assert issubclass(sd.RegistrationError, ValueError)
    assert issubclass(sd.RunsFailed, RuntimeError)


def test_one_except_catches_what_the_framework_refuses() -> None:
    with pytest.raises(sd.StraxDeclError, match="no_such_option"):
        sd.Context(storage=None, plugins=TOY_PLUGINS, config={"no_such_option": 1})
    with pytest.raises(ValueError, match="no_such_option"):  # the built-in base still works
        sd.Context(storage=None, plugins=TOY_PLUGINS, config={"no_such_option": 1})
    failed = sd.Context(storage=None, plugins=TOY_PLUGINS, config={"crash_at_chunk": 0}).make(
        ["a"], "peaks"
    )
    with pytest.raises(sd.StraxDeclError, match="1 failed"):
        failed.raise_if_failed()
