"""The Pareto set of evaluated configurations, and the chosen one.

Point ``p`` dominates ``q`` when ``latency(p) ≤ latency(q)`` and ``metric(p) ≥ metric(q)``
with one of them strict. The Pareto set holds every point no other point dominates (of
points equal in both, the one of fewest total bits, then the first evaluated), sorted by
latency (the set: ``cimc.pareto``). The chosen configuration is the feasible point of least
latency, ties broken by the higher metric, then by fewer total bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

import numpy as np

from cimc.pareto import nondominated


class Scored(Protocol):
    @property
    def latency(self) -> float: ...

    @property
    def metric(self) -> float: ...

    @property
    def feasible(self) -> bool: ...

    @property
    def config(self) -> tuple[tuple[int, int, int], ...]: ...


P = TypeVar("P", bound=Scored)


def pareto_front(points: Sequence[P]) -> list[P]:
    """The nondominated points (module doc), by increasing latency."""
    if not points:
        return []
    points = sorted(points, key=_bits)  # stable: of twins, the fewest bits, then the first evaluated
    costs = np.array([[p.latency, -p.metric] for p in points], dtype=np.float64)
    mask = nondominated(costs, keep_twins=False)
    return sorted((p for p, keep in zip(points, mask, strict=True) if keep), key=lambda p: (p.latency, -p.metric))


def best_feasible(points: Sequence[P]) -> P | None:
    """Least latency among feasible points (module doc), ``None`` when none is feasible."""
    feasible = [p for p in points if p.feasible]
    if not feasible:
        return None
    return min(feasible, key=lambda p: (p.latency, -p.metric, _bits(p)))


def _bits(point: Scored) -> int:
    return sum(w + a for w, a, _ in point.config)
