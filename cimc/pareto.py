"""The Pareto set of points with several costs, all minimised (negate what is maximised).

Point ``j`` dominates ``i`` when ``c_j ≤ c_i`` in every cost and ``c_j < c_i`` in one. The
nondominated points are those no point dominates. Points with equal costs (twins) are all
kept, or, with ``keep_twins=False``, only the first of them. Computed by broadcasting in row
blocks: ``O(n²·k)`` comparisons, ``O(block·n·k)`` memory. ``cimc search`` and ``cimc sweep``
both use it.
"""

from __future__ import annotations

import numpy as np

BLOCK = 1024


def nondominated(costs: np.ndarray, keep_twins: bool = True) -> np.ndarray:
    """Boolean mask of the rows of ``costs`` (n × k) that no other row dominates (module doc)."""
    costs = np.asarray(costs, dtype=np.float64)
    n = costs.shape[0]
    keep = np.ones(n, dtype=bool)
    for start in range(0, n, BLOCK):
        rows = costs[start:start + BLOCK, None, :]  # (b, 1, k): the points judged
        le = np.all(costs[None, :, :] <= rows, axis=2)  # (b, n): j no worse than i everywhere
        lt = np.any(costs[None, :, :] < rows, axis=2)
        keep[start:start + BLOCK] = ~np.any(le & lt, axis=1)
        if not keep_twins:
            earlier = np.arange(n)[None, :] < np.arange(start, start + rows.shape[0])[:, None]
            keep[start:start + BLOCK] &= ~np.any(le & ~lt & earlier, axis=1)
    return keep
