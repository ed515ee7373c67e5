"""Channel groups: which channels of a graph must be kept, removed or added together.

``analyze(graph)`` walks the graph with each op's channel rule (``OpDef.channels``, run with a
``channel_rules.ChannelBuilder``; one *atom* per channel of every non-constant tensor) and
joins tied atoms into connected components: a component is one *channel class* — e.g.
channel 5 of a conv's output, of the BN and ReLU after it, of both operands of a residual Add
and of everything downstream. Removing a channel means removing a class everywhere.

Classes that occur in exactly the same tensors (with the same multiplicity) form a *group*:
the unit whose width a channel plan changes, by pruning classes or by adding new ones.
Examples: a plain conv's output channels; a ResNet stage's residual stream; the last
``C_out − C_in`` channels of a downsampling block, whose shortcut is ``Pad`` zeros there (the
first ``C_in`` channels of the block output are tied to the block input instead). Every
tensor holds each of its groups whole, ``copies`` times (twice for ``Concat(x, x)``), so a
tensor's width is linear in the group widths:

    channels(t) = Σ_g copies(t, g) · width(g)

Atoms of graph inputs and outputs, and of ops the rules cannot follow, are *fixed*; so is
every class (and group) containing one. Grouping compares two 64-bit random signatures of
each class's tensor multiset (a collision is astronomically unlikely and is caught by the
``copies`` exact-division check).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from cimc.errors import PassError
from cimc.ir.graph import Graph
from cimc.morph.channel_rules import BatchNormRef, ChannelBuilder, TensorChannels, WeightLayer, apply_rule


@dataclass(eq=False)
class ChannelGroups:
    """The result of ``analyze``: atoms per tensor, their classes and the groups of classes."""

    tensors: dict[str, TensorChannels]
    atom_class: np.ndarray
    class_group: np.ndarray
    group_fixed: np.ndarray
    bns: tuple[BatchNormRef, ...]
    layers: tuple[WeightLayer, ...]

    @property
    def num_classes(self) -> int:
        return int(self.class_group.shape[0])

    @property
    def num_groups(self) -> int:
        return int(self.group_fixed.shape[0])

    @cached_property
    def group_size(self) -> np.ndarray:
        """Classes per group (the group's current width)."""
        return np.bincount(self.class_group, minlength=self.num_groups)

    @property
    def changeable(self) -> np.ndarray:
        return ~self.group_fixed

    def classes(self, tensor: str) -> np.ndarray:
        """Class of each channel of ``tensor``."""
        t = self.tensors[tensor]
        return self.atom_class[t.offset:t.offset + t.count]

    def copies(self, tensor: str) -> np.ndarray:
        """How many times each group occurs in ``tensor``, shape ``(num_groups,)``."""
        atoms = np.bincount(self.class_group[self.classes(tensor)], minlength=self.num_groups)
        size = np.maximum(self.group_size, 1)
        if (atoms % size).any():
            raise PassError(f"channel analysis: tensor '{tensor}' holds a group partially")
        return atoms // size

    def channels(self, tensor: str, widths: np.ndarray) -> int:
        """Width of ``tensor`` when group ``g`` is ``widths[g]`` wide."""
        return int(self.copies(tensor) @ widths)

    @cached_property
    def group_names(self) -> list[str]:
        """A readable name per group: the first tensor holding it, with the channel range."""
        first = np.full(self.num_groups, np.iinfo(np.int64).max)
        np.minimum.at(first, self.class_group[self.atom_class], np.arange(self.atom_class.shape[0]))
        owners = sorted(self.tensors.values(), key=lambda t: t.offset)
        starts = np.array([t.offset for t in owners])
        names = []
        for g, atom in enumerate(first):
            t = owners[int(np.searchsorted(starts, atom, side="right")) - 1]
            pos = np.flatnonzero(self.class_group[self.classes(t.name)] == g)
            whole = pos.shape[0] == t.count
            names.append(t.name if whole else f"{t.name}[{pos[0]}:{pos[-1] + 1}]")
        return names


def analyze(graph: Graph) -> ChannelGroups:
    """Channel classes and groups of ``graph`` (see the module docstring)."""
    b = ChannelBuilder(graph)
    for t in graph.inputs:
        b.add(t)
        b.fix(t)
    for node in graph.topo_order():
        apply_rule(b, node)
    b.fix(*graph.outputs)
    atom_class = _first_appearance(connected_components(b.size, b.ties))
    num_classes = int(atom_class.max()) + 1 if b.size else 0
    fixed = np.zeros(num_classes, dtype=bool)
    if b.fixed:
        fixed[atom_class[np.concatenate(b.fixed)]] = True
    class_group, group_fixed = _group(b.tensors, atom_class, fixed)
    return ChannelGroups(dict(b.tensors), atom_class, class_group, group_fixed, tuple(b.bns), tuple(b.layers))


def connected_components(size: int, ties: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Smallest atom index of each atom's component: min-label propagation over the tie
    edges plus pointer jumping, vectorised; a few dozen sweeps even for deep nets."""
    labels = np.arange(size, dtype=np.int64)
    if not ties:
        return labels
    u = np.concatenate([a for a, _ in ties]).astype(np.int64)
    v = np.concatenate([b for _, b in ties]).astype(np.int64)
    while True:
        low = np.minimum(labels[u], labels[v])
        new = labels.copy()
        np.minimum.at(new, u, low)
        np.minimum.at(new, v, low)
        while not np.array_equal(jumped := new[new], new):
            new = jumped
        if np.array_equal(new, labels):
            return labels
        labels = new


def _first_appearance(labels: np.ndarray) -> np.ndarray:
    """Renumber component labels 0, 1, … in order of their first atom."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty_like(first)
    rank[np.argsort(first, kind="stable")] = np.arange(first.shape[0])
    return rank[inverse].astype(np.int64)


def _group(tensors: dict[str, TensorChannels], atom_class: np.ndarray,
           fixed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group classes by (signature of the tensors holding them, fixed)."""
    num_classes = fixed.shape[0]
    counts = np.array([t.count for t in tensors.values()], dtype=np.int64)
    tensor_of_atom = np.repeat(np.arange(counts.shape[0]), counts)
    rng = np.random.default_rng(0x5EED)
    keys = np.zeros((num_classes, 3), dtype=np.uint64)
    for column in range(2):
        salt = np.asarray(rng.integers(1, np.iinfo(np.int64).max, size=counts.shape[0]), dtype=np.uint64)
        np.add.at(keys[:, column], atom_class, salt[tensor_of_atom])
    keys[:, 2] = fixed
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    rank = np.empty_like(first)
    rank[np.argsort(first, kind="stable")] = np.arange(first.shape[0])
    class_group = rank[inverse.reshape(-1)].astype(np.int64)
    group_fixed = np.zeros(first.shape[0], dtype=bool)
    group_fixed[class_group[fixed]] = True
    return class_group, group_fixed
