"""The bit-allocation environment of the RL agent (gymnasium), after HAQ and Pelke et al.

An episode walks the CIM layers in topological order, one step per layer. The observation of
layer ``k`` is its static description, each feature divided by its maximum over the layers
(``[k/L, log rows, log Cout, segments, log output pixels, share of the widest
configuration's cycles]``) followed by the previous layer's action. The action is a vector in
``[0, 1]^d`` (``d = 2``: weight and input bits; 3 when ADC bits are searched), mapped to
the candidate lists by ``SearchSpace.from_fractions``. The reward is zero until the last
step, which evaluates the configuration ``c``:

    r(c) = −L(c) / L(widest)                                    when drop(c) ≤ max_drop
    r(c) = −L(c) / L(widest) − 1 − 0.1 · (drop(c) − max_drop)   otherwise

(``drop`` in percentage points), so every feasible configuration beats every infeasible one
and, among feasible ones, the faster wins.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from cimc.ir.annotations import CimLayer, WordlineTiling
from cimc.mapping.select import cim_nodes
from cimc.search.problem import Point, SearchProblem
from cimc.search.space import LayerChoice

INFEASIBLE_PENALTY = 1.0
EXCESS_WEIGHT = 0.1


def layer_features(problem: SearchProblem) -> np.ndarray:
    """``(L, 6)`` static features of the layers, each column scaled to ``[0, 1]``."""
    nodes = cim_nodes(problem.latency.graph)
    widest = problem.latency.cost(problem.space.widest())
    total = max(sum(layer.computing_cycles for layer in widest.layers), 1)
    rows = []
    for k, (node, cost) in enumerate(zip(nodes, widest.layers, strict=True)):
        layer = node.ann[CimLayer]
        rows.append([k, np.log2(layer.rows + 1), np.log2(layer.cout + 1), node.ann[WordlineTiling].num_segments,
                     np.log2(layer.out_pixels + 1), cost.computing_cycles / total])
    feats = np.asarray(rows, dtype=np.float32)
    return feats / np.maximum(feats.max(axis=0, keepdims=True), 1e-9)


def reward(point: Point, widest_latency: float, max_drop: float) -> float:
    r = -point.latency / widest_latency
    if not point.feasible:
        r -= INFEASIBLE_PENALTY + EXCESS_WEIGHT * (point.drop - max_drop)
    return float(r)


class BitAllocationEnv(gym.Env[np.ndarray, np.ndarray]):
    """One episode = one configuration (module doc)."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's class attribute)

    def __init__(self, problem: SearchProblem, origin: str = "rl") -> None:
        self.problem = problem
        self.origin = origin
        self.features = layer_features(problem)
        self.dims = 3 if len(problem.space.adc_choices) > 1 else 2
        self.widest = problem.latency(problem.space.widest())
        width = self.features.shape[1] + self.dims
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(width,), dtype=np.float32)
        self.action_space = gym.spaces.Box(0.0, 1.0, shape=(self.dims,), dtype=np.float32)
        self._choices: list[LayerChoice] = []
        self._last = np.ones(self.dims, dtype=np.float32)
        self.last_point: Point | None = None
        self.visited: list[Point] = []

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.features[len(self._choices)], self._last]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._choices = []
        self._last = np.ones(self.dims, dtype=np.float32)
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        a = np.clip(np.asarray(action, dtype=np.float32).reshape(-1), 0.0, 1.0)
        self._choices.append(self.problem.space.from_fractions(a.tolist()))
        self._last = a
        if len(self._choices) < len(self.problem.space.layers):
            return self._obs(), 0.0, False, False, {}
        point = self.problem.evaluate(tuple(self._choices), self.origin)
        self.last_point = point
        self.visited.append(point)
        obs = np.concatenate([self.features[-1], a]).astype(np.float32)
        return obs, reward(point, self.widest, self.problem.max_drop), True, False, {"point": point}
