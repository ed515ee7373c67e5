"""``cimc.pareto``: the sorted, blocked nondominated set equals the definition, computed whole."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cimc.pareto import BLOCK, nondominated


def by_definition(costs: np.ndarray, keep_twins: bool) -> np.ndarray:
    le = np.all(costs[None, :, :] <= costs[:, None, :], axis=2)  # [i, j]: j no worse than i
    lt = np.any(costs[None, :, :] < costs[:, None, :], axis=2)
    dominated = np.any(le & lt, axis=1)
    if keep_twins:
        return ~dominated
    n = len(costs)
    earlier_twin = np.any(le & ~lt & (np.arange(n)[None, :] < np.arange(n)[:, None]), axis=1)
    return ~dominated & ~earlier_twin


@pytest.mark.parametrize("keep_twins", [True, False])
def test_blocks_and_twins_match_the_definition(keep_twins: bool) -> None:
    rng = np.random.default_rng(0)
    costs = rng.integers(0, 6, size=(BLOCK + 300, 2)).astype(np.float64)  # many twins, two blocks
    mask = nondominated(costs, keep_twins)
    assert mask.tolist() == by_definition(costs, keep_twins).tolist()
    assert 0 < mask.sum() < len(costs)


def test_twins_are_kept_or_only_the_first() -> None:
    costs = np.array([[1.0, 2.0], [1.0, 2.0], [2.0, 1.0], [2.0, 2.0]])
    assert nondominated(costs).tolist() == [True, True, True, False]
    assert nondominated(costs, keep_twins=False).tolist() == [True, False, True, False]


@given(st.integers(0, 40), st.integers(1, 4), st.integers(1, 5), st.booleans(), st.integers(0, 2**31))
@settings(max_examples=150, deadline=None)
def test_sorted_blocks_match_the_definition(n: int, k: int, block: int, keep_twins: bool, seed: int) -> None:
    """Any size, any number of costs, blocks as small as one point, ties everywhere."""
    import cimc.pareto

    costs = np.random.default_rng(seed).integers(0, 4, size=(n, k)).astype(np.float64)
    saved, cimc.pareto.BLOCK = cimc.pareto.BLOCK, block
    try:
        mask = nondominated(costs, keep_twins)
    finally:
        cimc.pareto.BLOCK = saved
    assert mask.tolist() == by_definition(costs, keep_twins).tolist()
