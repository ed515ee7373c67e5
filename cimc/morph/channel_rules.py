"""Channel coupling for morph: how ops map the channels (axis 1) of their inputs to their outputs.

Every non-constant tensor of rank ≥ 2 gets one *atom* per channel; a flattened feature map
``(N, C·m)`` keeps ``C`` atoms of multiplicity ``m`` (``m = H·W``: feature ``c·m + p`` belongs to
channel ``c``). Walking the graph in topological order, each op's channel rule
(``OpDef.channels`` in ``cimc.ops``) calls the ``ChannelBuilder``: it either *ties* atoms (they
are the same channel and must be kept or removed together, ``identity`` for channel-preserving
ops), creates fresh atoms (a layer's outputs, a channel Pad's zeros), or, when it cannot follow
the channels, *fixes* every atom it touches (``opaque``). Layers whose weights morph slices and
BatchNormalizations (their γ gives the channels' importance) are recorded on the way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cimc.ir.graph import Graph
from cimc.ir.node import Node
from cimc.ops import find


@dataclass(frozen=True)
class TensorChannels:
    """The atoms ``[offset, offset + count)`` of ``name``; axis 1 holds ``count·mult`` values."""

    name: str
    offset: int
    count: int
    mult: int

    @property
    def atoms(self) -> np.ndarray:
        return np.arange(self.offset, self.offset + self.count, dtype=np.int64)


@dataclass(frozen=True)
class BatchNormRef:
    """A BatchNormalization node whose channels are those of tensor ``x``."""

    node: str
    gamma: str
    x: str


@dataclass(frozen=True)
class WeightLayer:
    """A Conv/Gemm/MatMul whose weight the rewrite slices: ``kind`` is ``conv``,
    ``depthwise`` or ``gemm``; ``x``/``y`` its input and output tensors."""

    node: str
    kind: str
    x: str
    y: str


class ChannelBuilder:
    """Collects atoms, ties and fixed atoms while rules walk the graph in topological order."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.tensors: dict[str, TensorChannels] = {}
        self.size = 0
        self.ties: list[tuple[np.ndarray, np.ndarray]] = []
        self.fixed: list[np.ndarray] = []
        self.bns: list[BatchNormRef] = []
        self.layers: list[WeightLayer] = []

    def const(self, tensor: str) -> bool:
        return tensor in self.graph.initializers

    def shape(self, tensor: str) -> tuple[int, ...]:
        return self.graph.shape(tensor)

    def get(self, tensor: str) -> TensorChannels | None:
        return self.tensors.get(tensor)

    def add(self, tensor: str, mult: int = 1) -> TensorChannels | None:
        """Register ``tensor``'s channels (once); ``None`` for constants and rank < 2."""
        if tensor in self.tensors:
            return self.tensors[tensor]
        shape = self.shape(tensor)
        if not tensor or self.const(tensor) or len(shape) < 2 or shape[1] % mult:
            return None
        info = TensorChannels(tensor, self.size, shape[1] // mult, mult)
        self.tensors[tensor] = info
        self.size += info.count
        return info

    def tie(self, a: np.ndarray, b: np.ndarray) -> None:
        self.ties.append((a, b))

    def fix(self, *tensors: str) -> None:
        for t in tensors:
            info = self.tensors.get(t)
            if info is not None:
                self.fixed.append(info.atoms)

    def opaque(self, node: Node) -> None:
        """An op whose channels cannot be followed: all its tensors keep their width."""
        for t in node.outputs:
            self.add(t)
        self.fix(*node.inputs, *node.outputs)

    def identity(self, node: Node) -> None:
        """Output channel c = input channel c (opaque when the widths differ)."""
        x = self.get(node.inputs[0])
        if x is None:
            return self.opaque(node)
        y = self.add(node.outputs[0], x.mult)
        if y is None or y.count != x.count:
            return self.opaque(node)
        self.tie(x.atoms, y.atoms)

    def weight_layer(self, node: Node, kind: str, x: str) -> None:
        """Record ``node`` as a layer whose weight morph slices (``conv``, ``depthwise``, ``gemm``)."""
        self.layers.append(WeightLayer(node.name, kind, x, node.outputs[0]))

    def batchnorm(self, node: Node) -> None:
        """Record a BatchNormalization (γ = input 1) on the channels of its input."""
        self.bns.append(BatchNormRef(node.name, node.inputs[1], node.inputs[0]))


def apply_rule(b: ChannelBuilder, node: Node) -> None:
    """Run the channel rule of ``node``'s op (``OpDef.channels``); an unknown op is opaque."""
    op = find(node.op)
    if op is None:
        return b.opaque(node)
    op.channels(b, node)
