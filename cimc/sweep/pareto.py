"""The Pareto set of a sweep: the points no other point beats on every objective.

Objectives (successful points only):

* with accuracy (``eval`` set): compiled top-1 ↑, ``latency_cycles`` ↓, ``macro_usage`` ↑;
* without: ``latency_cycles`` ↓, ``bitlines`` ↓, ``macro_usage`` ↑.

The config's ``objective`` (``cimc.cost.objective``, default ``latency``) replaces
``latency_cycles`` by its record field (``energy`` → ``energy_pj`` …); records without that
field (written before it existed) are left out.

Every objective becomes a cost (negated when ↑) and the Pareto set is ``cimc.pareto``'s
nondominated set, points with equal costs all kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cimc.cost.objective import get_objective
from cimc.pareto import nondominated

Objective = tuple[str, str]  # (record field, "max" | "min")
WITH_ACCURACY: tuple[Objective, ...] = (("compiled_top1", "max"), ("latency_cycles", "min"), ("macro_usage", "max"))
WITHOUT_ACCURACY: tuple[Objective, ...] = (("latency_cycles", "min"), ("bitlines", "min"), ("macro_usage", "max"))


def objectives(records: list[dict[str, Any]], objective: str = "latency") -> tuple[Objective, ...]:
    """Accuracy objectives when every successful record has a compiled accuracy; ``objective``'s
    field in place of ``latency_cycles``."""
    ok = [r for r in records if r.get("status") == "ok"]
    has = bool(ok) and all(r.get("compiled_top1") is not None for r in ok)
    field = get_objective(objective).field
    return tuple((field if name == "latency_cycles" else name, sense)
                 for name, sense in (WITH_ACCURACY if has else WITHOUT_ACCURACY))


def has_accuracy(objs: tuple[Objective, ...]) -> bool:
    return objs[0][0] == "compiled_top1"


def cost_field(objs: tuple[Objective, ...]) -> str:
    """The record field of the minimised objective among ``objs``."""
    return objs[1][0] if has_accuracy(objs) else objs[0][0]


def pareto(records: list[dict[str, Any]], objective: str = "latency",
           ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], tuple[Objective, ...]]:
    """(successful records that have the objective's field, their Pareto subset, the objectives used)."""
    field = get_objective(objective).field
    ok = [r for r in records if r.get("status") == "ok" and isinstance(r.get(field), int | float)]
    objs = objectives(ok, objective)
    if not ok:
        return ok, [], objs
    costs = np.array([[(-1.0 if sense == "max" else 1.0) * float(r[name]) for name, sense in objs] for r in ok])
    mask = nondominated(costs)
    return ok, [r for r, m in zip(ok, mask, strict=True) if m], objs
