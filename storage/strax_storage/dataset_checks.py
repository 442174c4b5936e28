"""The laws a stored data set's metadata must obey before any of its rows is trusted.

Pure functions returning what is wrong (a phrase for DataCorrupted) or None, so the reader
(``loader``) judges every data set the same way and each law can be tested alone: each field
array's Zarr metadata agrees with the group attributes; the chunk index has non-negative row
counts summing to the arrays' length, first rows following the counts, touching chunks and the
span the attributes record.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

__all__ = ["array_metadata_problem", "index_problem"]


def array_metadata_problem(raw: bytes, expected: dict[str, Any]) -> str | None:
    """What is wrong with an array's ``zarr.json`` (``raw``) given the ``expected`` values of
    its keys (implied by the group attributes), or None."""
    try:
        doc = json.loads(raw)
    except ValueError as e:
        return f"array metadata is not JSON ({e})"
    if not isinstance(doc, dict):
        return f"array metadata is not a JSON object: {raw[:40]!r}"
    actual = {k: doc.get(k) for k in expected}
    if actual == expected:
        return None
    wrong = [(k, actual[k], e) for k, e in expected.items() if actual[k] != e]
    details = "; ".join(f"{k} is {a!r}, attributes imply {e!r}" for k, a, e in wrong)
    return f"array disagrees with the group attributes: {details}"


def index_problem(
    starts: np.ndarray,
    ends: np.ndarray,
    first_rows: np.ndarray,
    counts: np.ndarray,
    n_rows: int,
    attrs_span: tuple[object, object],
) -> str | None:
    """What is wrong with this chunk index (a phrase for DataCorrupted), or None.

    ``n_rows``: the rows the field arrays hold; ``attrs_span``: ``(start, end)`` as the group
    attributes record them.
    """
    if (counts < 0).any():
        return "the chunk index has negative row counts"
    total = int(counts.sum())
    if total != n_rows:
        return f"the chunk index row counts sum to {total}, but the arrays hold {n_rows} rows"
    n = len(counts)
    expected_first = np.concatenate([[0], np.cumsum(counts)[:-1]]) if n else counts
    if not np.array_equal(first_rows, expected_first):
        return "the chunk index first rows do not follow the row counts"
    if (ends < starts).any() or (starts[1:] != ends[:-1]).any():
        return "the chunk index has chunks that do not touch"
    span = (int(starts[0]), int(ends[-1])) if n else (None, None)
    if span != attrs_span:
        return f"the chunk index spans {span}, the attributes say {attrs_span}"
    return None
