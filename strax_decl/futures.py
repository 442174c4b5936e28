"""Chaining ``concurrent.futures.Future`` objects (pools, process pools and Dask alike)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["then"]

T = TypeVar("T")


def then(future: Future[Any], fn: Callable[[Any], T]) -> Future[T]:
    """A future of ``fn(future.result())``.

    It always completes when ``future`` does: cancelled if that was cancelled, with its
    exception if it failed, with ``fn``'s exception if ``fn`` raised, so nobody waiting on it
    can wait forever.
    """
    out: Future[T] = Future()

    def done(f: Future[Any]) -> None:
        if f.cancelled():
            out.cancel()
            return
        exc = f.exception()
        if exc is not None:
            out.set_exception(exc)
            return
        try:
            value = fn(f.result())
        except BaseException as e:  # the future must complete regardless
            out.set_exception(e)
            return
        out.set_result(value)

    future.add_done_callback(done)
    return out
