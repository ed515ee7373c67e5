"""Sensitivity-driven greedy search (the baseline of ``cimc search --strategy greedy``).

Start from the widest configuration (every layer at the largest weight and input bits) or, for a
model trained by ``cimc qat``, from the bits it was trained at with its trained steps
(``SearchProblem.start``). A
*move* lowers one layer's weight or input bits to the widest candidate below the current one
that makes the objective strictly smaller (with bit slicing the cost falls in steps, so bits
between two steps gain nothing and are skipped). One round:

1. sensitivity: evaluate every move alone from the current configuration: gain
   ``ΔL = L(c) − L(c + m)`` and loss ``ΔA = metric(c) − metric(c + m)``;
2. rank the moves by ``ΔL / max(ΔA, ε)`` (moves that lose nothing first, by gain);
3. apply them in that order, each on top of those accepted, keeping a move when the combined
   configuration meets the accuracy constraint. While the current configuration itself is
   infeasible (wide codes through a narrow ADC can be less accurate than narrow ones: one ADC
   step serves every slice) every move is kept, until one reaches the feasible region.

Rounds repeat from the new configuration until a round accepts nothing (or ``max_evals``
evaluations are spent). A descent that ends infeasible gets one repair pass (``_repair``).
The result is the best feasible configuration evaluated. Each round costs at most ``2·(2L)``
evaluations for ``L`` layers.
ADC bits, when searched, are left at their widest: they do not change the cost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cimc.search.pareto import best_feasible
from cimc.search.problem import Point, SearchProblem
from cimc.search.space import Config

log = logging.getLogger(__name__)

EPS = 1e-6


@dataclass(frozen=True)
class Move:
    layer: int
    dim: int  # 0: weight bits, 1: input bits
    bits: int

    def apply(self, config: Config) -> Config:
        choice = list(config[self.layer])
        choice[self.dim] = self.bits
        return (*config[:self.layer], (choice[0], choice[1], choice[2]), *config[self.layer + 1:])


def moves(problem: SearchProblem, config: Config) -> list[Move]:
    """For each layer and dimension, the widest lower candidate that lowers the objective."""
    now = problem.latency(config)
    found = []
    for layer, choice in enumerate(config):
        for dim, values in enumerate(problem.space.dims[:2]):
            lower = [b for b in values if b < choice[dim]]
            for bits in reversed(lower):
                move = Move(layer, dim, bits)
                if problem.latency(move.apply(config)) < now:
                    found.append(move)
                    break
    return found


def _rank(problem: SearchProblem, base: Point, candidates: list[Move]) -> list[Move]:
    scored = []
    for move in candidates:
        point = problem.evaluate(move.apply(base.config), "greedy sensitivity")
        gain, loss = base.latency - point.latency, base.metric - point.metric
        scored.append((gain / max(loss, EPS), gain, move))
    scored.sort(key=lambda s: (-s[0], -s[1], s[2].layer, s[2].dim))
    return [s[2] for s in scored]


def greedy_search(problem: SearchProblem, max_evals: int | None = None) -> Point:
    """Run the greedy search (module doc); returns the best feasible configuration it
    evaluated (the last accepted one when none is feasible)."""
    start = len(problem.history)
    current = _descend(problem, max_evals)
    if not current.feasible:
        current = _repair(problem, current, max_evals)
    return best_feasible(problem.history[start:] or [current]) or current


def _descend(problem: SearchProblem, max_evals: int | None) -> Point:
    current = problem.first("greedy")
    while True:
        candidates = moves(problem, current.config)
        if not candidates or _spent(problem, max_evals):
            return current
        accepted = 0
        for move in _rank(problem, current, candidates):
            if _spent(problem, max_evals):
                break
            point = problem.evaluate(move.apply(current.config), "greedy")
            if point.latency < current.latency and (point.feasible or not current.feasible):
                current, accepted = point, accepted + 1
        log.info("greedy round: %d of %d moves accepted, latency %d", accepted, len(candidates), current.latency)
        if not accepted:
            return current


def _repair(problem: SearchProblem, current: Point, max_evals: int | None) -> Point:
    """One pass over every layer and dimension: any lower bits at no more cost that raise
    the metric are kept (an infeasible descent can stop where narrower codes cost the same
    and convert better)."""
    for layer in range(len(current.config)):
        for dim, values in enumerate(problem.space.dims[:2]):
            for bits in (b for b in values if b < current.config[layer][dim]):
                if _spent(problem, max_evals):
                    return current
                config = Move(layer, dim, bits).apply(current.config)
                if problem.latency(config) <= current.latency:
                    point = problem.evaluate(config, "greedy repair")
                    if point.metric > current.metric:
                        current = point
    return current


def _spent(problem: SearchProblem, max_evals: int | None) -> bool:
    return max_evals is not None and len(problem.history) >= max_evals
