"""The installed package's version, in a module of its own so that any layer can read it
without importing the package root (which imports every layer)."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("strax-decl")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
