"""The Pareto set of evaluated configurations, and the chosen one.

Point ``p`` dominates ``q`` when ``latency(p) ≤ latency(q)`` and ``metric(p) ≥ metric(q)``
with one of them strict. The Pareto set holds every point no other point dominates (of
points equal in both, the first evaluated), sorted by latency. The chosen configuration is
the feasible point of least latency, ties broken by the higher metric, then by fewer total
bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

import numpy as np


class Scored(Protocol):
    @property
    def latency(self) -> int: ...

    @property
    def metric(self) -> float: ...

    @property
    def feasible(self) -> bool: ...

    @property
    def config(self) -> tuple[tuple[int, int, int], ...]: ...


P = TypeVar("P", bound=Scored)


def pareto_mask(latency: np.ndarray, metric: np.ndarray) -> np.ndarray:
    """``mask[i]``: point ``i`` is nondominated and the first of its (latency, metric) twins."""
    lat, met = np.asarray(latency, dtype=np.float64), np.asarray(metric, dtype=np.float64)
    le = lat[:, None] <= lat[None, :]  # [j, i]: j at most as slow as i
    ge = met[:, None] >= met[None, :]
    strict = (lat[:, None] < lat[None, :]) | (met[:, None] > met[None, :])
    dominated = (le & ge & strict).any(axis=0)
    twin = (lat[:, None] == lat[None, :]) & (met[:, None] == met[None, :])
    earlier_twin = np.tril(twin, k=-1).any(axis=1)  # [i, j] for j < i
    return ~dominated & ~earlier_twin


def pareto_front(points: Sequence[P]) -> list[P]:
    """The nondominated points (module doc), by increasing latency."""
    if not points:
        return []
    points = sorted(points, key=_bits)  # stable: of twins, the fewest bits, then the first evaluated
    mask = pareto_mask(np.array([p.latency for p in points]), np.array([p.metric for p in points]))
    return sorted((p for p, keep in zip(points, mask, strict=True) if keep), key=lambda p: (p.latency, -p.metric))


def best_feasible(points: Sequence[P]) -> P | None:
    """Least latency among feasible points (module doc), ``None`` when none is feasible."""
    feasible = [p for p in points if p.feasible]
    if not feasible:
        return None
    return min(feasible, key=lambda p: (p.latency, -p.metric, _bits(p)))


def _bits(point: Scored) -> int:
    return sum(w + a for w, a, _ in point.config)
