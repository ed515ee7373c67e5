"""Per-tensor channel maps of a channel plan: which old channel each new channel comes from.

For tensor ``t`` with classes ``cls[p]`` per channel ``p``, the new channel axis is

* the kept channels (``plan.keep[cls[p]]``), in their old order, and
* after the last channel of each *copy* of group ``g`` in ``t`` (the ``i``-th occurrence of
  every class of ``g`` makes copy ``i``), that group's ``new[g]`` new channels ``j = 0, 1, …``.

Every tensor holding a class sees it at corresponding positions, so tensors tied by an op
(Add operands, Concat segments, a Pad's input and output) get consistent maps; a Pad's new
zero channels land in the zero region they extend. New channel ``j`` of group ``g`` *copies*
(``src``) the ``j mod k``-th best kept class of ``g``; ``replicas`` counts how many channels
of the new model carry a class (``1 +`` its copies), which the ``copy`` initialisation uses
to split a consumer's weights between replicas (Net2Net: function preserving).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cimc.morph.channel_groups import ChannelGroups
from cimc.morph.plan import ChannelPlan


@dataclass(frozen=True, eq=False)
class ChannelMap:
    """New channel ``i``: old channel ``old[i]`` (−1 when new), copied old channel ``src[i]``
    (``== old[i]`` when kept), ``replicas[i]`` channels of the new model carrying its class."""

    old: np.ndarray
    src: np.ndarray
    replicas: np.ndarray
    old_count: int

    @property
    def new(self) -> np.ndarray:
        return self.old < 0

    def __len__(self) -> int:
        return int(self.old.shape[0])

    def is_identity(self) -> bool:
        return len(self) == self.old_count and bool((self.old == np.arange(self.old_count)).all())

    def expand(self, index: np.ndarray, mult: int) -> np.ndarray:
        """Feature indices of channels ``index`` when each channel spans ``mult`` features."""
        return (index[:, None] * mult + np.arange(mult)[None, :]).reshape(-1)


def channel_maps(groups: ChannelGroups, plan: ChannelPlan) -> dict[str, ChannelMap]:
    """The ``ChannelMap`` of every tensor with channels under ``plan``."""
    table, start, length = plan.copy_sources(groups)
    group_of_new = np.repeat(np.arange(groups.num_groups), plan.new)
    j_all = _ranks(plan.new)
    sources = table[start[group_of_new] + j_all % np.maximum(length[group_of_new], 1)]
    replicas = 1 + np.bincount(sources, minlength=groups.num_classes)
    return {name: _tensor_map(groups, plan, groups.classes(name), replicas, (table, start, length))
            for name in groups.tensors}


def _ranks(counts: np.ndarray) -> np.ndarray:
    """``0..counts[0]-1, 0..counts[1]-1, …`` concatenated."""
    total = int(counts.sum())
    return np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)


def _occurrence(cls: np.ndarray) -> np.ndarray:
    """For each position, how many earlier positions hold the same class."""
    order = np.argsort(cls, kind="stable")
    sorted_cls = cls[order]
    run_start = np.flatnonzero(np.r_[True, sorted_cls[1:] != sorted_cls[:-1]])
    first = np.repeat(run_start, np.diff(np.r_[run_start, cls.shape[0]]))
    occ = np.empty_like(cls)
    occ[order] = np.arange(cls.shape[0]) - first
    return occ


def _tensor_map(groups: ChannelGroups, plan: ChannelPlan, cls: np.ndarray, replicas: np.ndarray,
                sources: tuple[np.ndarray, np.ndarray, np.ndarray]) -> ChannelMap:
    table, start, length = sources
    pos = np.arange(cls.shape[0])
    occ = _occurrence(cls)
    k = int(occ.max()) + 1 if cls.shape[0] else 1
    copies, inverse = np.unique(groups.class_group[cls] * k + occ, return_inverse=True)
    anchor = np.full(copies.shape[0], -1, dtype=np.int64)
    np.maximum.at(anchor, inverse.reshape(-1), pos)
    copy_group, copy_index = copies // k, copies % k
    n_new = plan.new[copy_group]
    which = np.repeat(np.arange(copies.shape[0]), n_new)
    j = _ranks(n_new)
    g = copy_group[which]
    src_class = table[start[g] + j % np.maximum(length[g], 1)]
    lookup = cls * k + occ
    order = np.argsort(lookup)
    src_new = order[np.searchsorted(lookup[order], src_class * k + copy_index[which])]
    kept = pos[plan.keep[cls]]
    primary = np.concatenate([2 * kept, 2 * anchor[which] + 1])
    secondary = np.concatenate([np.zeros_like(kept), j])
    arrange = np.lexsort((secondary, primary))
    old = np.concatenate([kept, np.full(j.shape[0], -1, dtype=np.int64)])[arrange]
    src = np.concatenate([kept, src_new])[arrange]
    return ChannelMap(old, src, replicas[cls[src]], int(cls.shape[0]))
