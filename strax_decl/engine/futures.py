"""Chaining ``concurrent.futures.Future`` objects (pools, process pools and Dask alike)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any, Protocol, TypeVar

__all__ = ["then"]

T = TypeVar("T")


class Completing(Protocol):
    """What ``then`` needs of a future: ``concurrent.futures.Future`` and Dask's have it."""

    def add_done_callback(self, fn: Callable[[Any], object]) -> None: ...
    def cancelled(self) -> bool: ...
    def exception(self) -> BaseException | None: ...
    def result(self) -> Any: ...


def then(
    future: Completing, fn: Callable[[Any], T], *, cleanup: Callable[[], None] | None = None
) -> Future[T]:
    """A future of ``fn(future.result())``.

    It always completes when ``future`` does: cancelled if that was cancelled, with its
    exception if it failed, with ``fn``'s exception if ``fn`` raised, so nobody waiting on it
    can wait forever. If its consumer cancelled it first, ``fn`` is not called. ``cleanup``
    runs after, whatever happened. ``future`` may be a Dask future too.
    """
    out: Future[T] = Future()

    def done(f: Completing) -> None:
        try:
            if out.cancelled():
                return  # its consumer gave up: nobody wants the value
            if f.cancelled():
                out.cancel()
                return
            exc = f.exception()
            if exc is not None:
                out.set_exception(exc)
                return
            out.set_result(fn(f.result()))
        except InvalidStateError:
            pass  # cancelled by its consumer meanwhile
        except BaseException as e:  # fn (or reading f) failed: out must complete regardless
            with contextlib.suppress(InvalidStateError):
                out.set_exception(e)
        finally:
            if cleanup is not None:
                cleanup()

    future.add_done_callback(done)
    return out
