"""The user's API: ``Context`` (construction and introspection in ``context.py``, getting
data in ``getters.py``)."""

from strax_decl.context.context import Context, StorageArg
from strax_decl.context.getters import Processor, RunIds, Targets
from strax_decl.rows import OptionTable

__all__ = ["Context", "OptionTable", "Processor", "RunIds", "StorageArg", "Targets"]
