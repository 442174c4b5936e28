"""The metadata laws every data set is judged by before a row is read (``dataset_checks``).

The corruption tests (``test_store_corruption.py``) show them on real stores; these show each
law alone, as the reader applies it.
"""

from __future__ import annotations

import json

import numpy as np

from strax_storage.dataset_checks import array_metadata_problem, index_problem


def index(counts: list[int], bounds: list[int]) -> tuple[np.ndarray, ...]:
    c = np.array(counts, dtype=np.int64)
    b = np.array(bounds, dtype=np.int64)
    first = np.concatenate([[0], np.cumsum(c)[:-1]]).astype(np.int64)
    return b[:-1], b[1:], first, c


def test_a_sound_index_passes() -> None:
    starts, ends, first, counts = index([3, 0, 2], [0, 10, 20, 30])
    assert index_problem(starts, ends, first, counts, 5, (0, 30)) is None
    empty = np.zeros(0, dtype=np.int64)
    assert index_problem(empty, empty, empty, empty, 0, (None, None)) is None


def test_each_broken_law_is_named() -> None:
    starts, ends, first, counts = index([3, 2], [0, 10, 20])
    assert "sum to 5, but the arrays hold 6" in index_problem(
        starts, ends, first, counts, 6, (0, 20)
    )
    negative = np.array([6, -1])
    assert "negative" in index_problem(starts, ends, first, negative, 5, (0, 20))
    assert "first rows" in index_problem(starts, ends, first[::-1], counts, 5, (0, 20))
    gap = np.array([0, 11])
    assert "do not touch" in index_problem(gap, ends, first, counts, 5, (0, 20))
    assert "spans (0, 20), the attributes say (0, 30)" in index_problem(
        starts, ends, first, counts, 5, (0, 30)
    )


def test_array_metadata_must_agree_with_the_attributes() -> None:
    doc = {"shape": [10], "chunk_grid": 5}
    assert array_metadata_problem(json.dumps(doc).encode(), {"shape": [10]}) is None
    wrong = array_metadata_problem(json.dumps(doc).encode(), {"shape": [12]})
    assert (
        wrong == "array disagrees with the group attributes: shape is [10], attributes imply [12]"
    )
    assert "not JSON" in array_metadata_problem(b"{oops", {"shape": [10]})
    assert "not a JSON object" in array_metadata_problem(b"[1, 2]", {"shape": [10]})
