"""The Pareto set of a sweep: the points no other point beats on every objective.

Objectives (successful points only):

* with accuracy (``eval`` set): compiled top-1 ↑, ``latency_cycles`` ↓, ``macro_usage`` ↑;
* without: ``latency_cycles`` ↓, ``bitlines`` ↓, ``macro_usage`` ↑.

With every objective turned into a cost ``c`` (negated when ↑), point ``j`` dominates ``i``
when ``c_j ≤ c_i`` everywhere and ``c_j < c_i`` somewhere; the Pareto set is the points no
``j`` dominates (points with equal costs are all kept). Computed by broadcasting in row blocks:
``O(n²·k)`` comparisons, ``O(block·n)`` memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Objective = tuple[str, str]  # (record field, "max" | "min")
WITH_ACCURACY: tuple[Objective, ...] = (("compiled_top1", "max"), ("latency_cycles", "min"), ("macro_usage", "max"))
WITHOUT_ACCURACY: tuple[Objective, ...] = (("latency_cycles", "min"), ("bitlines", "min"), ("macro_usage", "max"))
BLOCK = 1024


def nondominated(costs: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``costs`` (n × k, all minimised) that no other row dominates."""
    costs = np.asarray(costs, dtype=np.float64)
    keep = np.ones(costs.shape[0], dtype=bool)
    for start in range(0, costs.shape[0], BLOCK):
        rows = costs[start:start + BLOCK, None, :]  # (b, 1, k): the points judged
        le = np.all(costs[None, :, :] <= rows, axis=2)  # (b, n): j no worse than i everywhere
        lt = np.any(costs[None, :, :] < rows, axis=2)
        keep[start:start + BLOCK] = ~np.any(le & lt, axis=1)
    return keep


def objectives(records: list[dict[str, Any]]) -> tuple[Objective, ...]:
    """Accuracy objectives when every successful record has a compiled accuracy."""
    ok = [r for r in records if r.get("status") == "ok"]
    has = bool(ok) and all(r.get("compiled_top1") is not None for r in ok)
    return WITH_ACCURACY if has else WITHOUT_ACCURACY


def pareto(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], tuple[Objective, ...]]:
    """(successful records, their Pareto subset, the objectives used)."""
    ok = [r for r in records if r.get("status") == "ok"]
    objs = objectives(ok)
    if not ok:
        return ok, [], objs
    costs = np.array([[(-1.0 if sense == "max" else 1.0) * float(r[name]) for name, sense in objs] for r in ok])
    mask = nondominated(costs)
    return ok, [r for r, m in zip(ok, mask, strict=True) if m], objs
