"""The one base class of every error strax_decl raises on purpose.

``except sd.StraxDeclError`` catches what the framework itself refused or found wrong (a bad
declaration, an unknown option, a stuck pipeline, failed runs...), and nothing a user's plugin
raised. Each error also keeps its built-in base (``TypeError``, ``ValueError``, ...), so code
written against those still works. The store's errors have their own base,
``strax_storage.StorageError``: the storage layer imports nothing from strax_decl.
"""

from __future__ import annotations

__all__ = ["LiveTimeout", "StraxDeclError"]


class StraxDeclError(Exception):
    """Base class of every error raised on purpose by ``strax_decl``."""


class LiveTimeout(StraxDeclError, TimeoutError):
    """A live source had no new data for its ``live_timeout`` (the run did not end either).

    Not a failure of the data: like an interrupt, it leaves resumable data sets ``partial``
    and discards the rest, none marked failed (docs/live.md)."""
