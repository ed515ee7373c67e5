"""The Pareto set of a sweep: the points no other point beats on every objective.

Objectives (successful points only):

* with accuracy (``eval`` set): compiled top-1 ↑, ``latency_cycles`` ↓, ``macro_usage`` ↑;
* without: ``latency_cycles`` ↓, ``bitlines`` ↓, ``macro_usage`` ↑.

Every objective becomes a cost (negated when ↑) and the Pareto set is ``cimc.pareto``'s
nondominated set, points with equal costs all kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cimc.pareto import nondominated

Objective = tuple[str, str]  # (record field, "max" | "min")
WITH_ACCURACY: tuple[Objective, ...] = (("compiled_top1", "max"), ("latency_cycles", "min"), ("macro_usage", "max"))
WITHOUT_ACCURACY: tuple[Objective, ...] = (("latency_cycles", "min"), ("bitlines", "min"), ("macro_usage", "max"))


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
