"""The Pareto set of points with several costs, all minimised (negate what is maximised).

Point ``j`` dominates ``i`` when ``c_j ≤ c_i`` in every cost and ``c_j < c_i`` in one. The
nondominated points are those no point dominates. Points with equal costs (twins) are all
kept, or, with ``keep_twins=False``, only the first of them. ``cimc search`` and ``cimc sweep``
both use it.

Computed on the points sorted lexicographically by cost: a dominator is lexicographically
smaller, so it comes earlier. Blocks of ``BLOCK`` sorted points are judged against the front
found so far and against their own block (by broadcasting); the survivors join the front. Before
that, one vectorised pass drops every point dominated by the front of the first block.
Judging against the front alone suffices because domination is transitive: a dropped point
that dominates ``i`` is itself dominated by a front point, which then dominates ``i``. Cost
``O(n·(f + B)·k)`` time and ``O(B·(f + B)·k)`` memory for a front of ``f`` points, against
``O(n²·k)`` for all pairs (200,000 sweep records: seconds, not hours).
"""

from __future__ import annotations

import numpy as np

BLOCK = 64


def dominated_by(judged: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Mask of the rows of ``judged`` (b × k) that some row of ``others`` (m × k) dominates."""
    if others.shape[0] == 0:
        return np.zeros(judged.shape[0], dtype=bool)
    le = np.all(others[None, :, :] <= judged[:, None, :], axis=2)
    lt = np.any(others[None, :, :] < judged[:, None, :], axis=2)
    return np.any(le & lt, axis=1)


def _dominated_by_a_first_front(ranked: np.ndarray) -> np.ndarray:
    """Mask of the sorted points dominated by the front of the first ``BLOCK`` of them, judged in
    chunks: one vectorised pass that drops most dominated points before the blocked loop."""
    first = ranked[:BLOCK]
    seeds = first[~dominated_by(first, first)]
    chunk = max(1, (1 << 22) // max(1, seeds.shape[0] * ranked.shape[1]))
    return np.concatenate([dominated_by(ranked[i:i + chunk], seeds) for i in range(0, ranked.shape[0], chunk)])


def nondominated(costs: np.ndarray, keep_twins: bool = True) -> np.ndarray:
    """Boolean mask of the rows of ``costs`` (n × k) that no other row dominates (module doc)."""
    costs = np.asarray(costs, dtype=np.float64)
    n = costs.shape[0]
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    order = np.lexsort(costs.T[::-1])  # by cost 0, then cost 1, …; stable: twins keep index order
    order = order[~_dominated_by_a_first_front(costs[order])]
    ranked = costs[order]
    front = np.empty((0, costs.shape[1]))
    for start in range(0, len(order), BLOCK):
        block = ranked[start:start + BLOCK]
        alive = ~dominated_by(block, front) & ~dominated_by(block, block)
        keep[order[start:start + BLOCK]] = alive
        front = np.concatenate([front, block[alive]])
    if not keep_twins:
        kept = np.flatnonzero(keep)
        _, first = np.unique(costs[kept], axis=0, return_index=True)  # first index of each distinct row
        keep[:] = False
        keep[kept[first]] = True
    return keep
