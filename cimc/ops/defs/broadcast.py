"""Add, Sub, Mul, Div and Sum: elementwise with numpy broadcasting.

* Add: ``y = a + b``;  Sub: ``y = a − b``;  Mul: ``y = a · b``;  Div: ``y = a / b``;
  Sum: ``y = Σ_k x_k``.

Every full-width input shares its channels with the output (morph ties them); a constant
operand broadcasts (1 channel) or is per channel (C), and morph slices the per-channel ones
(new channels get the op's identity: 0 for Add/Sub/Sum, 1 for Mul/Div). A difference can be
negative whatever its operands; the other ops are ≥ 0 when their inputs are.
"""

from __future__ import annotations

import functools
import operator
from typing import TYPE_CHECKING

import numpy as np

from cimc.ops.base import (
    Attrs,
    Kernel,
    OpDef,
    Shape,
    SignRule,
    TorchForward,
    export_attributes,
    never,
    plain_inputs,
    sign_of_inputs,
)

if TYPE_CHECKING:
    import torch

    from cimc.ir.node import Node
    from cimc.morph.channel_rules import ChannelBuilder
    from cimc.morph.channels_pass import RewriteContext


def channel_dim(shape: tuple[int, ...], rank: int) -> int:
    """Size of the axis of a broadcast operand ``shape`` that lines up with axis 1 of a rank-``rank`` result."""
    axis = len(shape) - (rank - 1)
    return shape[axis] if axis >= 0 else 1


def broadcast_shape(shapes: list[Shape], a: Attrs) -> Shape:
    """numpy broadcasting of all the inputs' shapes."""
    return tuple(int(d) for d in np.broadcast_shapes(*shapes))


def broadcast_channels(b: ChannelBuilder, node: Node) -> None:
    out_shape = b.shape(node.outputs[0])
    if len(out_shape) < 2:
        return b.opaque(node)
    c, rank = out_shape[1], len(out_shape)
    full = [b.get(t) for t in node.inputs if t and not b.const(t) and channel_dim(b.shape(t), rank) == c]
    mults = {f.mult if f is not None else -1 for f in full}
    dims = {channel_dim(b.shape(t), rank) for t in node.inputs if t}
    if not full or len(mults) != 1 or -1 in mults or not dims <= {1, c}:
        return b.opaque(node)
    mult = mults.pop()
    if mult != 1 and any(b.const(t) and channel_dim(b.shape(t), rank) == c > 1 for t in node.inputs):
        return b.opaque(node)
    y = b.add(node.outputs[0], mult)
    if y is None:
        return b.opaque(node)
    for f in full:
        if f is not None:
            b.tie(f.atoms, y.atoms)


def _rewrite(c: RewriteContext, node: Node) -> None:
    """Per-channel constants follow the output map (new channels: the op's identity element)."""
    ymap = c.map(node.outputs[0])
    if ymap is None:
        return
    rank = len(c.graph.shape(node.outputs[0]))
    fill = 1.0 if node.op in ("Mul", "Div") else 0.0
    for i, t in enumerate(node.inputs):
        value = c.graph.initializers.get(t)
        if value is not None and channel_dim(value.shape, rank) == ymap.old_count > 1:
            c.replace(node, i, c.init.constant(value, value.ndim - (rank - 1), ymap, fill))


def _sum(ins: list[np.ndarray], a: Attrs) -> np.ndarray:
    return np.sum(np.stack(np.broadcast_arrays(*ins)), axis=0, dtype=ins[0].dtype)


def _sum_torch(ins: list[torch.Tensor], a: Attrs) -> torch.Tensor:
    return functools.reduce(operator.add, ins)


def _op(name: str, inputs: tuple[int, int], kernel: Kernel, torch: TorchForward, *, double: bool = False,
        nonnegative: SignRule = sign_of_inputs) -> OpDef:
    return OpDef(name, inputs, (), canonicalize=plain_inputs, shape=broadcast_shape, kernel=kernel, torch=torch,
                 channels=broadcast_channels, rewrite=_rewrite, export=export_attributes, nonnegative=nonnegative,
                 homogeneous=never, mixes_batch=never, double=double, elementwise=True)


DEFS = (
    _op("Add", (2, 2), lambda ins, a: ins[0] + ins[1], lambda ins, a: ins[0] + ins[1]),
    _op("Sub", (2, 2), lambda ins, a: ins[0] - ins[1], lambda ins, a: ins[0] - ins[1], nonnegative=never),
    _op("Mul", (2, 2), lambda ins, a: ins[0] * ins[1], lambda ins, a: ins[0] * ins[1]),
    _op("Div", (2, 2), lambda ins, a: ins[0] / ins[1], lambda ins, a: ins[0] / ins[1]),
    _op("Sum", (1, 2**16), _sum, _sum_torch, double=True),
)
