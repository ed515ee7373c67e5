"""Per-op channel rules: how each op maps the channels (axis 1) of its inputs to its outputs.

Every non-constant tensor of rank ≥ 2 gets one *atom* per channel; a flattened feature map
``(N, C·m)`` keeps ``C`` atoms of multiplicity ``m`` (``m = H·W``: feature ``c·m + p`` belongs to
channel ``c``). A rule either *ties* atoms (they are the same channel and must be kept or
removed together), creates fresh atoms (a layer's outputs, a channel Pad's zeros), or, when it
cannot follow the channels, *fixes* every atom it touches:

=================================  ==========================================================
op                                 channels
=================================  ==========================================================
Conv (group 1), Gemm, MatMul       outputs are fresh atoms; inputs are consumed (no tie)
depthwise Conv (group = C = Cout)  output channel c = input channel c
BatchNormalization, Relu, Clip,    output channel c = input channel c (BN params must be
LeakyRelu, Sigmoid, pools, GAP     constant: γ is recorded for importance)
Add, Mul, Sum (broadcasting)       every full-width input and the output share channel c;
                                   constants broadcast (1) or are per channel (C)
Concat (axis 1)                    input k's channels are a segment of the output's
Pad on axis 1 (constant)           ``[b zeros][input channels][e zeros]``, zeros are fresh
Flatten(axis 1) / flattening       ``(N, C, H, W) → (N, C·H·W)``: atoms kept, multiplicity
Reshape                            ×H·W
Transpose / Slice / Softmax        identity when axes 0 and 1 are untouched
anything else, grouped convs       fixed
=================================  ==========================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cimc.ir.graph import Graph
from cimc.ir.node import Node


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


Rule = Callable[[ChannelBuilder, Node], None]


def apply_rule(b: ChannelBuilder, node: Node) -> None:
    RULES.get(node.op, opaque)(b, node)


def opaque(b: ChannelBuilder, node: Node) -> None:
    """An op whose channels cannot be followed: all its tensors keep their width."""
    for t in node.outputs:
        b.add(t)
    b.fix(*node.inputs, *node.outputs)


def identity(b: ChannelBuilder, node: Node) -> None:
    x = b.get(node.inputs[0])
    if x is None:
        return opaque(b, node)
    y = b.add(node.outputs[0], x.mult)
    if y is None or y.count != x.count:
        return opaque(b, node)
    b.tie(x.atoms, y.atoms)


def _batchnorm(b: ChannelBuilder, node: Node) -> None:
    if not all(b.const(t) for t in node.inputs[1:]):
        return opaque(b, node)
    identity(b, node)
    b.bns.append(BatchNormRef(node.name, node.inputs[1], node.inputs[0]))


def _conv(b: ChannelBuilder, node: Node) -> None:
    x = b.get(node.inputs[0])
    if x is None or not b.const(node.inputs[1]) or any(not b.const(t) for t in node.inputs[2:] if t):
        return opaque(b, node)
    group, cout = int(node.attrs["group"]), b.shape(node.inputs[1])[0]
    if group == 1:
        b.add(node.outputs[0])
        b.layers.append(WeightLayer(node.name, "conv", x.name, node.outputs[0]))
    elif group == x.count == cout:
        identity(b, node)
        b.layers.append(WeightLayer(node.name, "depthwise", x.name, node.outputs[0]))
    else:
        opaque(b, node)


def _fully_connected(b: ChannelBuilder, node: Node) -> None:
    x = b.get(node.inputs[0])
    w = node.inputs[1]
    ok = x is not None and b.const(w) and len(b.shape(w)) == 2 and len(b.shape(node.inputs[0])) == 2
    ok = ok and all(b.const(t) for t in node.inputs[2:] if t) and not node.attrs.get("transA", 0)
    if not ok or x is None:
        return opaque(b, node)
    k = b.shape(w)[1] if node.attrs.get("transB", 0) else b.shape(w)[0]
    if k != x.count * x.mult or b.add(node.outputs[0]) is None:
        return opaque(b, node)
    b.layers.append(WeightLayer(node.name, "gemm", x.name, node.outputs[0]))


def channel_dim(shape: tuple[int, ...], rank: int) -> int:
    """Size of the axis of a broadcast operand ``shape`` that lines up with axis 1 of a rank-``rank`` result."""
    axis = len(shape) - (rank - 1)
    return shape[axis] if axis >= 0 else 1


def _elementwise(b: ChannelBuilder, node: Node) -> None:
    out_shape = b.shape(node.outputs[0])
    if len(out_shape) < 2:
        return opaque(b, node)
    c = out_shape[1]
    full = [b.get(t) for t in node.inputs if t and not b.const(t) and channel_dim(b.shape(t), len(out_shape)) == c]
    mults = {f.mult if f is not None else -1 for f in full}
    dims = {channel_dim(b.shape(t), len(out_shape)) for t in node.inputs if t}
    if not full or len(mults) != 1 or -1 in mults or not dims <= {1, c}:
        return opaque(b, node)
    mult = mults.pop()
    if mult != 1 and any(b.const(t) and channel_dim(b.shape(t), len(out_shape)) == c > 1 for t in node.inputs):
        return opaque(b, node)
    y = b.add(node.outputs[0], mult)
    if y is None:
        return opaque(b, node)
    for f in full:
        if f is not None:
            b.tie(f.atoms, y.atoms)


def _concat(b: ChannelBuilder, node: Node) -> None:
    parts = [b.get(t) for t in node.inputs]
    mults = {p.mult if p is not None else -1 for p in parts}
    if len(mults) != 1 or -1 in mults:
        return opaque(b, node)
    inputs = [p for p in parts if p is not None]
    y = b.add(node.outputs[0], mults.pop())
    along_channels = int(node.attrs["axis"]) == 1
    if y is None or y.count != (sum(p.count for p in inputs) if along_channels else inputs[0].count):
        return opaque(b, node)
    starts = np.cumsum([0] + [p.count for p in inputs[:-1]]) if along_channels else np.zeros(len(inputs), int)
    for p, start in zip(inputs, starts, strict=True):
        if not along_channels and p.count != y.count:
            return opaque(b, node)
        b.tie(p.atoms, np.arange(y.offset + start, y.offset + start + p.count))


def _pad(b: ChannelBuilder, node: Node) -> None:
    x = b.get(node.inputs[0])
    rank = len(b.shape(node.inputs[0]))
    pads = node.attrs["pads"]
    front, back = int(pads[1]), int(pads[1 + rank])
    if x is None or (front == back == 0):
        return identity(b, node)
    if node.attrs.get("mode", "constant") != "constant" or x.mult != 1 or min(front, back) < 0:
        return opaque(b, node)
    y = b.add(node.outputs[0])
    if y is None:
        return opaque(b, node)
    b.tie(x.atoms, np.arange(y.offset + front, y.offset + front + x.count))


def _flatten_like(b: ChannelBuilder, node: Node) -> None:
    """``(N, C, *rest) → (N, C·prod(rest))``; Reshapes keeping axes 0 and 1 are identities."""
    x = b.get(node.inputs[0])
    xs, ys = b.shape(node.inputs[0]), b.shape(node.outputs[0])
    if x is None:
        return opaque(b, node)
    if node.op == "Reshape" and ys[:2] == xs[:2]:
        return identity(b, node)
    flat = len(ys) == 2 and ys[0] == xs[0] and ys[1] == math.prod(xs[1:])
    if not flat or (node.op == "Flatten" and int(node.attrs["axis"]) != 1):
        return opaque(b, node)
    y = b.add(node.outputs[0], x.mult * math.prod(xs[2:]))
    if y is None or y.count != x.count:
        return opaque(b, node)
    b.tie(x.atoms, y.atoms)


def _if(keeps_channels: Callable[[Node], bool]) -> Rule:
    def rule(b: ChannelBuilder, node: Node) -> None:
        (identity if keeps_channels(node) else opaque)(b, node)
    return rule


RULES: dict[str, Rule] = {
    **{op: identity for op in ("Relu", "Clip", "LeakyRelu", "Sigmoid", "MaxPool", "AveragePool",
                               "GlobalAveragePool")},
    "BatchNormalization": _batchnorm,
    "Conv": _conv,
    "Gemm": _fully_connected,
    "MatMul": _fully_connected,
    "Add": _elementwise, "Mul": _elementwise, "Sum": _elementwise,
    "Concat": _concat,
    "Pad": _pad,
    "Flatten": _flatten_like, "Reshape": _flatten_like,
    "Transpose": _if(lambda n: tuple(n.attrs["perm"][:2]) == (0, 1)),
    "Slice": _if(lambda n: 1 not in tuple(n.attrs["axes"])),
    "Softmax": _if(lambda n: int(n.attrs["axis"]) != 1),
}
