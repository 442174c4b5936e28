"""Keys of stored data sets and the directory names derived from them.

A data set lives at ``<run_id>/<data_type>-<lineage_hash>``. Neither a data type nor a lineage
hash may contain ``-``, so the directory name parses back into exactly one key. While a local
data set is being written it lives under ``<run_id>/.tmp-<data_type>-<hash>-<uuid>``; a name
starting with ``.`` can never collide with a finished data set.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Final

from strax_storage.names import validate_name

__all__ = ["TMP_PREFIX", "TRASH_PREFIX", "DataKey", "parse_dirname", "parse_tmp_dirname"]

TMP_PREFIX: Final = ".tmp-"
"""Prefix of a local data set that is still being written (renamed into place at the end)."""
TRASH_PREFIX: Final = ".trash-"
"""Prefix of a local data set that is being deleted (renamed away first, then removed)."""

_TMP_SUFFIX = re.compile(r"-[0-9a-f]{12}")


@dataclass(frozen=True, slots=True, order=True)
class DataKey:
    """Identity of one stored data set: which run, which data type, which lineage.

    Validated on construction, so a DataKey can always be turned into a path safely.
    """

    run_id: str
    data_type: str
    lineage_hash: str

    def __post_init__(self) -> None:
        validate_name("run_id", self.run_id)
        validate_name("data_type", self.data_type)
        validate_name("lineage_hash", self.lineage_hash)

    @property
    def dirname(self) -> str:
        """Name of the data set's group inside its run: ``<data_type>-<lineage_hash>``."""
        return f"{self.data_type}-{self.lineage_hash}"

    @property
    def path(self) -> str:
        """Path of the data set's group relative to the store root."""
        return f"{self.run_id}/{self.dirname}"

    def tmp_dirname(self) -> str:
        """A fresh, unique name to write this data set under before renaming it into place."""
        return f"{TMP_PREFIX}{self.dirname}-{uuid.uuid4().hex[:12]}"

    def __str__(self) -> str:
        return self.path


def parse_dirname(run_id: str, name: str) -> DataKey | None:
    """The key stored under directory ``name`` of run ``run_id``, or None if it is not one."""
    data_type, sep, lineage_hash = name.partition("-")
    if not sep:
        return None
    try:
        return DataKey(run_id, data_type, lineage_hash)
    except (ValueError, TypeError):
        return None


def parse_tmp_dirname(run_id: str, name: str) -> DataKey | None:
    """The key being written under temporary directory ``name``, or None if it is not one."""
    if not name.startswith(TMP_PREFIX) or _TMP_SUFFIX.fullmatch(name[-13:]) is None:
        return None
    return parse_dirname(run_id, name[len(TMP_PREFIX) : -13])
