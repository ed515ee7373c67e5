"""Data-free shrink: one proximal step of the bitline regularizer on the BN importances.

Training with ``Loss = L_CE + λ·F`` (paper Eq. 1) drives channels with a high resource cost
towards ``γ = 0``; the proximal (soft-threshold) step of ``λ·F`` on ``|γ|`` does the same without
data: with ``c_c = ∂F/∂g_c`` (``cimc.morph.costs``, bitline variant by default) normalised to mean
1 over changeable classes and ``s̃`` the median importance,

    s'_c = s_c − λ · s̃ · c_c / mean(c)         (prune the class when s'_c ≤ threshold)

so at ``λ = 1`` a class of average cost survives when it is more important than the median.
``align`` then rounds each changeable group's kept width down to whole segments of its CIM
consumers (``⌊WL/k⌋`` channels — 28 for 3×3 on 256 wordlines — in channel tiling;
``WL/gcd(WL, k)`` in dense tiling and for a flattened Gemm input of ``k`` features per channel,
whose features the compile path tiles one row each), keeping at least one segment's worth
where the group had it.

``search_lambda`` is the paper's grid search (Section III.B, Table II: "the best and worst macro
usage"): for each ``λ`` of a grid it prunes, aligns and expands to the budget, and keeps the
candidate with the highest macro usage (ties: the smaller ``λ``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cimc.macro import MacroSpec
from cimc.morph.bitlines import MorphCost
from cimc.morph.channel_groups import ChannelGroups
from cimc.morph.costs import LayerTerm, class_costs


def shrunk_scores(groups: ChannelGroups, score: np.ndarray, cost: np.ndarray, lam: float) -> np.ndarray:
    """``s − λ·s̃·c/mean(c)`` on changeable classes (unchanged elsewhere; NaN stays NaN)."""
    changeable = groups.changeable[groups.class_group]
    if lam == 0.0 or not changeable.any():
        return score
    c = cost / max(float(cost[changeable].mean()), 1e-30)
    known = changeable & ~np.isnan(score)
    median = float(np.median(score[known])) if known.any() else 1.0
    return np.where(changeable, score - lam * median * c, score)


def bitline_costs(groups: ChannelGroups, terms: list[LayerTerm], macro: MacroSpec, tiling: str) -> np.ndarray:
    """``∂F_bitlines/∂g`` per class with every channel alive."""
    return class_costs(terms, np.ones(groups.num_classes, dtype=bool), "bitlines", macro, tiling)


def segment_channels(groups: ChannelGroups, terms: list[LayerTerm], macro: MacroSpec, tiling: str) -> np.ndarray:
    """Per group: channels per segment of the CIM layers reading it (their minimum; 1 if none)."""
    unit = np.full(groups.num_groups, np.iinfo(np.int64).max)
    for term in terms:
        if not term.cim or term.depthwise:
            continue
        k = term.kernel[0] * term.kernel[1] * term.mult
        if tiling == "channel" and term.mult == 1:  # whole channels of k rows per segment
            n = macro.wordlines // k if k <= macro.wordlines else 1
        else:  # dense rows, or a flattened Gemm input (tiled feature by feature in either mode)
            n = macro.wordlines // int(np.gcd(macro.wordlines, k))
        np.minimum.at(unit, groups.class_group[term.x_cls], n)
    return np.where(unit == np.iinfo(np.int64).max, 1, unit)


def align_widths(groups: ChannelGroups, widths: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Round changeable widths down to a multiple of ``unit`` (at least one unit, at most
    the group's original width)."""
    aligned = np.maximum(widths // unit * unit, np.minimum(unit, groups.group_size))
    return np.where(groups.changeable, aligned, widths)


@dataclass(frozen=True)
class Candidate:
    lam: float
    widths: np.ndarray
    cost: MorphCost


def search_lambda(evaluate: Callable[[float], Candidate | None], lambdas: np.ndarray) -> Candidate | None:
    """The candidate with the highest macro usage over ``lambdas`` (first one on ties)."""
    best: Candidate | None = None
    for lam in lambdas:
        cand = evaluate(float(lam))
        if cand is not None and (best is None or cand.cost.usage > best.cost.usage):
            best = cand
    return best
