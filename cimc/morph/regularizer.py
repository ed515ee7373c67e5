"""The shrinking stage's regularizer (paper Eq. 1–2) as a differentiable torch term.

``Loss(θ) = L_CE(θ) + λ(t)·F(θ)`` where ``F`` is ``cimc.morph.costs``'s cost — MorphNet's
parameter count (``params``, Eq. 2) or the bitlines the macro stores (``bitlines``) — over
the channel classes of ``cimc.morph.channel_groups``. A class's importance is the
group-lasso norm of the γ of every BN normalising it, ``g_c = √(Σ_b γ_b,c² + ε)``, so the
channels tied by a residual Add or a Concat shrink together. ``F`` is linear in ``g`` with
slopes ``w_c = ∂F/∂g_c`` that depend on the alive counts ``A_L, B_L`` (a class is alive while
``g_c > threshold``), recomputed at every call without gradient, as MorphNet does:

    F = Σ_c w_c(alive) · g_c

λ follows the paper's schedule (Section III.B): it ramps linearly from 0 over the first
``ramp`` (2/3) of the shrink steps, then holds — ``λ(t) = λ·min(1, t / (ramp·T))``. ``t`` and
``T`` are global steps (the job's optimizer steps; under ``torchrun`` the ranks share each
batch, so every rank takes all ``T = epochs·TrainData.steps_per_epoch(world)`` of them). The
regularizer counts its own calls (one per training step), matching the trainer hook's
``regularizer(model) -> Tensor`` protocol; cimc's trainer also sets ``step`` to the global
step before each call, so the ramp stays right after resuming from a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from cimc.errors import UsageError
from cimc.ir.graph import Graph
from cimc.macro import MacroSpec
from cimc.morph.channel_groups import ChannelGroups, analyze
from cimc.morph.costs import VARIANTS, class_costs, layer_terms

EPS = 1e-12


def lambda_at(step: int, total: int, lam: float, ramp: float = 2 / 3) -> float:
    """``λ·min(1, step / (ramp·total))``: 0 at the first step, ``λ`` from ``ramp·total`` on."""
    span = ramp * total
    return lam if span <= 0 else lam * min(1.0, step / span)


@dataclass
class MorphRegularizer:
    """``λ(t)·F`` over ``graph``'s channel classes; call it with the ``IRModule`` being trained
    (it reads ``model.bn_gammas()``, keyed by BN node name)."""

    graph: Graph
    macro: MacroSpec
    lam: float
    total_steps: int
    variant: str = "params"
    threshold: float = 1e-2
    ramp: float = 2 / 3
    tiling: str = "channel"
    map_fc: bool = False
    step: int = 0
    groups: ChannelGroups = field(init=False)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise UsageError(f"unknown regularizer cost '{self.variant}'; choose one of {', '.join(VARIANTS)}")
        self.groups = analyze(self.graph)
        self.terms = layer_terms(self.graph, self.groups, self.map_fc)
        changeable = self.groups.changeable[self.groups.class_group]
        self._bn_index = [(bn.node, torch.from_numpy(self.groups.classes(bn.x))) for bn in self.groups.bns]
        has_bn = np.zeros(self.groups.num_classes, dtype=bool)
        for _, cls in self._bn_index:
            has_bn[cls.numpy()] = True
        self.penalised = torch.from_numpy(changeable & has_bn)

    def importance(self, gammas: dict[str, torch.Tensor]) -> torch.Tensor:
        """``g_c`` per class (0 for classes that are fixed or have no BN)."""
        device = next(iter(gammas.values())).device if gammas else torch.device("cpu")
        sq = torch.zeros(self.groups.num_classes, dtype=torch.float32, device=device)
        for node, cls in self._bn_index:
            sq = sq.index_add(0, cls.to(device), gammas[node].float().reshape(-1) ** 2)
        return torch.where(self.penalised.to(device), torch.sqrt(sq + EPS), torch.zeros_like(sq))

    def cost(self, gammas: dict[str, torch.Tensor]) -> torch.Tensor:
        """``F`` (without λ): ``Σ_c w_c·g_c`` with slopes at the current alive counts."""
        g = self.importance(gammas)
        alive = (g.detach().cpu().numpy() > self.threshold) | ~self.penalised.numpy()
        slopes = class_costs(self.terms, alive, self.variant, self.macro, self.tiling)
        return (g * torch.from_numpy(slopes).to(g)).sum()

    def __call__(self, model: nn.Module) -> torch.Tensor:
        lam = lambda_at(self.step, self.total_steps, self.lam, self.ramp)
        self.step += 1
        return lam * self.cost(model.bn_gammas())  # type: ignore[operator]
