"""Channel plans: which channel classes a morph keeps, and how many new channels each group gets.

Importance of a channel class ``c`` (paper Section II.C: "filter importance is determined by
the γ of the BN layer") is the group-lasso norm of the γ of every BatchNormalization that
normalises it, ``s_c = √(Σ_b γ_b,c²)`` — simply ``|γ|`` for a channel with one BN. Classes no
BN normalises (a Pad's zeros alone, a conv without BN) score ``NaN``: never pruned by a
threshold, ranked after every scored class.

A ``ChannelPlan`` keeps a subset of each changeable group's classes and appends ``new[g]``
fresh channels to group ``g``; fixed groups keep everything. Widths are kept ≥ ``min_width``.

* ``prune_plan``: keep the classes with ``s_c > threshold`` and/or the top ``⌈keep·n_g⌉`` of
  each group (both rules may be combined: a class must pass both).
* ``widths_to_plan``: the plan giving each group a target width — the best-ranked kept classes
  when shrinking, new channels when growing (the expansion's ``round(C·R)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cimc.errors import UsageError
from cimc.ir.graph import Graph
from cimc.morph.channel_groups import ChannelGroups


@dataclass(frozen=True, eq=False)
class ChannelPlan:
    """``keep[c]`` per class, ``new[g]`` per group, and the ranking ``score`` used to pick
    which kept class a new channel copies (``init="copy"``)."""

    keep: np.ndarray
    new: np.ndarray
    score: np.ndarray

    def widths(self, groups: ChannelGroups) -> np.ndarray:
        """Width of every group after the plan."""
        kept = np.bincount(groups.class_group, weights=self.keep, minlength=groups.num_groups)
        return kept.astype(np.int64) + self.new

    def is_identity(self) -> bool:
        return bool(self.keep.all() and not self.new.any())

    def copy_sources(self, groups: ChannelGroups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(table, start, length)``: new channel ``j`` of group ``g`` copies class
        ``table[start[g] + j % length[g]]`` (kept classes, best score first)."""
        ranked = rank_classes(groups, self.score)
        kept = ranked[self.keep[ranked]]
        grp = groups.class_group[kept]
        order = np.argsort(grp, kind="stable")
        table = kept[order]
        length = np.bincount(grp, minlength=groups.num_groups)
        start = np.concatenate([[0], np.cumsum(length)[:-1]])
        return table, start, length

    def summary(self, groups: ChannelGroups) -> list[dict[str, Any]]:
        """Per group: name, old width, kept, new, final width, fixed."""
        kept = np.bincount(groups.class_group, weights=self.keep, minlength=groups.num_groups).astype(int)
        return [{"group": name, "width": int(n), "kept": int(k), "new": int(a), "final": int(k + a),
                 "fixed": bool(f)}
                for name, n, k, a, f in zip(groups.group_names, groups.group_size, kept, self.new,
                                            groups.group_fixed, strict=True)]


def identity_plan(groups: ChannelGroups, score: np.ndarray | None = None) -> ChannelPlan:
    s = np.full(groups.num_classes, np.nan) if score is None else score
    return ChannelPlan(np.ones(groups.num_classes, bool), np.zeros(groups.num_groups, np.int64), s)


def class_scores(graph: Graph, groups: ChannelGroups, gammas: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """``s_c = √(Σ_b γ_b,c²)`` over the BNs of class ``c`` (NaN where none). ``gammas`` maps a
    BN node name or γ initializer name to its γ; the graph's initializers by default."""
    sq = np.zeros(groups.num_classes)
    seen = np.zeros(groups.num_classes, dtype=bool)
    for bn in groups.bns:
        gamma = _lookup(gammas, bn.node, bn.gamma) if gammas is not None else None
        values = np.asarray(graph.initializers[bn.gamma] if gamma is None else gamma, dtype=np.float64)
        cls = groups.classes(bn.x)
        np.add.at(sq, cls, values.reshape(-1) ** 2)
        seen[cls] = True
    return np.where(seen, np.sqrt(sq), np.nan)


def _lookup(gammas: Mapping[str, np.ndarray], *keys: str) -> np.ndarray | None:
    for k in keys:
        if k in gammas:
            return gammas[k]
    return None


def rank_classes(groups: ChannelGroups, score: np.ndarray) -> np.ndarray:
    """All classes ordered by group, then score descending (NaN last), then class id."""
    key = np.where(np.isnan(score), -np.inf, score)
    return np.lexsort((np.arange(groups.num_classes), -key, groups.class_group))


def _rank_in_group(groups: ChannelGroups, score: np.ndarray) -> np.ndarray:
    """Rank of each class within its group (0 = most important)."""
    order = rank_classes(groups, score)
    starts = np.concatenate([[0], np.cumsum(groups.group_size)[:-1]])
    rank = np.empty(groups.num_classes, dtype=np.int64)
    rank[order] = np.arange(groups.num_classes) - starts[groups.class_group[order]]
    return rank


def prune_plan(groups: ChannelGroups, score: np.ndarray, *, threshold: float | None = None,
               keep: float | None = None, min_width: int = 1) -> ChannelPlan:
    """Keep classes with ``score > threshold`` (NaN always passes) and within the top
    ``⌈keep·n_g⌉`` of their group; at least ``min_width`` per group; fixed groups whole."""
    if keep is not None and not 0.0 < keep <= 1.0:
        raise UsageError(f"keep ratio must be in (0, 1], got {keep}")
    rank = _rank_in_group(groups, score)
    mask = np.ones(groups.num_classes, dtype=bool)
    if threshold is not None:
        mask &= ~(score <= threshold)
    if keep is not None:
        limit = np.ceil(groups.group_size * keep - 1e-9).astype(np.int64)
        mask &= rank < limit[groups.class_group]
    mask |= rank < min_width
    mask |= groups.group_fixed[groups.class_group]
    return ChannelPlan(mask, np.zeros(groups.num_groups, np.int64), score)


def widths_to_plan(groups: ChannelGroups, base: ChannelPlan, widths: np.ndarray) -> ChannelPlan:
    """A plan with ``widths[g]`` channels per changeable group, built on ``base``: the best
    kept classes of ``base`` when narrower, ``base``'s classes plus new ones when wider."""
    kept = np.bincount(groups.class_group, weights=base.keep, minlength=groups.num_groups).astype(np.int64)
    widths = np.where(groups.group_fixed, groups.group_size, widths)
    lowest = -np.finfo(np.float64).max  # kept classes without a score rank after scored ones
    rank = _rank_in_group(groups, np.where(base.keep, np.nan_to_num(base.score, nan=lowest), -np.inf))
    keep = rank < np.minimum(widths, kept)[groups.class_group]
    return ChannelPlan(keep & base.keep, np.maximum(widths - kept, 0), base.score)


def ratio_widths(widths: np.ndarray, num: int, den: int, changeable: np.ndarray, min_width: int = 1) -> np.ndarray:
    """``round(n·R)`` with ``R = num/den`` exactly (halves rounded up), at least ``min_width``
    for changeable groups; fixed groups unchanged."""
    scaled = (2 * widths * num + den) // (2 * den)
    return np.where(changeable, np.maximum(scaled, min_width), widths)
